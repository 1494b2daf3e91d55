"""The emotion stage's model path with the real pieces: MiniLM text features, the shipped
ML-SAN checkpoint, an ``engines`` backend. Live, step by step, must equal the causal model run
on the whole dialogue at once; a speaker enrolled a moment ago adapts the model through their
running summary, with no retraining."""

from __future__ import annotations

import numpy as np
import pytest

from edge_app.emotion_features import DialogueWindow, FeatureOptions, ModelInfo, UtteranceFeaturizer
from edge_app.messages import SAMPLE_RATE, SpeakerTurn, SpeechSegment, Transcript, Word
from edge_app.utterances import UtteranceAssembler, VoicedSegment
from engines.types import EmotionInputs

pytestmark = pytest.mark.slow

DIALOGUE = [  # (speaker, words); spk7 is new half-way through
    ("spk1", "I can't believe you did that, this is outrageous!"),
    ("spk2", "Calm down, it was only a joke."),
    ("spk1", "A joke? You ruined the whole evening!"),
    ("spk7", "Hey everyone, guess what, I got the job!"),
    ("spk2", "Oh wow, that is amazing news, congratulations!"),
    ("spk7", "I am so happy, I can't stop smiling."),
]


@pytest.fixture(scope="module")
def pieces():
    from engines.backend import create_backend
    from mlsan.errors import ModelNotFoundError
    from mlsan.features import TextEncoder
    from mlsan.registry import default_registry

    try:
        ckpt = default_registry().resolve("mlsan").path
    except ModelNotFoundError as exc:
        pytest.skip(f"no trained ML-SAN checkpoint: {exc}")
    info = ModelInfo.from_checkpoint(ckpt)
    backend = create_backend("onnxruntime", ckpt, mode="causal", threads=1)
    encoder = TextEncoder(info.text_feature)
    yield info, backend, encoder
    backend.close()


def utterances():
    asm = UtteranceAssembler()
    out = []
    for k, (spk, text) in enumerate(DIALOGUE):
        t0 = 2.0 * k
        samples = (0.05 * np.sin(np.arange(SAMPLE_RATE) * 0.05)).astype(np.float32)
        emb = np.zeros(256, np.float32)
        emb[k % 3] = 1.0
        asm.process(
            VoicedSegment(
                SpeechSegment(k, t0, t0 + 1.0, samples),
                (SpeakerTurn(k, t0, t0 + 1.0, spk, emb, 0.9, spk == "spk7" and k == 3),),
            )
        )
        (u,) = asm.process(Transcript(k, t0, t0 + 1.0, text, (Word(text, t0, t0 + 1.0, 0.9),)))
        out.append(u)
    return out


def test_live_steps_equal_causal_run_and_new_speaker_adapts(pieces):
    info, backend, encoder = pieces
    opts = FeatureOptions(max_context=16)
    fz, win = UtteranceFeaturizer(info, encoder, opts), DialogueWindow(info, opts)
    labels = backend.signature.label_names
    live_probs, rows, speaker_rows = [], [], []
    for u in utterances():
        f = fz.features(u)
        x, row = win.inputs(u, f)
        out = backend.infer(x)
        assert out.probs.shape == (1, x.context, len(labels))
        gate = out.gate[0, -1]
        assert np.all(gate[f.mask == 0] == pytest.approx(0.0, abs=1e-6))  # masked: no trust
        assert gate.sum() == pytest.approx(1.0, abs=1e-3)
        live_probs.append(out.probs[0, -1])
        rows.append(x)
        speaker_rows.append(x.speaker[0, -1].copy())
        win.commit(u, f, row)
    # The whole dialogue at once in causal mode gives the same answers as the live steps.
    whole = rows[-1]
    full = backend.infer(whole).probs[0]
    np.testing.assert_allclose(full, np.stack(live_probs), atol=2e-4)

    if info.speaker_source not in ("history", "enroll"):
        pytest.skip(f"checkpoint speaker source is {info.speaker_source}")
    # spk7, enrolled a moment ago: unknown (zeros) at its first utterance, then its own summary
    # (enroll: the text count is the last entry; the voice part stays empty here because these
    # synthetic tones have no ASR encoder pass, so voice is masked with a reason).
    assert not speaker_rows[3].any() and speaker_rows[5].any()
    assert speaker_rows[5][-1] == pytest.approx(np.log1p(1))
    # ... and the model reads it: with spk7's summary blanked, its answer changes.
    blank = whole.speaker.copy()
    blank[0, 5] = 0.0
    x = EmotionInputs(
        whole.text, whole.audio, whole.visual, whole.modality_mask, blank, whole.context_mask
    )
    changed = backend.infer(x).probs[0, 5]
    assert np.abs(changed - full[5]).max() > 1e-4
