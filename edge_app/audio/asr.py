"""Speech recognition: faster-whisper on each speech segment, with word timestamps.

API::

    asr = WhisperTranscriber(AsrOptions())        # model: registry "asr" (Whisper tiny.en, int8)
    tr = asr.transcribe(segment)                  # SpeechSegment -> Transcript (media-clock times)

- ``AsrOptions.model``: None (the registry's "asr" directory, overridable with --asr-model /
  MLSAN_MODEL_ASR), a CTranslate2 model directory, or a size name ("tiny.en", "base", ...) that
  must already be in the local Hugging Face cache: nothing is downloaded at run time.
- int8 on CPU by default, greedy decoding (``beam_size=1``), no VAD filter (our VAD already cut
  the segment), no conditioning on previous text (segments are independent; avoids loops).
- ``transcribe`` is synchronous and not thread-safe per instance; the runtime runs it in its own
  worker. Word and transcript times are on the media clock (segment ``t_start`` + offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_app.messages import SpeechSegment, Transcript, Word
from mlsan.errors import UserFacingError


class AsrError(UserFacingError):
    """The speech recognition model cannot be loaded."""


@dataclass(frozen=True)
class AsrOptions:
    model: str | None = None  # None: registry "asr"; else a model directory or a size name
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    compute_type: str = "int8"  # CTranslate2 compute type ("int8", "float16", "int8_float16")
    cpu_threads: int = 2
    beam_size: int = 1
    language: str | None = "en"  # None: detect (multilingual models only)
    word_timestamps: bool = True


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


class WhisperTranscriber:
    def __init__(self, options: AsrOptions = AsrOptions()) -> None:
        from faster_whisper import WhisperModel

        self.options = options
        path = resolve_model(options.model)
        try:
            self.model = WhisperModel(
                path,
                device=options.device,
                compute_type=options.compute_type,
                cpu_threads=options.cpu_threads,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 / huggingface_hub raise many kinds
            raise AsrError(
                f"cannot load the ASR model {path!r} ({type(exc).__name__}: "
                f"{str(exc)[:160]}); fix: pass --asr-model with a local faster-whisper model "
                "directory (nothing is downloaded at run time)"
            ) from None
        self.language = options.language
        if self.language is not None and not self.model.model.is_multilingual:
            self.language = "en"

    def transcribe(self, segment: SpeechSegment) -> Transcript:
        audio = np.asarray(segment.samples, np.float32)
        if len(audio) == 0:
            return Transcript(segment.segment_id, segment.t_start, segment.t_end, "", ())
        parts, _info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.options.beam_size,
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
        text = " ".join(t for t in texts if t)
        return Transcript(segment.segment_id, segment.t_start, segment.t_end, text, tuple(words))
