"""Online diarization: label each stretch of speech with a known speaker or enroll a new one.

API::

    d = OnlineDiarizer(DiarizerOptions(), gallery=SpeakerGallery(path))  # gallery optional
    turns = d.process(segment_voice)      # SegmentVoice (from voice.py) -> list[SpeakerTurn]
    d.rename("spk2", "Alice")             # the user names a speaker (saved with the gallery)
    d.speakers()                          # list[SpeakerProfile] snapshot
    d.resolve("spk3")                     # surviving id of a speaker merged into another
    d.save()                              # write the gallery (atomic); no-op without a gallery

How a segment is labelled (online: only the past and the current segment are used, and a turn
is never relabelled once returned). A *piece* is one voice window (``VoiceSpan``, 2 s every
0.25 s by default) standing for its share of the segment's duration.

1. Memory: every past piece keeps the speaker it was given. The memory pieces and the new
   segment's pieces are clustered together every segment (average-linkage agglomerative on
   cosine distance, cut at similarity ``cluster_threshold``), so decisions made early on little
   voice are corrected by later evidence for the next turns.
2. A new piece takes the speaker owning most seconds of its cluster. A cluster of only new
   pieces enrolls a new speaker when it holds ``min_enroll_s`` of speech and is below
   ``new_threshold`` to every known centroid, or whatever its similarity when it holds
   ``enroll_s`` of speech (the clustering already found it unlike everyone; two voices of one
   kind are at ~0.82, above any safe absolute threshold); otherwise it goes to the nearest
   speaker (split protection: a short noisy stretch does not create a phantom person). Windows
   shorter than ``min_cluster_s`` (short segments) go to the nearest centroid; the very first
   speaker is enrolled from anything, and while it has less than ``min_enroll_s`` of voice it
   is provisional: the new-only cluster most like it (``adopt_threshold``) takes over its id
   instead of enrolling one more.
3. Merge protection: a cluster that holds two established speakers (``established_s`` of speech
   each) never merges them; its new pieces go to the nearer one. Split repair: a young speaker
   with at least half of its speech inside an older speaker's cluster is merged into it (its id
   becomes an alias, see ``resolve``) when their centroids are at least ``merge_threshold``
   similar (two different people at cosine 0.82 sharing a cluster stay two).
4. Turns: every 50 ms frame of the segment takes the label most windows covering it carry;
   turns shorter than ``min_turn_s`` join their longer neighbour. So a change of speaker inside
   one VAD segment gives two turns.
5. Memory is bounded: each speaker keeps its ``max_pieces`` latest pieces; older ones are folded
   into one anchor piece (their duration-weighted mean), which is also how gallery speakers
   start. A centroid is the duration-weighted mean of a speaker's pieces, each weight capped at
   ``max_weight_s``.

6. Cannot-link at a change cut: when the speech detection cut a segment because another voice
   took over (``process(voice, not_speaker=...)``) and every window still went to the speaker
   before the cut, a voice unlike that speaker and everyone else enrolls a new speaker
   (``change_enroll_s``, ``change_max_similarity``).

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
    """Defaults for CAM++ vectors (192-d; same-speaker 1.5-s windows at cosine ~0.53, different
    ~0.04 on AMI), chosen on the ten AMI excerpts + sample.wav (bench/bench_diarization.py).
    The previous values, for resemblyzer's vectors (all pairs ~0.72-0.82), are
    ``LEGACY_DIARIZER``."""

    cluster_threshold: float = 0.45  # average-linkage similarity that joins two clusters
    min_cluster_s: float = 1.0  # shorter windows (short segments) are not clustered
    new_threshold: float = 0.3  # a new voice below this to every known centroid is enrolled
    # ...and a cluster of only new windows with this much speech is enrolled whatever its
    # similarity (resemblyzer needed it: two voices of one kind at cosine ~0.82). Off for
    # CAM++, whose new_threshold separates people (it split AMI speakers when on).
    enroll_s: float = float("inf")
    adopt_threshold: float = 0.3  # rule 2c: a provisional speaker joins a new cluster this like it
    min_enroll_s: float = 1.0  # speech needed to enroll a new speaker
    established_s: float = 8.0  # speakers with this much speech are never merged automatically
    max_pieces: int = 120  # pieces kept per speaker (older ones folded into an anchor)
    max_weight_s: float = 30.0  # cap of one piece's weight in a centroid
    min_turn_s: float = 1.0  # shorter turns inside a segment join a neighbour
    linkage: str = "average"  # scipy linkage: average | complete | weighted | centroid | ward
    # Split repair also needs the two centroids this similar (halves of one voice vs two
    # people; resemblyzer: 0.89+ vs 0.82, hence its 0.86).
    merge_threshold: float = 0.6
    # Gallery matching (see _match_gallery): chosen from same- and different-person centroid
    # similarities on the AMI excerpts (bench/bench_diarization.py "gallery").
    gallery_threshold: float = 0.6
    gallery_margin: float = 0.1
    gallery_min_s: float = 4.0  # speech a session speaker needs before it is matched
    # ...and before it is stored: less, so a short session (stopped early) still remembers its
    # people; a centroid of little speech is noisier, which only makes a later match rarer.
    gallery_store_s: float = 2.0
    # Cannot-link at a speaker-change cut (rule 6): a segment the speech detection started
    # because another voice took over (SpeakerStage passes the previous segment's last speaker)
    # is not given wholly to that speaker when it holds this much speech and its voice is below
    # ``change_max_similarity`` to that speaker and below ``new_threshold`` to everyone else: it
    # enrolls a new speaker. Defaults: AMI pooled DER 32.2 -> 31.8 % (trn03's second person is
    # found: 6.5 -> 3.7 %), sample unchanged (10.6 %). With speaker changes re-judged
    # (SegmentationOptions.change_recheck_s 1.0-1.5 s, default 1.0) it keeps the sample's two
    # similar voices (CAM++ cosine 0.41-0.54) apart: 51 % -> 11.4-11.9 % (also with changes
    # judged sooner, change_context_s 0.25; bench/bench_diarization.py, README "Voices").
    change_enroll_s: float = 0.5
    change_max_similarity: float = 0.45


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


@dataclass
class _Piece:
    """A stretch of one speaker's voice in the memory (mutable, internal)."""

    embedding: np.ndarray  # (256,) float32, L2-normalised
    seconds: float
    speaker: str
    anchor: bool = False  # folded history / gallery centroid
    clusterable: bool = True  # long enough to take part in clustering


