"""Speech recognition: faster-whisper on each speech segment, with word timestamps.

API::

    asr = WhisperTranscriber(AsrOptions())        # model: registry "asr" (Whisper tiny.en, int8)
    tr = asr.transcribe(segment)                  # SpeechSegment -> Transcript (media-clock times)

- ``AsrOptions.model``: None (the registry's "asr" directory, overridable with --asr-model /
  MLSAN_MODEL_ASR), a CTranslate2 model directory, or a size name ("tiny.en", "base", ...) that
  must already be in the local Hugging Face cache: nothing is downloaded at run time.
- int8 on CPU by default (CTranslate2's AVX-512 kernels on Intel CPUs that have them:
  ``mlsan.ct2_cpu``); on CPUs with AMX the encoder runs in PyTorch bfloat16 instead
  (``AsrOptions.encoder``, ``mlsan.whisper_encoder``: about 3x faster there) and CTranslate2
  only decodes, on one thread. Greedy decoding (``beam_size=1``) with Whisper's sampling fallback
  (one draw per temperature: ``best_of``), seeded (``AsrOptions.seed``: a replay gives the
  same words), no VAD filter (our VAD already cut the segment), no conditioning on previous
  text (segments are independent; avoids loops).
- Speculative recognition: ``transcribe_ahead(guess)`` transcribes the VAD's guess of the
  segment it is about to hand on (``StreamingVad.speculation``), while the VAD makes sure; the
  next ``transcribe`` returns that result at once if its segment is the same audio (up to
  ``ahead_tolerance_s`` at the end). The live run's ASR stage does it when no segment waits.
- Voice-emotion features come from the same pass: the Whisper encoder output that decoding
  used is captured (``mlsan.voice_features.capture_encoder``) and kept per segment in
  ``voice_states`` (the last ``VOICE_STATES_KEPT`` segments; ``voice_states.get(segment_id)`` ->
  ``(t_start, states (frames, 384))``), so no second model or encoder pass is needed. On a GPU
  the encoder runs batched with decoding inside CTranslate2 as usual.
- ``transcribe`` is synchronous and not thread-safe per instance; the runtime runs it in its own
  worker. Word and transcript times are on the media clock (segment ``t_start`` + offsets).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.messages import SAMPLE_RATE, SpeechSegment, Transcript, Word
from mlsan.errors import UserFacingError


class AsrError(UserFacingError):
    """The speech recognition model cannot be loaded."""


@dataclass(frozen=True)
class AsrOptions:
    model: str | None = None  # None: registry "asr"; else a model directory or a size name
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    compute_type: str = "int8"  # CTranslate2 compute type ("int8", "float16", "int8_float16")
    cpu_threads: int = 2
    # Who runs Whisper's encoder: "auto" (PyTorch bfloat16 on a CPU with AMX, else
    # CTranslate2), "ctranslate2" or "bf16" (mlsan.whisper_encoder). With bf16 the encoder gets
    # ``cpu_threads`` and CTranslate2, which then only decodes and aligns, ``decoder_threads``.
    # On the 2-core Xeon, turn by turn over 71 conversation
    # turns: 471 vs 722 ms wall and 686 vs 983 ms CPU a turn against CTranslate2's int8 pass
    # on two threads, words moved no further than a float32 pass moves them (README, Live
    # latency: bench/bench_asr_window.py --bf16).
    encoder: str = "auto"
    # CTranslate2's threads when the bf16 encoder runs (it then only decodes and aligns); None:
    # ``cpu_threads``. One thread was chosen when numpy's spinning BLAS worker still took a
    # core (two made a turn slower then: 915 vs 713 ms); with that gone (mlsan.blas_threads),
    # two: turn by turn over the 71 conversation turns (142 passes each), beside the voice
    # stage as live, 326 vs 349 ms wall a turn (median; mean 381 vs 413) for 525 vs 495 ms CPU;
    # alone 289 vs 301 ms (bench/bench_turn_end.py --decoder-threads 1,2 --rounds 2).
    decoder_threads: int | None = None
    beam_size: int = 1
    language: str | None = "en"  # None: detect (multilingual models only)
    word_timestamps: bool = True
    # Whisper decodes again by sampling (temperature 0.2, 0.4, ...) when the greedy text looks
    # wrong (low log-probability, repetition), which made two --fast replays of one file give
    # different words. CTranslate2's sampler is seeded with this before the model is loaded, so
    # the same segments in the same order give the same words. Greedy only instead (no
    # fallback) was worse: espeak-ng MELD test utterances WER 24.8 -> 31.2 %, and a live segment
    # of the AMI excerpts became "Thanks for watching. Thanks for watching."; a beam-5 retry
    # instead looped on another ("a little bit of a little bit of ...").
    seed: int = 0
    # Hypotheses drawn at each fallback temperature (faster-whisper's default: 5). Each one
    # runs the decoder over the whole 30-s window, so 5 made a fallback turn cost 1.4 s instead
    # of 0.74 s (median wall, 22 fallback passes, 2 threads) and 2.1 instead of 1.3 CPU s, for
    # the same words (bench/bench_asr_window.py --best-of 5: espeak-ng MELD WER 23.8 vs 23.7 %,
    # conversation vs Whisper base 33.7 vs 33.5 %). Greedy turns (85 % of conversation) are
    # not touched.
    best_of: int = 1
    # Speculative recognition (``transcribe_ahead``): a guess is kept for a segment that
    # differs from it only by up to this much audio at its end (a speaker change confirmed a
    # frame or three away from the early guess). The words and the voice feature's states then
    # come from the guess's pass (see README, Live latency, for how far they move). 0: exact.
    ahead_tolerance_s: float = 0.1


def resolve_model(model: str | None) -> str:
    """A local model directory or a cached size name (see module docstring)."""
    if model is None:
        from mlsan.registry import default_registry

        return str(default_registry().resolve("asr").path)
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser())
    if "/" in model or model.startswith("."):
        raise AsrError(
            f"ASR model directory {model} does not exist; fix: give a faster-whisper (CTranslate2) "
            "model directory or a size such as tiny.en with --asr-model"
        )
    return model  # a size name, loaded from the local cache only


@dataclass
class AheadCounts:
    """What became of the guesses transcribed ahead (``transcribe_ahead``); written by the
    ASR thread only."""

    passes: int = 0  # guesses transcribed
    used: int = 0  # ...whose segment was the same audio
    used_near: int = 0  # ...the same but for up to ahead_tolerance_s at its end
    unused: int = 0  # the segment handed on was other audio (transcribed again), or replaced
    skipped: int = 0  # not transcribed (segments were waiting: AsrStage)


VOICE_STATES_KEPT = 64  # segments whose encoder states wait for the emotion stage


class VoiceStates:
    """segment_id -> (segment t_start, encoder states of its audio), bounded, thread-safe."""

    def __init__(self, keep: int = VOICE_STATES_KEPT) -> None:
        self.keep = keep
        self._items: OrderedDict[int, tuple[float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, segment_id: int, t_start: float, states: np.ndarray) -> None:
        with self._lock:
            self._items[segment_id] = (t_start, states)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)

    def get(self, segment_id: int) -> tuple[float, np.ndarray] | None:
        with self._lock:
            return self._items.get(segment_id)


class WhisperTranscriber:
    def __init__(self, options: AsrOptions = AsrOptions()) -> None:
        from faster_whisper import WhisperModel

        self.options = options
        path = resolve_model(options.model)
        import ctranslate2

        from mlsan.blas_threads import one_blas_thread
        from mlsan.ct2_cpu import prefer_cpu_isa
        from mlsan.whisper_encoder import WhisperEncoderError, choose_encoder

        prefer_cpu_isa()  # AVX-512 kernels on Intel CPUs (read at the first model load)
        one_blas_thread()  # numpy's spinning BLAS worker slowed each turn by a quarter
        device = options.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        try:
            self.encoder_kind = choose_encoder(options.encoder, device)
        except WhisperEncoderError as exc:
            raise AsrError(str(exc)) from None
        encoder, unreadable = None, None
        if self.encoder_kind == "bf16":
            encoder, unreadable = self._bf16_encoder(path, options)
            if encoder is None:
                self.encoder_kind = "ctranslate2"
        # CTranslate2's threads: the whole pass, or with the bf16 encoder only the decoding
        self.ct2_threads = options.cpu_threads
        if encoder is not None and options.decoder_threads is not None:
            self.ct2_threads = options.decoder_threads
        # Before the model's worker threads first sample: each seeds its generator once.
        ctranslate2.set_random_seed(options.seed)
        try:
            self.model = WhisperModel(
                path,
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=self.ct2_threads,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 / huggingface_hub raise many kinds
            raise AsrError(
                f"cannot load the ASR model {path!r} ({type(exc).__name__}: "
                f"{str(exc)[:160]}); fix: pass --asr-model with a local faster-whisper model "
                "directory (nothing is downloaded at run time)"
            ) from None
        if encoder is not None:
            from mlsan.whisper_encoder import use_encoder

            use_encoder(self.model, encoder)
        elif unreadable is not None:  # said only once the model itself loaded (else: that error)
            import logging

            logging.getLogger(__name__).warning("ASR encoder: CTranslate2's (%s)", unreadable)
        self.language = options.language
        if self.language is not None and not self.model.model.is_multilingual:
            self.language = "en"
        from mlsan.voice_features import capture_encoder

        self._take_states = capture_encoder(self.model)
        self.voice_states = VoiceStates()
        self._ahead: tuple[SpeechSegment, Transcript, np.ndarray | None] | None = None
        self.ahead = AheadCounts()

    @staticmethod
    def _bf16_encoder(path: str, options: AsrOptions):
        """(Whisper's encoder in PyTorch bfloat16, None), weights from the same model.bin; or
        (None, why) when "auto" keeps CTranslate2's: the file cannot be read that way (for "bf16"
        that is an AsrError), or a size name is not in the local cache (why None: the model
        load then says so)."""
        from mlsan.whisper_encoder import Bf16WhisperEncoder, WhisperEncoderError

        if not Path(path).is_dir():  # a size name: its directory in the local cache
            from faster_whisper.utils import download_model

            try:
                path = download_model(path, local_files_only=True)
            except Exception:  # huggingface_hub raises many kinds
                return None, None
        try:
            return Bf16WhisperEncoder.from_ct2(path, options.cpu_threads), None
        except WhisperEncoderError as exc:
            if options.encoder == "bf16":
                raise AsrError(f"{exc} (--asr-encoder bf16)") from None
            return None, exc

    def transcribe(self, segment: SpeechSegment) -> Transcript:
        reused = self._reuse_ahead(segment)
        if reused is not None:
            return reused
        transcript, states = self._pass(segment)
        self._keep_states(segment, states)
        return transcript

    def transcribe_ahead(self, guess: SpeechSegment) -> None:
        """Transcribe the VAD's guess of the segment it is about to hand on
        (``StreamingVad.speculation``) and keep the result (only the last guess): the next
        ``transcribe`` returns it at once if its segment is the same audio, or the same give or
        take ``AsrOptions.ahead_tolerance_s`` at its end."""
        transcript, states = self._pass(guess)
        if self._ahead is not None:  # a newer guess of the same open segment replaces it
            self.ahead.unused += 1
        self._ahead = (guess, transcript, states)
        self.ahead.passes += 1

    def _reuse_ahead(self, segment: SpeechSegment) -> Transcript | None:
        """The kept guess's words and states for ``segment`` when it matches (see
        ``transcribe_ahead``); the guess is forgotten either way (the VAD has moved on)."""
        if self._ahead is None:
            return None
        guess, transcript, states = self._ahead
        self._ahead = None
        a, b = guess.samples, segment.samples
        n = min(len(a), len(b))
        tolerance = int(round(self.options.ahead_tolerance_s * SAMPLE_RATE))
        if not (
            abs(guess.t_start - segment.t_start) < 1e-6
            and abs(len(a) - len(b)) <= tolerance
            and n > 0
            and np.array_equal(a[:n], b[:n])
        ):
            self.ahead.unused += 1
            return None
        if len(a) == len(b):
            self.ahead.used += 1
        else:
            self.ahead.used_near += 1
        t1 = segment.t_end
        words = tuple(
            Word(w.text, min(t1, w.t_start), min(t1, w.t_end), w.probability)
            for w in transcript.words
        )
        self._keep_states(segment, states)
        return Transcript(segment.segment_id, segment.t_start, t1, transcript.text, words)

    def _keep_states(self, segment: SpeechSegment, states: np.ndarray | None) -> None:
        """The encoder states over ``segment``'s audio, for the voice feature."""
        if states is not None:
            from mlsan.voice_features import n_states

            self.voice_states.put(
                segment.segment_id, segment.t_start, states[: n_states(len(segment.samples))]
            )

    def _pass(self, segment: SpeechSegment) -> tuple[Transcript, np.ndarray | None]:
        """One Whisper pass: the transcript (media-clock times) and the encoder's states of the
        whole window, (1500, 384), or None if none were captured."""
        audio = np.asarray(segment.samples, np.float32)
        if len(audio) == 0:
            return Transcript(segment.segment_id, segment.t_start, segment.t_end, "", ()), None
        self._take_states()  # drop anything left from an interrupted pass
        parts, _info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.options.beam_size,
            best_of=self.options.best_of,
            word_timestamps=self.options.word_timestamps,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        texts: list[str] = []
        words: list[Word] = []
        t0 = segment.t_start
        for part in parts:  # a generator: decoding happens while iterating
            texts.append(part.text.strip())
            for w in part.words or ():
                words.append(
                    Word(
                        text=w.word.strip(),
                        t_start=min(segment.t_end, t0 + float(w.start)),
                        t_end=min(segment.t_end, t0 + float(w.end)),
                        probability=float(w.probability),
                    )
                )
        states = self._take_states()
        text = " ".join(t for t in texts if t)
        transcript = Transcript(
            segment.segment_id, segment.t_start, segment.t_end, text, tuple(words)
        )
        return transcript, states
