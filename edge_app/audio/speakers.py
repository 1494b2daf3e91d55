"""The speaker stage: voice embedding -> online diarizer -> overlapped-speech turns.

One object used by both ``mlsan-live diarize`` (``offline.process_file``) and the live run
(``live_pipeline.VoiceStage``), so both label speech the same way.

API::

    stage = SpeakerStage(embedder, diarizer, OverlapOptions())
    turns = stage.process(segment)   # SpeechSegment -> list[SpeakerTurn]: the diarizer's turns
                                     # (in time order, not overlapping), then overlap turns
    stage.embed_ahead(part, ends_here)  # live run: embed the open segment's audio ahead

Overlap (AMI's meetings hold ~21 % of their speech time under two voices; a one-voice-at-a-
time output misses all of it): p(two speakers) is the one the speech detection attached to the
segment when handing it on (``SpeechSegment.overlap``; a segment without it gets no overlap
turns). The stage never reads the model's log itself: the live voice thread lags the VAD by a
varying amount, and later windows fold their estimates into the log, so only what was read at
hand-on gives the live run the same overlap turns as `diarize`. Where the segmentation model
gives p(two speakers) >=
``threshold`` for at least ``min_s``, a second turn is added for the speaker of the nearest
other turn in time (this segment's or the last ``history_s`` seconds'): the usual heuristic
(the other voice in an overlap is mostly the one just before or just after). A run that has no
such speaker is left alone. A run that reaches into a turn of that other speaker (the two
voices swap roles inside it) gives that part to the run's main speaker instead: an overlap turn
never names the speaker already talking there. Overlap turns come after the segment's own
turns, so a transcript's words go to the main speaker first (``utterances.split_words`` takes
the first turn holding a word).

A segment that starts where the speech detection cut the previous one at a change of voice
(``SpeechSegment.after_change``) is passed to the diarizer with the previous segment's last
speaker (``not_speaker``): see the diarizer's rule 6.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edge_app.messages import SpeakerTurn, SpeechSegment

FRAME_S = 0.032


@dataclass(frozen=True)
class OverlapOptions:
    enabled: bool = True
    threshold: float = 0.3  # p(two speakers) that marks a frame as overlapped (AMI: 0.3 > 0.5)
    min_s: float = 0.25  # shorter overlapped runs are ignored
    history_s: float = 10.0  # how far back a second speaker is looked for


class SpeakerStage:
    def __init__(
        self,
        embedder,
        diarizer,
        overlap: OverlapOptions = OverlapOptions(),
    ) -> None:
        self.embedder = embedder
        self.diarizer = diarizer
        self.overlap = overlap
        self._history: deque[SpeakerTurn] = deque()
        self.overlap_turns = 0  # added so far (report)
        self._last_speaker: str | None = None  # of the previous segment's last turn

    def process(self, segment: SpeechSegment) -> list[SpeakerTurn]:
        turns, extra = self.process_split(segment)
        return turns + extra

    def embed_ahead(self, part: SpeechSegment, ends_here: bool = True) -> None:
        """Embed audio of the segment the speech detection has open: its guess of the whole
        segment (``ends_here``) or the audio so far. ``process`` of that segment then embeds
        only what was not done ahead (embedders that can: ``CamppEmbedder.embed_ahead``). The
        diarizer is not touched: it labels only segments handed on."""
        ahead = getattr(self.embedder, "embed_ahead", None)
        if ahead is not None:
            ahead(part, ends_here)

    def process_split(self, segment: SpeechSegment) -> tuple[list[SpeakerTurn], list[SpeakerTurn]]:
        """(the diarizer's turns: in time order, disjoint; the overlap turns)."""
        not_speaker = self._last_speaker if segment.after_change else None
        turns = self.diarizer.process(self.embedder.embed_segment(segment), not_speaker)
        self._last_speaker = turns[-1].speaker_id if turns else None
        extra = self._overlaps(segment, turns) if turns else []
        self._history.extend(turns)
        while self._history and self._history[0].t_end < segment.t_end - self.overlap.history_s:
            self._history.popleft()
        self.overlap_turns += len(extra)
        return turns, extra

    def _overlaps(self, segment: SpeechSegment, turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
        opts = self.overlap
        if not opts.enabled or segment.overlap is None:
            return []
        t0, probs = segment.overlap  # read by the speech detection at hand-on
        on = probs >= opts.threshold
        min_frames = max(1, int(round(opts.min_s / FRAME_S)))
        resolve = self.diarizer.resolve
        pool = [*self._history, *turns]
        out: list[SpeakerTurn] = []
        i = 0
        while i < len(on):
            if not on[i]:
                i += 1
                continue
            start = j = i
            while j < len(on) and on[j]:
                j += 1
            i = j
            a = max(segment.t_start, t0 + start * FRAME_S)
            b = min(segment.t_end, t0 + j * FRAME_S)
            if j - start < min_frames or b - a < opts.min_s:
                continue
            mid = (a + b) / 2
            main = next((t for t in turns if t.t_start <= mid < t.t_end), None)
            if main is None:
                continue
            main_id = resolve(main.speaker_id)
            others = [t for t in pool if resolve(t.speaker_id) != main_id]
            if not others:
                continue
            near = min(others, key=lambda t: max(t.t_start - b, a - t.t_end, 0.0))
            near_id = resolve(near.speaker_id)
            # One turn per main turn under the run: where the run reaches into a main turn of
            # the second speaker itself (the two voices swapped roles), the other voice there
            # is the run's main speaker.
            for under in turns:
                lo, hi = max(a, under.t_start), min(b, under.t_end)
                if hi <= lo:
                    continue
                other = main if resolve(under.speaker_id) == near_id else near
                out.append(
                    SpeakerTurn(
                        segment_id=segment.segment_id,
                        t_start=lo,
                        t_end=hi,
                        speaker_id=resolve(other.speaker_id),
                        embedding=other.embedding,
                        similarity=0.0,  # not measured: inferred from the neighbour
                        is_new=False,
                        name=other.name,
                    )
                )
        return out