@dataclass
class _Speaker:
    speaker_id: str
    name: str | None
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(p.seconds for p in self.pieces))


class OnlineDiarizer:
    def __init__(
        self,
        options: DiarizerOptions = DiarizerOptions(),
        gallery: SpeakerGallery | None = None,
        model_id: str | None = None,
    ) -> None:
        """``model_id``: the voice model's id; a gallery made with another one is refused."""
        self.options = options
        self.gallery = gallery
        self._lock = threading.Lock()
        self._speakers: dict[str, _Speaker] = {}
        self._aliases: dict[str, str] = {}  # merged id -> surviving id
        self._next = 1
        # Stored people, kept apart from this session's clustering: a session speaker takes a
        # stored id only through _match_gallery (threshold and margin), never by clustering.
        self._gallery: dict[str, GallerySpeaker] = {}
        if gallery is not None:
            if model_id is not None:
                gallery.model_id = model_id
            for g in gallery.load():  # GalleryError propagates: never start over a bad file
                self._gallery[g.speaker_id] = g
            self._next = 1 + max((self._number(sid) for sid in self._gallery), default=0)

    @staticmethod
    def _number(sid: str) -> int:
        digits = "".join(ch for ch in sid if ch.isdigit())
        return int(digits) if digits else 0

    # ------------------------------------------------------------------ public API

    def speakers(self) -> list[SpeakerProfile]:
        """This session's speakers, then the stored ones not heard (yet) this session."""
        with self._lock:
            return [
                SpeakerProfile(s.speaker_id, s.name, self._centroid(s), len(s.pieces), s.seconds)
                for s in self._speakers.values()
            ] + [
                SpeakerProfile(g.speaker_id, g.name, g.centroid, g.count, g.seconds)
                for g in self._gallery.values()
                if g.speaker_id not in self._speakers
            ]

    def resolve(self, speaker_id: str) -> str:
        """The surviving id of a speaker that may have been merged into another."""
        with self._lock:
            return self._resolve(speaker_id)

    def rename(self, speaker_id: str, name: str) -> None:
        with self._lock:
            sid = self._resolve(speaker_id)
            if sid not in self._speakers and sid not in self._gallery:
                known = ", ".join([*self._speakers, *self._gallery]) or "none yet"
                raise UserFacingError(
                    f"no speaker {speaker_id!r} to name (known: {known}); fix: use one of those ids"
                )
            if sid in self._speakers:
                self._speakers[sid].name = name
            if sid in self._gallery:
                g = self._gallery[sid]
                self._gallery[sid] = GallerySpeaker(sid, name, g.centroid, g.count, g.seconds)

    def save(self) -> None:
        if self.gallery is None:
            return
        with self._lock:
            # A session speaker with little speech is not stored (a noise or a cough would
            # become a "person" that later voices could be matched to).
            rows = [
                GallerySpeaker(s.speaker_id, s.name, self._centroid(s), len(s.pieces), s.seconds)
                for s in self._speakers.values()
                if s.seconds >= self.options.gallery_store_s
            ]
            rows += [g for sid, g in self._gallery.items() if sid not in self._speakers]
        self.gallery.save(rows)

    def process(self, voice: SegmentVoice, not_speaker: str | None = None) -> list[SpeakerTurn]:
        """``not_speaker``: the speaker the previous segment ended with, when the speech
        detection cut this segment at a change of voice (see ``change_enroll_s``)."""
        if not voice.spans:
            return []
        with self._lock:
            return self._process(voice, not_speaker)

    # ------------------------------------------------------------------ internals

    def _resolve(self, sid: str) -> str:
        while sid in self._aliases:
            sid = self._aliases[sid]
        return sid

    def _centroid(self, sp: _Speaker) -> np.ndarray:
        cap = self.options.max_weight_s
        acc = sum(p.embedding * min(max(p.seconds, 0.1), cap) for p in sp.pieces)
        return _unit(acc)

    def _nearest(self, emb: np.ndarray, among: list[str] | None = None) -> tuple[str | None, float]:
        ids = among if among is not None else list(self._speakers)
        ids = [i for i in ids if self._speakers[i].pieces]  # just enrolled: no voice yet
        if not ids:
            return None, -1.0
        sims = np.stack([self._centroid(self._speakers[i]) for i in ids]) @ emb
        k = int(np.argmax(sims))
        return ids[k], float(sims[k])

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

    def _match_gallery(self) -> None:
        """A session speaker with ``gallery_min_s`` of speech takes a stored person's id when
        its centroid is at least ``gallery_threshold`` similar to that person's AND at least
        ``gallery_margin`` more similar than to anyone else stored; otherwise it keeps its new
        id. A stored id is given to one session speaker at most."""
        opts = self.options
        for sid in list(self._speakers):
            sp = self._speakers[sid]
            if sid in self._gallery or sp.seconds < opts.gallery_min_s:
                continue
            free = [g for gid, g in self._gallery.items() if gid not in self._speakers]
            if not free:
                return
            cent = self._centroid(sp)
            sims = np.array([float(g.centroid @ cent) for g in free])
            order = np.argsort(-sims)
            best = float(sims[order[0]])
            second = float(sims[order[1]]) if len(order) > 1 else -1.0
            if best < opts.gallery_threshold or best - second < opts.gallery_margin:
                continue
            g = free[int(order[0])]
            anchor = _Piece(g.centroid, g.seconds, g.speaker_id, anchor=True)
            self._speakers.pop(sid)
            for p in sp.pieces:
                p.speaker = g.speaker_id
            self._speakers[g.speaker_id] = _Speaker(
                g.speaker_id, sp.name or g.name, [anchor, *sp.pieces]
            )
            self._aliases[sid] = g.speaker_id

    def _merge(self, young: str, old: str) -> None:
        """Split repair: ``young``'s pieces become ``old``'s; ``young`` becomes an alias."""
        y, o = self._speakers.pop(young), self._speakers[old]
        for p in y.pieces:
            p.speaker = old
        o.pieces.extend(y.pieces)
        o.name = o.name or y.name
        self._aliases[young] = old

    def _cluster(self, pieces: list[_Piece]) -> np.ndarray:
        """Rule 2: cluster labels (n,) of the pieces, average linkage on cosine distance."""
        if len(pieces) == 1:
            return np.zeros(1, int)
        from scipy.cluster.hierarchy import fcluster, linkage

        emb = np.stack([p.embedding for p in pieces]).astype(np.float64)
        method = self.options.linkage
        if method in ("centroid", "ward", "median"):
            # Euclidean methods on unit vectors: |a - b|^2 = 2 - 2 cos, so a similarity
            # threshold s is the distance sqrt(2 - 2 s).
            tree = linkage(emb, method=method)
            cut = float(np.sqrt(max(0.0, 2.0 - 2.0 * self.options.cluster_threshold)))
            return fcluster(tree, t=cut, criterion="distance")
        dist = np.clip(1.0 - emb @ emb.T, 0.0, 2.0)
        condensed = dist[np.triu_indices(len(pieces), 1)]
        tree = linkage(condensed, method=method)
        return fcluster(tree, t=1.0 - self.options.cluster_threshold, criterion="distance")

    def _adopt(self, new, big_new, new_cl, old: set[int], enrolled: dict[int, str]) -> None:
        """A provisional speaker (enrolled from less than ``min_enroll_s``, e.g. the very first
        voice heard was a short interjection) is taken over by the new-only cluster most like
        it, if at least ``adopt_threshold``, instead of that cluster enrolling one more id: its
        embedding rests on under a second of voice (0.53-0.57 to either person of the sample),
        so a phantom third id is worse than the most likely of the two."""
        opts = self.options
        provisional = [
            sid
            for sid, sp in self._speakers.items()
            if sp.pieces and sp.seconds < opts.min_enroll_s
        ]
        fresh = sorted(set(new_cl.tolist()) - old)
        if not provisional or not fresh:
            return
        means = {
            c: _unit(
                sum(new[i].embedding for i, cc in zip(big_new, new_cl, strict=True) if cc == c)
            )
            for c in fresh
        }
        for sid in provisional:
            cent = self._centroid(self._speakers[sid])
            free = [c for c in fresh if c not in enrolled]
            if not free:
                return
            best = max(free, key=lambda c: float(means[c] @ cent))
            if float(means[best] @ cent) >= opts.adopt_threshold:
                enrolled[best] = sid

    def _label(self, new: list[_Piece]) -> list[str]:
        """Rules 2-4: a speaker id for each new piece (enrolling / merging as needed)."""
        opts = self.options
        memory = [p for sp in self._speakers.values() for p in sp.pieces]
        big_old = [p for p in memory if p.clusterable or p.anchor]
        big_new = [i for i, p in enumerate(new) if p.clusterable]
        labels: list[str | None] = [None] * len(new)
        if big_new:
            items = big_old + [new[i] for i in big_new]
            cl = self._cluster(items)
            old_cl, new_cl = cl[: len(big_old)], cl[len(big_old) :]
            established = {
                sid for sid, sp in self._speakers.items() if sp.seconds >= opts.established_s
            }
            enrolled: dict[int, str] = {}  # cluster -> speaker enrolled for it this segment
            self._adopt(new, big_new, new_cl, set(old_cl.tolist()), enrolled)
            for idx, c in zip(big_new, new_cl, strict=True):
                owners: dict[str, float] = {}
                for p, pc in zip(big_old, old_cl, strict=True):
                    if pc == c:
                        owners[p.speaker] = owners.get(p.speaker, 0.0) + p.seconds
                est = [sid for sid in owners if sid in established]
                if len(est) >= 2:  # merge protection: pick the nearer, merge nobody
                    labels[idx] = self._nearest(new[idx].embedding, est)[0]
                elif owners:
                    labels[idx] = max(owners, key=owners.get)
                elif c in enrolled:
                    labels[idx] = enrolled[c]
                else:
                    cluster_new = [new[i] for i, cc in zip(big_new, new_cl, strict=True) if cc == c]
                    secs = sum(p.seconds for p in cluster_new)
                    emb = _unit(sum(p.embedding * p.seconds for p in cluster_new))
                    best, sim = self._nearest(emb)
                    if (
                        best is None
                        or (secs >= opts.min_enroll_s and sim < opts.new_threshold)
                        or secs >= opts.enroll_s
                    ):
                        enrolled[c] = self._enroll()
                        labels[idx] = enrolled[c]
                    else:
                        labels[idx] = best
            # Split repair: a young speaker mostly inside another speaker's cluster.
            for c in set(old_cl.tolist()):
                owners = {}
                for p, pc in zip(big_old, old_cl, strict=True):
                    if pc == c and not p.anchor and p.speaker in self._speakers:
                        owners[p.speaker] = owners.get(p.speaker, 0.0) + p.seconds
                if len(owners) < 2:
                    continue
                ranked = sorted(owners, key=lambda sid: -self._speakers[sid].seconds)
                for sid in ranked[1:]:
                    sp = self._speakers[sid]
                    into = self._resolve(ranked[0])
                    if into == sid or into not in self._speakers:
                        continue
                    close = float(self._centroid(sp) @ self._centroid(self._speakers[into]))
                    if (
                        sp.seconds < opts.established_s
                        and owners[sid] >= 0.5 * sp.seconds
                        and close >= opts.merge_threshold
                    ):
                        self._merge(sid, into)
        first: str | None = None
        for i, p in enumerate(new):
            if labels[i] is None:  # too short to cluster: nearest centroid
                best, _ = self._nearest(p.embedding)
                if best is None:  # nobody known yet: the first speaker
                    first = first or self._enroll()
                    best = first
                labels[i] = best
        return [self._resolve(label) for label in labels]  # type: ignore[arg-type]

    def _after_change(self, pieces: list[_Piece], labels: list[str], not_speaker: str) -> list[str]:
        """Rule 6 (``change_enroll_s``): every window of a segment cut at a change of voice went
        to the speaker before the change: a new speaker if the voice is unlike that one and
        everyone else."""
        opts = self.options
        prev = self._resolve(not_speaker)
        if prev not in self._speakers or any(lab != prev for lab in labels):
            return labels
        if sum(p.seconds for p in pieces) < opts.change_enroll_s:
            return labels
        emb = _unit(sum(p.embedding * p.seconds for p in pieces))
        if float(self._centroid(self._speakers[prev]) @ emb) >= opts.change_max_similarity:
            return labels
        others = [sid for sid in self._speakers if sid != prev]
        if self._nearest(emb, others)[1] >= opts.new_threshold:  # (None, -1) when nobody else
            return labels
        return [self._enroll()] * len(labels)

    def _process(self, voice: SegmentVoice, not_speaker: str | None = None) -> list[SpeakerTurn]:
        """Rules 1-6: label the windows, then turns from a vote per frame."""
        opts = self.options
        before = set(self._speakers)
        spans = voice.spans
        share = (voice.t_end - voice.t_start) / len(spans)  # seconds each window stands for
        # A window shorter than min_cluster_s (a short segment) is labelled by nearest centroid.
        clusterable = (spans[0].t_end - spans[0].t_start) >= opts.min_cluster_s
        pieces = [_Piece(s.embedding, share, "", clusterable=clusterable) for s in spans]
        labels = self._label(pieces)
        if not_speaker is not None:
            labels = self._after_change(pieces, labels, not_speaker)
        # Vote per frame of FRAME_S among the windows covering it.
        n = max(1, int(np.ceil((voice.t_end - voice.t_start) / _VOTE_S)))
        centres = voice.t_start + (np.arange(n) + 0.5) * _VOTE_S
        ids = sorted(set(labels))
        votes = np.zeros((n, len(ids)))
        for span, sid in zip(spans, labels, strict=True):
            mask = (centres >= span.t_start) & (centres < span.t_end)
            votes[mask, ids.index(sid)] += 1.0
        empty = votes.sum(axis=1) == 0
        if empty.any():  # frames no window covers (the segment's tail): nearest window
            mids = np.array([(s.t_start + s.t_end) / 2 for s in spans])
            for f in np.nonzero(empty)[0]:
                votes[f, ids.index(labels[int(np.argmin(np.abs(mids - centres[f])))])] = 1.0
        frame_label = votes.argmax(axis=1)
        runs = _runs(frame_label)
        runs = _absorb_short(runs, max(1, int(round(opts.min_turn_s / _VOTE_S))))
        for p, sid in zip(pieces, labels, strict=True):
            self._add(self._resolve(sid), p)
        if self._gallery:
            self._match_gallery()
        turns: list[SpeakerTurn] = []
        for i, j, k in runs:
            sid = self._resolve(ids[k])
            t0 = voice.t_start + i * _VOTE_S
            t1 = min(voice.t_end, voice.t_start + j * _VOTE_S)
            members = [s.embedding for s, lab in zip(spans, labels, strict=True) if lab == ids[k]]
            members = [
                s.embedding
                for s, lab in zip(spans, labels, strict=True)
                if lab == ids[k] and s.t_end > t0 and s.t_start < t1
            ] or members
            emb = _unit(np.mean(members, axis=0))
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
                    embedding=emb,
                    similarity=float(self._centroid(sp) @ emb),
                    is_new=sid not in before,
                    name=sp.name,
                )
            )
        return turns


_VOTE_S = 0.05  # resolution of turn boundaries in window mode


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


# The diarizer's values for resemblyzer's 256-d vectors (before CAM++); the benchmark's "old"
# pipeline (offline.LEGACY).
LEGACY_DIARIZER = DiarizerOptions(
    cluster_threshold=0.73,
    new_threshold=0.7,
    enroll_s=2.0,
    adopt_threshold=0.5,
    merge_threshold=0.86,
)
