"""Voice-emotion features: one definition for training (RAVDESS) and for the live stage.

API::

    enc = WhisperVoiceEncoder.from_registry()        # or WhisperVoiceEncoder(whisper_model)
    states = enc.encoder_states(samples)             # (n,) float32 16 kHz -> (frames, 384)
    x = pool_states(states, len(samples))            # -> (VOICE_FEATURE_DIM,) float32
    x, reason = voice_feature(enc, samples, 16000)   # None + a reason for unusable audio

The feature is the Whisper tiny.en encoder output (the CTranslate2 model that faster-whisper
already loads for speech recognition, so no second model) pooled over the frames that hold
the utterance: mean and standard deviation over time (``POOLING``; chosen on cross-validation
over RAVDESS actors 1-20, see ``mlsan/checkpoints/voice_candidates.md``).

Same vector in training and live: the live ASR (``edge_app.audio.asr``) captures the encoder
output of the very pass it decodes from (``capture_encoder``), and ``pool_states`` turns it into
the feature; training calls ``encoder_states`` which computes the log-mel exactly as
faster-whisper's ``transcribe`` does (``feature_extractor(audio)``, the content frames - all but the
last - cut or padded to 3000) and runs the same ``encode``. The encoder always sees a 30 s
window (CTranslate2's Whisper requires 3000 mel frames); states past the audio are padding and are
not pooled.

On CPUs with AMX the live ASR runs that encoder in PyTorch bfloat16 instead
(``mlsan.whisper_encoder``, ``AsrOptions.encoder``), while training features come from
CTranslate2's int8 pass: the pooled feature of the two agrees to cosine 0.9985 or more (median
0.9997) on 111 real turns and clips, and the bf16 one is the closer of the two to the float32
encoder (``bench/bench_asr_window.py --bf16 --float32``; README, Live latency).

Bad input never raises here: ``check_audio`` returns a reason (wrong sample rate, empty, too
short, not finite) and the modality is masked by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16_000
HOP = 160  # Whisper log-mel hop (10 ms)
STATES_PER_SECOND = 50  # the encoder halves the mel frame rate (20 ms per state)
MAX_SAMPLES = 30 * SAMPLE_RATE  # one encoder window; longer audio: the first 30 s
MIN_SAMPLES = int(0.25 * SAMPLE_RATE)  # shorter: too little voice for a stable feature
WHISPER_WIDTH = 384  # tiny / tiny.en encoder width (read from the output, never assumed)
POOLING = "meanstd_halves"
POOLINGS = ("mean", "meanstd", "meanstdmax", "meanstd_halves")
VOICE_FEATURE = f"whisper-tiny.en-int8-{POOLING}"  # what MLSANConfig.audio_feature names


def check_audio(samples: np.ndarray | None, sample_rate: int = SAMPLE_RATE) -> str | None:
    """None when usable, else the reason the voice modality must be masked."""
    if sample_rate != SAMPLE_RATE:
        return f"sample rate {sample_rate} Hz, the voice feature needs {SAMPLE_RATE} Hz"
    if samples is None:
        return "no audio"
    x = np.asarray(samples)
    if x.ndim != 1:
        return f"audio has shape {x.shape}, expected mono (n,)"
    if len(x) == 0:
        return "empty audio"
    if len(x) < MIN_SAMPLES:
        return f"audio too short ({len(x) / SAMPLE_RATE:.2f} s < {MIN_SAMPLES / SAMPLE_RATE} s)"
    if not np.all(np.isfinite(x)):
        return "audio holds NaN or infinite samples"
    return None


def n_states(n_samples: int) -> int:
    """Encoder states that cover ``n_samples`` of audio (the rest of the window is padding)."""
    n = min(int(n_samples), MAX_SAMPLES)
    return max(1, min(1500, -(-n // (2 * HOP))))


def pool_states(states: np.ndarray, n_samples: int, pooling: str = POOLING) -> np.ndarray:
    """(frames, W) encoder states of one window -> pooled (k*W,) float32 over the audio part."""
    s = np.asarray(states, np.float32)
    if s.ndim == 3:
        s = s[0]
    s = s[: n_states(n_samples)].astype(np.float64)
    mean = s.mean(axis=0)
    std = s.std(axis=0)
    if pooling == "mean":
        out = mean
    elif pooling == "meanstd":
        out = np.concatenate([mean, std])
    elif pooling == "meanstdmax":
        out = np.concatenate([mean, std, s.max(axis=0)])
    elif pooling == "meanstd_halves":
        half = max(1, len(s) // 2)
        out = np.concatenate(
            [mean, std, s[:half].mean(0), s[half:].mean(0) if len(s) > 1 else mean]
        )
    else:
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    return out.astype(np.float32)


def pool_span(states: np.ndarray, t0: float, t1: float, pooling: str = POOLING) -> np.ndarray:
    """Pool the states of [t0, t1) seconds into a segment's encoder output (the live stage:
    an utterance may be part of a VAD segment). For the whole segment (t0 = 0, t1 = its
    length) this equals ``pool_states(states, n_samples)``."""
    a = max(0, int(np.floor(t0 * STATES_PER_SECOND)))
    b = max(a + 1, n_states(int(round(t1 * SAMPLE_RATE))))
    s = np.asarray(states)[a:b]
    if len(s) == 0:
        s = np.asarray(states)[-1:]
    return pool_states(s, 10**9, pooling)


def feature_dim(width: int = WHISPER_WIDTH, pooling: str = POOLING) -> int:
    return width * {"mean": 1, "meanstd": 2, "meanstdmax": 3, "meanstd_halves": 4}[pooling]


def capture_encoder(whisper_model) -> Callable[[], np.ndarray | None]:
    """Wrap ``whisper_model.encode`` (a faster_whisper.WhisperModel) to keep its first output.

    Returns ``take()``: the (frames, W) states of the first window encoded since the last
    ``take()`` (None when nothing was encoded), and resets. faster-whisper's transcribe calls
    ``self.encode`` once per 30 s window, so the live path reuses the ASR's own pass.
    """
    original = whisper_model.encode
    box: list = []

    def encode(features):
        out = original(features)
        if not box:
            box.append(np.array(out, dtype=np.float32)[0])  # CPU StorageView -> (1500, W)
        return out

    whisper_model.encode = encode

    def take() -> np.ndarray | None:
        states = box[0] if box else None
        box.clear()
        return states

    return take


class WhisperVoiceEncoder:
    """Whisper encoder states for one utterance, computed as faster-whisper's transcribe does."""

    def __init__(self, whisper_model) -> None:
        self.model = whisper_model  # faster_whisper.WhisperModel

    @classmethod
    def from_registry(
        cls, path: str | None = None, compute_type: str = "int8", threads: int = 1
    ) -> WhisperVoiceEncoder:
        from faster_whisper import WhisperModel

        from mlsan.ct2_cpu import prefer_cpu_isa

        prefer_cpu_isa()  # the same kernels as the live ASR pass
        if path is None:
            from mlsan.registry import default_registry

            path = str(default_registry().resolve("asr").path)
        model = WhisperModel(
            path,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )
        return cls(model)

    def window(self, samples: np.ndarray) -> np.ndarray:
        """(80, 3000) log-mel window of the audio's first 30 s, as transcribe() pads it."""
        from faster_whisper.audio import pad_or_trim

        audio = np.asarray(samples, np.float32)[:MAX_SAMPLES]
        fe = self.model.feature_extractor
        mel = fe(audio)  # as transcribe(): padding=160, chunk_length None
        content = mel.shape[-1] - 1  # transcribe() drops the padding frame, then pads to 3000
        return pad_or_trim(mel[:, : min(fe.nb_max_frames, content)])

    def encoder_states(self, samples: np.ndarray) -> np.ndarray:
        return np.array(self.model.encode(self.window(samples)), dtype=np.float32)[0]

    def feature(self, samples: np.ndarray, pooling: str = POOLING) -> np.ndarray:
        return pool_states(self.encoder_states(samples), len(samples), pooling)


def voice_feature(
    encoder: WhisperVoiceEncoder | None,
    samples: np.ndarray | None,
    sample_rate: int = SAMPLE_RATE,
    states: np.ndarray | None = None,
) -> tuple[np.ndarray | None, str | None]:
    """(feature, None) or (None, reason). ``states``: the ASR pass's encoder output, if any."""
    reason = check_audio(samples, sample_rate)
    if reason is not None:
        return None, reason
    if states is None:
        if encoder is None:
            return None, "no Whisper encoder output for this utterance"
        states = encoder.encoder_states(samples)
    return pool_states(states, len(samples)), None
