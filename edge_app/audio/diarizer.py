"""Online diarization: label each stretch of speech with a known speaker or enroll a new one.

API::

    d = OnlineDiarizer(DiarizerOptions(), gallery=SpeakerGallery(path))  # gallery optional
    turns = d.process(segment_voice)      # SegmentVoice (from voice.py) -> list[SpeakerTurn]
    d.rename("spk2", "Alice")             # the user names a speaker (saved with the gallery)
    d.speakers()                          # list[SpeakerProfile] snapshot
    d.resolve("spk3")                     # surviving id of a speaker merged into another
    d.save()                              # write the gallery (atomic); no-op without a gallery

How a segment is labelled (online: only the past and the current segment are used, and a turn
is never relabelled once returned). The segment's voice windows (``VoiceSpan``: 1.5 s every
0.25 s by default) each stand for an equal share of the segment's duration; every 50 ms frame
is scored by the window centred nearest to it.

1. Relative similarity. A speaker keeps its windows (pieces) in memory; its centroid is their
   duration-weighted mean and its *typical similarity* ``mu`` is the mean cosine of its windows
   to that centroid (shrunk towards ``prior_self_sim`` while it has few windows). A window's
   score for a speaker is ``cos(window, centroid) - mu``: how typical the window is of that
   person, so the decisions do not hang on one absolute cosine that depends on the window
   length, the microphone and the voices (two voices of the sample are at cosine 0.82).
2. Change points. A Viterbi pass over the frames picks the label sequence maximising the summed
   scores minus ``switch_penalty`` (cosine x seconds) per change of speaker, with an extra
   "new voice" state scoring ``-new_margin`` (a window is new when it is that much less typical
   of every known speaker than their own windows are). So a change of speaker inside one VAD
   segment (an interjection of ~1 s) gives its own turn.
3. Enrollment. Frames labelled "new" with at least ``min_enroll_s`` of speech enroll a new
   speaker, unless their mean voice is itself typical of a known speaker (split protection).
   Before enrolling, a 2-means split of those windows is tested: when the two halves' centroids
   are ``split_margin`` less similar than each half's windows are to their own centroid, two
   people are enrolled (the first segment of a conversation often holds both). Then the pass
   is repeated; shorter "new" stretches go to the best known speaker. The very first speaker
   is enrolled from anything.
4. Merge protection: speakers with ``established_s`` of speech are never merged. Split repair:
   a young speaker whose centroid is as similar to another speaker's centroid as its own
   windows are (``merge_margin``) is merged into it (its id becomes an alias, see ``resolve``).
5. Turns: runs of frames with one label; runs shorter than ``min_turn_s`` join their longer
   neighbour. Memory is bounded: each speaker keeps its ``max_pieces`` latest windows; older
   ones are folded into one anchor piece (their duration-weighted mean), which is also how
   gallery speakers start. A piece's weight in a centroid is capped at ``max_weight_s``.

There is no limit on the number of speakers. Methods are guarded by one lock so the UI thread
may call ``rename``/``speakers`` while a worker calls ``process``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from edge_app.audio.gallery import GallerySpeaker, SpeakerGallery
from edge_app.audio.voice import SegmentVoice
from edge_app.messages import SpeakerTurn
from mlsan.errors import UserFacingError


@dataclass(frozen=True)
class DiarizerOptions:
    new_margin: float = 0.12  # a window this far below every speaker's typical cosine is new
    split_threshold: float = 0.87  # two halves of new windows below this cosine are 2 people
    merge_margin: float = 0.0  # a young speaker this close to another's spread is merged
    switch_penalty: float = 0.03  # cosine x seconds charged per change of speaker
    prior_self_sim: float = 0.9  # typical window-to-centroid cosine before a speaker has data
    prior_windows: float = 4.0  # weight of that prior, in windows
    min_enroll_s: float = 1.0  # speech needed to enroll a new speaker
    established_s: float = 8.0  # speakers with this much speech are never merged automatically
    max_pieces: int = 120  # pieces kept per speaker (older ones folded into an anchor)
    max_weight_s: float = 30.0  # cap of one piece's weight in a centroid
    min_turn_s: float = 0.5  # shorter turns inside a segment join a neighbour
    relative: bool = True  # score cos - mu (rule 1); False: raw cosine, new below prior - margin


@dataclass(frozen=True)
class SpeakerProfile:
    speaker_id: str
    name: str | None
    centroid: np.ndarray  # (256,) float32, L2-normalised
    count: int
    seconds: float


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-8)


@dataclass(eq=False)  # identity: pieces are compared by reference
class _Piece:
    """A stretch of one speaker's voice in the memory (mutable, internal)."""

    embedding: np.ndarray  # (256,) float32, L2-normalised
    seconds: float
    speaker: str
    anchor: bool = False  # folded history / gallery centroid
    segment: int = -1  # the segment it came from (spread is measured across segments)


