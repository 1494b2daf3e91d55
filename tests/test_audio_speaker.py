"""CAM++ speaker embeddings (ONNX) and the Kaldi fbank they need: numbers checked against
references, and voices told apart on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.audio.fbank import kaldi_fbank, n_frames
from edge_app.messages import SAMPLE_RATE, SpeechSegment

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_fbank_matches_torchaudio_kaldi_reference(shared_data):
    # fbank_reference.npz: torchaudio.compliance.kaldi.fbank(num_mel_bins=80, dither=0) of
    # sample.wav [3 s, 4 s) (torchaudio 2.11, run once outside this project).
    from edge_app.audio.sources import load_audio

    ref = np.load(FIXTURES / "fbank_reference.npz")
    audio = load_audio(shared_data / "diarization" / "sample.wav")
    a, b = int(ref["start_s"] * SAMPLE_RATE), int(ref["end_s"] * SAMPLE_RATE)
    ours = kaldi_fbank(audio[a:b])
    assert ours.shape == ref["fbank"].shape == (98, 80)
    assert np.abs(ours - ref["fbank"]).max() < 2e-3  # measured 2.6e-4 (float32 vs float64 FFT)


def test_fbank_frame_count_and_short_input():
    assert n_frames(399) == 0 and n_frames(400) == 1 and n_frames(560) == 2
    assert kaldi_fbank(np.zeros(100, np.float32)).shape == (0, 80)
    silent = kaldi_fbank(np.zeros(1600, np.float32))
    assert np.isfinite(silent).all()  # log floored at float32 epsilon, no -inf


@pytest.fixture(scope="module")
def camp():
    from edge_app.audio.speaker import CamppEmbedder
    from edge_app.audio.voice import VoiceOptions

    return CamppEmbedder(VoiceOptions())


def test_registry_ships_the_onnx_models_with_their_digests():
    from mlsan.registry import default_registry

    reg = default_registry()
    for name in ("speaker", "segmentation"):
        st = reg.status(name)
        assert st.problem is None, st.problem
        assert st.found.source in ("package", "cache", "explicit")
        sidecar = st.found.path.with_name(st.found.path.name + ".sha256")
        assert sidecar.read_text().split()[0] == st.sha256


def test_embedding_shapes_and_windows(camp):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SAMPLE_RATE * 4)).astype(np.float32)
    e = camp.embed(x)
    assert e.shape == (192,) and abs(np.linalg.norm(e) - 1) < 1e-4
    sv = camp.embed_segment(SpeechSegment(3, 10.0, 14.0, x))
    # 4 s, 1.5 s windows every 0.5 s, the last aligned to the end.
    assert len(sv.spans) == 6
    assert sv.spans[0].t_start == pytest.approx(10.0) and sv.spans[-1].t_end == pytest.approx(
        14.0, abs=0.02
    )
    assert all(10.0 <= s.t_start < s.t_end <= 14.0 for s in sv.spans)
    short = camp.embed_segment(SpeechSegment(4, 0.0, 0.1, x[:1600]))
    assert short.spans == () and short.embedding is None
    assert camp.model_id.startswith("campplus_cn_en_common:")


def test_real_voices_are_told_apart(camp, shared_data):
    # 1.5-s windows of one speaker each (reference turns of AMI trn00 and the sample): the
    # cosine ranks same-speaker pairs above different-speaker pairs (ROC AUC; measured 0.999 on
    # all ten AMI files, resemblyzer 0.53).
    from sklearn.metrics import roc_auc_score

    from edge_app.audio.sources import load_audio

    embs, labels = [], []
    for wav, rttm, uri in (
        ("ami/trn00.wav", "ami/train.rttm", "trn00"),
        ("ami/trn09.wav", "ami/train.rttm", "trn09"),
        ("sample.wav", "sample.rttm", "sample"),
    ):
        audio = load_audio(shared_data / "diarization" / wav)
        turns = []
        for line in (shared_data / "diarization" / rttm).read_text(encoding="utf-8").splitlines():
            f = line.split()
            if f and f[1] == uri:
                turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
        for a, b, who in turns:
            others = [(c, d) for c, d, w in turns if w != who]
            t = a
            while t + 1.5 <= b:
                if not any(c < t + 1.5 and d > t for c, d in others):
                    embs.append(
                        camp.embed(audio[int(t * SAMPLE_RATE) : int((t + 1.5) * SAMPLE_RATE)])
                    )
                    labels.append(who)
                t += 1.5
    e, lab = np.stack(embs), np.array(labels)
    iu = np.triu_indices(len(lab), 1)
    same = (lab[:, None] == lab[None, :])[iu]
    assert len(set(labels)) >= 4 and same.sum() > 20 and (~same).sum() > 20
    assert roc_auc_score(same, (e @ e.T)[iu]) > 0.95


def test_vectors_do_not_move_with_the_recording_level(camp, shared_data):
    # A real far-field AMI window (trn07 10.0-11.5 s, speech at about -52 dBFS) at a tenth,
    # a thirtieth and three times its level: the same voice. Without the level normalisation
    # Kaldi's log floor ate the quiet copies' weaker bins (cosine 0.44 at a tenth).
    from edge_app.audio.sources import load_audio

    audio = load_audio(shared_data / "diarization" / "ami" / "trn07.wav")
    x = audio[10 * SAMPLE_RATE : int(11.5 * SAMPLE_RATE)]
    assert -58 < 20 * np.log10(np.sqrt(np.mean(x**2))) < -46
    e = camp.embed(x)
    for gain in (0.1, 1 / 30, 3.0):
        assert float(camp.embed(x * np.float32(gain)) @ e) > 0.999
    seg = camp.embed_segment(SpeechSegment(1, 10.0, 11.5, x * np.float32(0.1)))
    assert float(seg.embedding @ e) > 0.999
    silent = camp.embed(np.zeros(SAMPLE_RATE, np.float32))  # digital silence: no division by 0
    assert np.isfinite(silent).all()


def test_windows_embedded_ahead_are_reused_only_over_the_same_audio(camp, shared_data):
    # The live run embeds the speech detection's guess of a segment before it is handed on
    # (CamppEmbedder.embed_ahead); the segment then reuses the windows the guess held. One of
    # the sample's turns, 14.688-18.112 s (7 windows of 1.5 s every 0.5 s).
    from edge_app.audio.sources import load_audio

    audio = load_audio(shared_data / "diarization" / "sample.wav")

    def seg(t0: float, t1: float, sid: int = 5) -> SpeechSegment:
        return SpeechSegment(sid, t0, t1, audio[int(t0 * SAMPLE_RATE) : int(t1 * SAMPLE_RATE)])

    def embed(segment):
        before = (camp.ahead.reused, camp.ahead.computed)
        sv = camp.embed_segment(segment)
        reused, computed = camp.ahead.reused - before[0], camp.ahead.computed - before[1]
        return np.stack([s.embedding for s in sv.spans]), reused, computed

    turn = seg(14.688, 18.112)
    fresh, reused, computed = embed(turn)
    n = len(fresh)
    assert n == 5 and (reused, computed) == (0, n)
    # The same audio guessed: every window reused, bit for bit; the guess is used once.
    camp.embed_ahead(seg(14.688, 18.112, -1))
    vectors, reused, computed = embed(turn)
    assert (reused, computed) == (n, 0) and np.array_equal(vectors, fresh)
    assert embed(turn)[1:] == (0, n)
    # A guess 0.1 s short (a speaker change confirmed a few frames later): only the window
    # aligned to the end is run again; the others come from the guess's audio, whose level
    # the segment's differs from by a hair (the vectors are level-independent).
    camp.embed_ahead(seg(14.688, 18.012, -1))
    vectors, reused, computed = embed(turn)
    assert (reused, computed) == (n - 1, 1)
    assert np.min(np.sum(vectors * fresh, axis=1)) > 0.999
    # Two guesses of one open segment add up (a pause that did not end, then the real end).
    camp.embed_ahead(seg(14.688, 16.256, -1))
    camp.embed_ahead(seg(14.688, 18.012, -1))
    assert embed(turn)[1:] == (n - 1, 1)
    # Another start, or other audio under a window: computed again.
    camp.embed_ahead(seg(14.656, 18.112, -1))
    assert embed(turn)[1:] == (0, n)
    changed = turn.samples.copy()
    changed[SAMPLE_RATE] += np.float32(1e-3)  # inside the first three windows
    other = SpeechSegment(-1, turn.t_start, turn.t_end, changed)
    camp.embed_ahead(other)
    vectors, reused, computed = embed(turn)
    assert (reused, computed) == (n - 3, 3) and np.min(np.sum(vectors * fresh, axis=1)) > 0.999
    # The open segment's audio so far (StreamingVad.open_prefix), as the turn goes on: only
    # whole windows from its start, each once; the segment then runs the last two.
    ahead = camp.ahead.ahead
    camp.embed_ahead(seg(14.688, 16.5, -1), ends_here=False)  # 1.8 s: the window at 0 s
    assert len(camp._ahead.vectors) == 1
    camp.embed_ahead(seg(14.688, 17.2, -1), ends_here=False)  # 2.5 s: + 0.5 s and 1.0 s
    camp.embed_ahead(seg(14.688, 17.3, -1), ends_here=False)  # nothing new
    assert sorted(camp._ahead.vectors) == [(0, 150), (50, 200), (100, 250)]
    assert camp.ahead.ahead - ahead == 3
    vectors, reused, computed = embed(turn)
    assert (reused, computed) == (3, n - 3) and np.min(np.sum(vectors * fresh, axis=1)) > 0.999
