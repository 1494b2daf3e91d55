"""Whisper's encoder in PyTorch bfloat16 (mlsan.whisper_encoder): the same states and words as
CTranslate2's pass on real audio, and clear errors for files it cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from mlsan.whisper_encoder import (
    Bf16WhisperEncoder,
    WhisperEncoderError,
    amx_bf16,
    choose_encoder,
    read_ct2_encoder,
)

# README, Live latency (bench/bench_asr_window.py --bf16 --float32): the bf16 states over the
# whole 30-s window against CTranslate2's float32 pass, cosine at least 0.9995 on 111 real turns
# and clips, the pooled voice feature at least 0.9995 (CTranslate2's own int8 pass: 0.9981).
# Bound: the states and the pooled voice feature within 0.999.
STATES_COSINE = 0.999


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_choice_of_encoder():
    assert choose_encoder("ctranslate2", "cpu") == "ctranslate2"
    assert choose_encoder("bf16", "cpu") == "bf16"
    assert choose_encoder("auto", "cuda") == "ctranslate2"  # CTranslate2's float16 pass there
    assert choose_encoder("auto", "cpu") == ("bf16" if amx_bf16() else "ctranslate2")
    with pytest.raises(WhisperEncoderError, match="unknown ASR encoder 'onnx'.*fix"):
        choose_encoder("onnx", "cpu")


def test_unreadable_model_files_are_one_clear_error(tmp_path):
    with pytest.raises(WhisperEncoderError, match="cannot read .* fix"):
        read_ct2_encoder(tmp_path / "missing" / "model.bin")
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"\x06\x00\x00\x00" + b"not a model" * 10)
    with pytest.raises(WhisperEncoderError, match="not a CTranslate2 Whisper model.*fix"):
        read_ct2_encoder(junk)
    junk.write_bytes(b"")
    with pytest.raises(WhisperEncoderError, match="not a CTranslate2 Whisper model"):
        read_ct2_encoder(junk)


@pytest.fixture(scope="module")
def whisper():
    """(CTranslate2 float32 WhisperModel, its model directory) of the registry's ASR model."""
    from faster_whisper import WhisperModel

    from mlsan.registry import default_registry

    path = str(default_registry().resolve("asr").path)
    model = WhisperModel(
        path, device="cpu", compute_type="float32", cpu_threads=2, local_files_only=True
    )
    return model, path


@pytest.mark.slow
def test_bf16_states_match_ctranslate2_on_real_speech(whisper, shared_data):
    from mlsan.ravdess import list_clips, load_audio
    from mlsan.voice_features import WhisperVoiceEncoder, pool_states

    model, path = whisper
    ct2 = WhisperVoiceEncoder(model)
    bf16 = Bf16WhisperEncoder.from_ct2(path, threads=2)
    for clip in list_clips(shared_data / "ravdess", (21, 24))[::40]:
        audio = load_audio(clip.path)
        window = ct2.window(audio)
        want = ct2.encoder_states(audio)
        got = bf16.encode(window)
        assert got.shape == want.shape == (1500, 384) and got.dtype == np.float32
        assert _cos(got, want) >= STATES_COSINE, clip.path.name
        assert _cos(pool_states(got, len(audio)), pool_states(want, len(audio))) >= STATES_COSINE


@pytest.mark.slow
def test_transcriber_with_bf16_encoder_hears_the_words(shared_data):
    """The ASR with the bf16 encoder (CTranslate2 decoding its states) gets RAVDESS's sentence,
    keeps the voice feature's states, and a bad choice is one clear error."""
    from edge_app.audio.asr import AsrError, AsrOptions, WhisperTranscriber
    from edge_app.messages import SAMPLE_RATE, SpeechSegment
    from mlsan.ravdess import list_clips, load_audio

    asr = WhisperTranscriber(AsrOptions(encoder="bf16"))
    assert asr.encoder_kind == "bf16"
    sentences = {1: "kids are talking by the door", 2: "dogs are sitting by the door"}
    for i, clip in enumerate(list_clips(shared_data / "ravdess", (22,))[:60:15]):
        audio = load_audio(clip.path)
        seg = SpeechSegment(i, 5.0, 5.0 + len(audio) / SAMPLE_RATE, audio)
        tr = asr.transcribe(seg)
        heard = tr.text.lower().replace(".", "").replace(",", "").split()
        assert heard == sentences[clip.statement].split(), (clip.path.name, tr.text)
        assert all(seg.t_start - 0.05 <= w.t_start <= w.t_end <= seg.t_end for w in tr.words)
        t_start, states = asr.voice_states.get(i)
        assert t_start == seg.t_start and states.shape[1] == 384
    with pytest.raises(AsrError, match="unknown ASR encoder"):
        WhisperTranscriber(AsrOptions(encoder="openvino"))


def test_auto_falls_back_to_ctranslate2_when_the_weights_cannot_be_read(monkeypatch):
    """A model faster-whisper loads but this reader cannot (another binary version): "auto"
    keeps CTranslate2's encoder, "bf16" refuses with the reason."""
    from edge_app.audio import asr as asr_module
    from mlsan import whisper_encoder

    def unreadable(path, threads=2):
        raise WhisperEncoderError(f"{path}/model.bin is not a CTranslate2 Whisper model (v7)")

    monkeypatch.setattr(whisper_encoder.Bf16WhisperEncoder, "from_ct2", unreadable)
    monkeypatch.setattr(whisper_encoder, "amx_bf16", lambda: True)
    auto = asr_module.WhisperTranscriber(asr_module.AsrOptions())
    assert auto.encoder_kind == "ctranslate2"
    with pytest.raises(asr_module.AsrError, match="not a CTranslate2 Whisper model.*bf16"):
        asr_module.WhisperTranscriber(asr_module.AsrOptions(encoder="bf16"))