@dataclass
class _Speaker:
    speaker_id: str
    name: str | None
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(p.seconds for p in self.pieces))


_DEBUG = False
_NEW = -1  # label of the "new voice" state


class OnlineDiarizer:
    def __init__(
        self, options: DiarizerOptions = DiarizerOptions(), gallery: SpeakerGallery | None = None
    ) -> None:
        self.options = options
        self.gallery = gallery
        self._lock = threading.Lock()
        self._speakers: dict[str, _Speaker] = {}
        self._aliases: dict[str, str] = {}  # merged id -> surviving id
        self._next = 1
        if gallery is not None:
            for g in gallery.load():  # GalleryError propagates: never start over a bad file
                sp = _Speaker(g.speaker_id, g.name)
                sp.pieces.append(_Piece(_unit(g.centroid), g.seconds, g.speaker_id, anchor=True))
                self._speakers[g.speaker_id] = sp
            self._next = 1 + max((self._number(sid) for sid in self._speakers), default=0)

    @staticmethod
    def _number(sid: str) -> int:
        digits = "".join(ch for ch in sid if ch.isdigit())
        return int(digits) if digits else 0

    # ------------------------------------------------------------------ public API

    def speakers(self) -> list[SpeakerProfile]:
        with self._lock:
            return [
                SpeakerProfile(s.speaker_id, s.name, self._centroid(s), len(s.pieces), s.seconds)
                for s in self._speakers.values()
            ]

    def resolve(self, speaker_id: str) -> str:
        """The surviving id of a speaker that may have been merged into another."""
        with self._lock:
            return self._resolve(speaker_id)

    def rename(self, speaker_id: str, name: str) -> None:
        with self._lock:
            sid = self._resolve(speaker_id)
            if sid not in self._speakers:
                known = ", ".join(self._speakers) or "none yet"
                raise UserFacingError(
                    f"no speaker {speaker_id!r} to name (known: {known}); fix: use one of those ids"
                )
            self._speakers[sid].name = name

    def save(self) -> None:
        if self.gallery is None:
            return
        with self._lock:
            rows = [
                GallerySpeaker(s.speaker_id, s.name, self._centroid(s), len(s.pieces), s.seconds)
                for s in self._speakers.values()
            ]
        self.gallery.save(rows)

    def process(self, voice: SegmentVoice) -> list[SpeakerTurn]:
        if not voice.spans:
            return []
        with self._lock:
            return self._process(voice)

    # ------------------------------------------------------------------ internals

    def _resolve(self, sid: str) -> str:
        while sid in self._aliases:
            sid = self._aliases[sid]
        return sid

    def _centroid(self, sp: _Speaker) -> np.ndarray:
        cap = self.options.max_weight_s
        acc = sum(p.embedding * min(max(p.seconds, 0.1), cap) for p in sp.pieces)
        return _unit(acc)

    def _typical(self, sp: _Speaker, centroid: np.ndarray) -> float:
        """mu: mean cosine of the speaker's windows to its centroid made of its *other*
        segments (windows of one segment overlap and flatter each other), shrunk towards the
        prior while there are few such windows."""
        opts = self.options
        cap = opts.max_weight_s
        segs = {p.segment for p in sp.pieces if not p.anchor}
        total, count = opts.prior_self_sim * opts.prior_windows, opts.prior_windows
        if len(segs) + any(p.anchor for p in sp.pieces) >= 2:
            for seg in segs:
                mine = [p.embedding for p in sp.pieces if not p.anchor and p.segment == seg]
                rest = [p for p in sp.pieces if p.anchor or p.segment != seg]
                c = _unit(sum(p.embedding * min(max(p.seconds, 0.1), cap) for p in rest))
                total += float((np.stack(mine) @ c).sum())
                count += len(mine)
        return total / count

    def _enroll(self) -> str:
        sid = f"spk{self._next}"
        self._next += 1
        self._speakers[sid] = _Speaker(sid, None)
        return sid

    def _add(self, sid: str, piece: _Piece) -> None:
        sp = self._speakers[sid]
        piece.speaker = sid
        sp.pieces.append(piece)
        live = [p for p in sp.pieces if not p.anchor]
        if len(live) > self.options.max_pieces:
            # Fold the oldest pieces (and any old anchor) into one anchor piece.
            old = [p for p in sp.pieces if p.anchor] + live[: len(live) - self.options.max_pieces]
            keep = live[len(live) - self.options.max_pieces :]
            secs = sum(p.seconds for p in old)
            emb = _unit(sum(p.embedding * max(p.seconds, 0.1) for p in old))
            sp.pieces = [_Piece(emb, secs, sid, anchor=True), *keep]

    def _merge(self, young: str, old: str) -> None:
        """Split repair: ``young``'s pieces become ``old``'s; ``young`` becomes an alias."""
        y, o = self._speakers.pop(young), self._speakers[old]
        for p in y.pieces:
            p.speaker = old
        o.pieces.extend(y.pieces)
        o.name = o.name or y.name
        self._aliases[young] = old

    def _models(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(k, 256) centroids and (k,) typical similarities of the speakers ``ids``."""
        cents = np.stack([self._centroid(self._speakers[i]) for i in ids])
        mus = np.array([self._typical(self._speakers[i], c) for i, c in zip(ids, cents)])
        return cents, mus

    def _scores(self, emb: np.ndarray, ids: list[str]) -> np.ndarray:
        """(m, k) window scores for the speakers ``ids`` (rule 1)."""
        if not ids:
            return np.zeros((len(emb), 0))
        cents, mus = self._models(ids)
        sims = emb @ cents.T
        if self.options.relative:
            return sims - mus[None]
        return sims - self.options.prior_self_sim

    def _split(self, emb: np.ndarray, share: float) -> list[np.ndarray]:
        """Rule 3: the windows ``emb`` (m, 256) as one or two groups (boolean masks)."""
        opts = self.options
        m = len(emb)
        whole = [np.ones(m, bool)]
        if m < 4 or m * share < 2 * opts.min_enroll_s:
            return whole
        # Two groups: the 2-cluster cut of an average-linkage tree on cosine distance.
        from scipy.cluster.hierarchy import fcluster, linkage

        dist = np.clip(1.0 - emb.astype(np.float64) @ emb.T, 0.0, 2.0)
        lab = fcluster(linkage(dist[np.triu_indices(m, 1)], "average"), 2, "maxclust") - 1
        groups = [lab == 0, lab == 1]
        if min(g.sum() for g in groups) * share < opts.min_enroll_s:
            return whole
        cents = np.stack([_unit(emb[g].sum(axis=0)) for g in groups])
        mus = [float((emb[g] @ c).mean()) for g, c in zip(groups, cents)]
        if _DEBUG:
            print("split", [int(g.sum()) for g in groups], float(cents[0] @ cents[1]), mus)
        if float(cents[0] @ cents[1]) < opts.split_threshold:
            first = [int(np.argmax(g)) for g in groups]  # enroll in order of appearance
            return [groups[k] for k in np.argsort(first)]
        return whole

    def _process(self, voice: SegmentVoice) -> list[SpeakerTurn]:
        opts = self.options
        before = set(self._speakers)
        spans = voice.spans
        share = (voice.t_end - voice.t_start) / len(spans)  # seconds each window stands for
        emb = np.stack([s.embedding for s in spans]).astype(np.float32)  # (m, 256)
        mids = np.array([(s.t_start + s.t_end) / 2 for s in spans])
        n = max(1, int(np.ceil((voice.t_end - voice.t_start) / _VOTE_S)))
        centres = voice.t_start + (np.arange(n) + 0.5) * _VOTE_S
        near = np.argmin(np.abs(centres[:, None] - mids[None]), axis=1)  # (n,) frame -> window
        at_mid = np.argmin(np.abs(mids[:, None] - centres[None]), axis=1)  # (m,) window -> frame
        seeds: list[_Piece] = []  # this segment's windows given to speakers enrolled here

        allow_new = True
        for _ in range(8):  # at most a few enrollments per segment
            ids = [sid for sid, sp in self._speakers.items() if sp.pieces]
            sc = self._scores(emb, ids)
            if allow_new:
                sc = np.concatenate([sc, np.full((len(emb), 1), -opts.new_margin)], axis=1)
            path = _viterbi(sc[near] * _VOTE_S, opts.switch_penalty)
            if not allow_new:
                break
            is_new = path[at_mid] == len(ids)  # windows labelled "new voice"
            if not is_new.any():
                break
            if is_new.sum() * share < opts.min_enroll_s and ids:
                allow_new = False  # too little: those windows go to the best known speaker
                continue
            enrolled = False
            for g in self._split(emb[is_new], share):
                group = emb[is_new][g]
                if ids and (self._scores(_unit(group.mean(axis=0))[None], ids) > -opts.new_margin).any():
                    continue  # its mean voice is typical of a known speaker: no phantom
                sid = self._enroll()
                for e in group:
                    piece = _Piece(e, share, sid, segment=voice.segment_id)
                    self._speakers[sid].pieces.append(piece)
                    seeds.append(piece)
                enrolled = True
            if not enrolled:
                allow_new = False
        ids = [sid for sid, sp in self._speakers.items() if sp.pieces]
        # The seeds were only there to define the new speakers: take them out, label, add back.
        for p in seeds:
            self._speakers[p.speaker].pieces.remove(p)
        if not ids:  # the very first voice, too short to enroll by the rules: enroll anyway
            ids = [self._enroll()]
            path = np.zeros(n, int)
            for e in emb:
                self._speakers[ids[0]].pieces.append(_Piece(e, share, ids[0], segment=voice.segment_id))
            labels = [ids[0]] * len(emb)
        else:
            saved = {p.speaker: [] for p in seeds}
            for p in seeds:
                saved[p.speaker].append(p)
            for sid, ps in saved.items():  # models of the new speakers: their seeds
                self._speakers[sid].pieces.extend(ps)
            sc = self._scores(emb, ids)
            path = _viterbi(sc[near] * _VOTE_S, opts.switch_penalty)
            for p in seeds:
                self._speakers[p.speaker].pieces.remove(p)
            runs = _absorb_short(_runs(path), max(1, int(round(opts.min_turn_s / _VOTE_S))))
            for i, j, k in runs:
                path[i:j] = k
            labels = [ids[int(path[at_mid[w]])] for w in range(len(emb))]
            for e, sid in zip(emb, labels, strict=True):
                self._add(sid, _Piece(e, share, sid, segment=voice.segment_id))
        for sid in [s for s in self._speakers if s not in before and not self._speakers[s].pieces]:
            del self._speakers[sid]  # enrolled here but kept no window: no phantom
        self._repair()
        turns: list[SpeakerTurn] = []
        for i, j, k in _runs(path):
            sid = self._resolve(ids[k])
            t0 = voice.t_start + i * _VOTE_S
            t1 = min(voice.t_end, voice.t_start + j * _VOTE_S)
            inside = (mids >= t0) & (mids < t1)
            e = _unit(emb[inside].mean(axis=0)) if inside.any() else _unit(emb[near[i]])
            if turns and turns[-1].speaker_id == sid:
                prev = turns.pop()
                t0 = prev.t_start
            sp = self._speakers[sid]
            turns.append(
                SpeakerTurn(
                    segment_id=voice.segment_id,
                    t_start=t0,
                    t_end=t1,
                    speaker_id=sid,
                    embedding=e,
                    similarity=float(self._centroid(sp) @ e),
                    is_new=sid not in before,
                    name=sp.name,
                )
            )
        return turns

    def _repair(self) -> None:
        """Rule 4: merge a young speaker into one whose centroid is within its spread."""
        opts = self.options
        ids = [sid for sid, sp in self._speakers.items() if sp.pieces]
        if len(ids) < 2:
            return
        cents, mus = self._models(ids)
        young = sorted(
            (i for i, sid in enumerate(ids) if self._speakers[sid].seconds < opts.established_s),
            key=lambda i: self._speakers[ids[i]].seconds,
        )
        gone: set[int] = set()
        for i in young:
            sims = cents @ cents[i]
            sims[i] = -2.0
            for g in gone:
                sims[g] = -2.0
            j = int(np.argmax(sims))
            if sims[j] >= min(mus[i], mus[j]) - opts.merge_margin:
                self._merge(ids[i], ids[j])
                gone.add(i)


_VOTE_S = 0.05  # resolution of turn boundaries (s)


def _viterbi(score: np.ndarray, penalty: float) -> np.ndarray:
    """(n, k) per-frame scores -> (n,) labels maximising sum(score) - penalty * changes."""
    n, k = score.shape
    acc = score[0].copy()
    back = np.zeros((n, k), int)
    for t in range(1, n):
        best = int(np.argmax(acc))
        switch = acc[best] - penalty
        back[t] = np.where(acc >= switch, np.arange(k), best)
        acc = np.maximum(acc, switch) + score[t]
    out = np.zeros(n, int)
    out[-1] = int(np.argmax(acc))
    for t in range(n - 1, 0, -1):
        out[t - 1] = back[t, out[t]]
    return out


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """[(start, end, label)] of consecutive equal labels."""
    out = []
    i = 0
    while i < len(labels):
        j = i
        while j < len(labels) and labels[j] == labels[i]:
            j += 1
        out.append((i, j, int(labels[i])))
        i = j
    return out
def _absorb_short(runs: list[tuple[int, int, int]], min_len: int) -> list[tuple[int, int, int]]:
    """Runs shorter than ``min_len`` frames join a neighbour (the longer one), repeatedly."""
    runs = list(runs)
    while len(runs) > 1:
        k = min(range(len(runs)), key=lambda r: runs[r][1] - runs[r][0])
        i, j, _ = runs[k]
        if j - i >= min_len:
            break
        left = runs[k - 1] if k > 0 else None
        right = runs[k + 1] if k + 1 < len(runs) else None
        if right is None or (left is not None and left[1] - left[0] >= right[1] - right[0]):
            runs[k - 1] = (left[0], j, left[2])
        else:
            runs[k + 1] = (i, right[1], right[2])
        del runs[k]
        merged = [runs[0]]
        for r in runs[1:]:
            if r[2] == merged[-1][2]:
                merged[-1] = (merged[-1][0], r[1], r[2])
            else:
                merged.append(r)
        runs = merged
    return runs
