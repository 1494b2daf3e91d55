"""The audio front on real audio: the two-speaker sample (VAD, voices, online diarization, DER),
Whisper on synthesized speech, and ``mlsan-live diarize``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from edge_app.audio.offline import AudioPipelineOptions, AudioStages, process_file
from edge_app.messages import SAMPLE_RATE, SpeechSegment
from mlsan.blas_threads import USER_SETTINGS, blas_threads

pytestmark = pytest.mark.slow

# One label for everyone scores 0.50 and a phantom third label 0.21-0.43 on this clip (the test
# also asserts exactly two labels); the bound is the README's claim.
DER_BOUND = 0.12  # README "Voices": 11.6 % measured, bound 12 % (as tests/test_audio_der.py)


@pytest.fixture(scope="module")
def stages():
    return AudioStages.load(AudioPipelineOptions(), transcribe=False)


@pytest.fixture(scope="module")
def sample_result(stages, shared_data):
    return process_file(shared_data / "diarization" / "sample.wav", stages)


def test_segments_and_turns_are_ordered_disjoint_and_inside_the_file(sample_result):
    r = sample_result
    assert r.duration == pytest.approx(30.0, abs=0.05)
    assert r.segments
    for items in (r.segments, r.turns):
        prev_end = 0.0
        for x in items:
            assert prev_end - 1e-6 <= x.t_start < x.t_end <= r.duration + 1e-6
            prev_end = x.t_end
    for s in r.segments:
        assert len(s.samples) == pytest.approx((s.t_end - s.t_start) * SAMPLE_RATE, abs=1)
    # Overlap turns (a second voice) lie inside their segment, under one turn of another speaker.
    for o in r.overlaps:
        under = [t for t in r.turns if t.t_start < o.t_end and o.t_start < t.t_end]
        assert len(under) == 1 and under[0].speaker_id != o.speaker_id
    # Every turn lies inside its own segment.
    by_id = {s.segment_id: s for s in r.segments}
    for t in r.all_turns:
        seg = by_id[t.segment_id]
        assert seg.t_start - 1e-6 <= t.t_start and t.t_end <= seg.t_end + 1e-6
        assert t.embedding.shape == (192,) and abs(np.linalg.norm(t.embedding) - 1) < 1e-3


def test_every_segment_is_handed_on_soon_after_its_end(sample_result):
    # The speech detection's share of the live latency: a segment ends at a pause (known
    # min_silence_s later), at a change of voice (judged change_context_s later, or found when
    # re-judged up to change_recheck_s later, then cut back there) or at max_segment_s, each
    # scored at most hop_s + lookahead_s after the audio came, plus one 32-ms chunk and frame
    # rounding. The sample has all three kinds.
    opts = AudioPipelineOptions()
    seg = opts.segmentation
    late = max(seg.change_context_s, seg.change_recheck_s)
    bound = max(opts.vad.min_silence_s + seg.lookahead_s, late) + seg.hop_s
    bound += 0.032 + 0.064
    waits = [
        at - s.t_end
        for s in sample_result.segments
        if (at := sample_result.emitted_at[s.segment_id]) is not None
    ]
    assert len(waits) >= 6
    assert max(waits) <= bound, (max(waits), bound)  # measured 0.992 <= 1.346


def test_two_speakers_get_two_labels_and_der_is_bounded(sample_result, shared_data):
    from pyannote.metrics.diarization import DiarizationErrorRate

    from edge_app.audio.scoring import der_parts, hypothesis, read_rttm

    labels = {t.speaker_id for t in sample_result.turns}
    assert len(labels) == 2
    ref = read_rttm(shared_data / "diarization" / "sample.rttm")["sample"]
    der = der_parts(ref, sample_result.all_turns, sample_result.duration)["der"]
    assert der < DER_BOUND
    # Each reference speaker is mostly one of our labels (the mapping is one-to-one).
    mapping = DiarizationErrorRate().optimal_mapping(ref, hypothesis(sample_result.all_turns))
    assert len(set(mapping.values())) == 2


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_two_synthetic_voices_of_one_kind_get_two_labels(tmp_path):
    # The previous pipeline (offline.LEGACY: Silero, resemblyzer) on two espeak-ng voices
    # whose centroids are at cosine ~0.82, taking turns with gaps of 0.15-0.6 s (some turns
    # share a VAD segment): two labels, DER < 0.30. The default CAM++ model does NOT separate
    # these two synthetic voices (1.5-s windows: 0.68 between the voices, 0.73 within one; it
    # hears the one synthesizer), so this checks the legacy pipeline only; real voices are
    # checked on AMI and the sample (test_audio_der.py).
    import soundfile as sf
    from pyannote.core import Annotation, Segment

    from edge_app.audio.scoring import der_parts
    from edge_app.audio.sources import load_audio

    a, b = "en-us+m3", "en-gb+f2"
    script = [
        (a, "I looked at the numbers again and the second quarter is better than we thought.", 0.6),
        (b, "Really? That is good news for the whole team.", 0.15),
        (a, "Yes, mostly because the new store opened early and online orders kept growing.", 0.6),
        (
            b,
            "We should still check the budget with finance, they were worried about the rent.",
            0.5,
        ),
        (a, "Fine, let us meet on Thursday and go through all of it together.", 0.15),
        (b, "Sure, Thursday morning works for me.", 0.6),
    ]
    parts, ref, t = [np.zeros(SAMPLE_RATE // 2, np.float32)], Annotation(), 0.5
    for voice, text, gap in script:
        out = tmp_path / "say.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(out), text], check=True)
        x = load_audio(out)
        loud = np.nonzero(np.abs(x) > 0.01)[0]
        x = x[loud[0] : loud[-1] + 1]
        ref[Segment(t, t + len(x) / SAMPLE_RATE)] = voice
        parts += [x, np.zeros(int(gap * SAMPLE_RATE), np.float32)]
        t += len(x) / SAMPLE_RATE + gap
    wav = tmp_path / "conversation.wav"
    sf.write(wav, np.concatenate(parts), SAMPLE_RATE)
    from edge_app.audio.offline import LEGACY

    r = process_file(wav, AudioStages.load(LEGACY))
    assert len({turn.speaker_id for turn in r.turns}) == 2
    assert der_parts(ref, r.turns, r.duration)["der"] < 0.30


def test_digital_silence_gives_no_segments(stages, tmp_path):
    import soundfile as sf

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SAMPLE_RATE * 4, np.float32), SAMPLE_RATE)
    r = process_file(path, stages)
    assert r.segments == () and r.turns == ()
    assert r.duration == pytest.approx(4.0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_whisper_transcribes_synthesized_speech_with_word_times(tmp_path):
    from edge_app.audio.asr import AsrOptions, WhisperTranscriber
    from edge_app.audio.sources import load_audio

    wav = tmp_path / "say.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us",
            "-s",
            "150",
            "-w",
            str(wav),
            "the weather is lovely today and the cat is asleep",
        ],
        check=True,
    )
    audio = load_audio(wav)
    seg = SpeechSegment(7, 10.0, 10.0 + len(audio) / SAMPLE_RATE, audio)
    tr = WhisperTranscriber(AsrOptions()).transcribe(seg)
    text = tr.text.lower()
    assert tr.segment_id == 7
    if not any(os.environ.get(k) for k in USER_SETTINGS):  # the ASR set numpy's BLAS pool
        assert blas_threads() == 1
    said = "the weather is lovely today and the cat is asleep".split()
    heard = set(text.replace(".", " ").replace(",", " ").split())
    assert sum(w in heard for w in said) >= 7, text  # tiny.en on a robot voice: most words
    assert tr.words
    prev = seg.t_start
    for w in tr.words:
        assert prev - 0.05 <= w.t_start <= w.t_end <= seg.t_end + 1e-6
        assert 0.0 <= w.probability <= 1.0
        prev = w.t_start


def test_whisper_gives_the_same_words_for_the_same_segments(shared_data):
    """A segment whose greedy text Whisper rejects (the sample's 10.27-11.26 s, two voices) is
    decoded again by sampling; with the seed (AsrOptions.seed) a fresh transcriber given the
    same segments in the same order gives the same words, so two replays of a file agree."""
    from edge_app.audio.asr import AsrOptions, WhisperTranscriber
    from edge_app.audio.sources import load_audio

    audio = load_audio(shared_data / "diarization" / "sample.wav")
    a, b = 10.272, 11.264
    seg = SpeechSegment(3, a, b, audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)])

    def texts() -> list[str]:
        asr = WhisperTranscriber(AsrOptions())
        return [asr.transcribe(seg).text for _ in range(4)]

    first = texts()
    assert texts() == first and all(first), first
    # The fallback did sample here (a temperature above 0 was used).
    parts, _ = WhisperTranscriber(AsrOptions()).model.transcribe(
        seg.samples, language="en", beam_size=1, condition_on_previous_text=False
    )
    assert max(p.temperature for p in parts) > 0


def test_missing_asr_model_is_one_clear_error(tmp_path):
    from edge_app.audio.asr import AsrError, AsrOptions, WhisperTranscriber

    with pytest.raises(AsrError, match="does not exist"):
        WhisperTranscriber(AsrOptions(model=str(tmp_path / "no" / "model")))
    with pytest.raises(AsrError, match="nothing is downloaded"):
        WhisperTranscriber(AsrOptions(model="large-v9"))


def test_cli_diarize_writes_rttm_json_and_gallery(shared_data, tmp_path, capsys):
    from edge_app.cli import main

    wav = shared_data / "diarization" / "sample.wav"
    rttm, js, gal = tmp_path / "out.rttm", tmp_path / "out.json", tmp_path / "g.json"
    rc = main(
        [
            "diarize",
            str(wav),
            "--rttm",
            str(rttm),
            "--json",
            str(js),
            "--gallery",
            str(gal),
            "--name",
            "spk1=Alice",
        ]
    )
    assert rc == 0
    lines = rttm.read_text().splitlines()
    assert lines and all(line.startswith("SPEAKER sample 1 ") for line in lines)
    report = json.loads(js.read_text())
    assert {t["speaker"] for t in report["turns"]} == {"spk1", "spk2"}
    assert json.loads(gal.read_text())["speakers"][0]["name"] == "Alice"
    # A second run with the gallery recognises the same two people (their session ids, used
    # until gallery_min_s of speech, resolve to the stored ones); the gallery gains nobody.
    rc = main(["diarize", str(wav), "--json", str(js), "--gallery", str(gal)])
    assert rc == 0
    report = json.loads(js.read_text())
    assert {t["speaker"] for t in report["turns"]} <= {"spk1", "spk2"}
    assert "Alice" in {t["name"] for t in report["turns"]}
    assert [s["id"] for s in json.loads(gal.read_text())["speakers"]] == ["spk1", "spk2"]
    # --forget by name removes the person; an unknown name is one clear error.
    assert (
        main(["diarize", str(wav), "--json", str(js), "--gallery", str(gal), "--forget", "alice"])
        == 0
    )
    assert "spk1" not in [s["id"] for s in json.loads(gal.read_text())["speakers"]]
    assert (
        main(["diarize", str(wav), "--json", str(js), "--gallery", str(gal), "--forget", "Nobody"])
        == 2
    )
    assert "nobody called 'Nobody'" in capsys.readouterr().err
    # Bad input: one line, exit 2.
    assert main(["diarize", str(tmp_path / "missing.wav"), "--rttm", str(rttm)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_whisper_pass_ahead_serves_the_segment_it_guessed(shared_data):
    """Speculative recognition (``WhisperTranscriber.transcribe_ahead``) on one of the sample's
    turns (11.26-14.69 s, ended by a change of voice): a guess of the same audio serves the
    segment with the words and voice states a plain pass gives; a guess that ends 3 frames
    later (within ``ahead_tolerance_s``) serves it with the guess's words, times cut at the
    segment's end and states of the segment's length; one 0.7 s short is transcribed again."""
    from edge_app.audio.asr import AsrOptions, WhisperTranscriber
    from edge_app.audio.sources import load_audio
    from mlsan.voice_features import n_states

    audio = load_audio(shared_data / "diarization" / "sample.wav")

    def seg(i: int, a: float, b: float) -> SpeechSegment:
        return SpeechSegment(i, a, b, audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)])

    a, b, later = 11.264, 14.688, 14.784
    asr = WhisperTranscriber(AsrOptions())
    plain = asr.transcribe(seg(1, a, b))
    longer = asr.transcribe(seg(2, a, later))
    assert plain.text and asr.ahead.passes == 0

    asr.transcribe_ahead(seg(-1, a, b))
    same = asr.transcribe(seg(3, a, b))
    assert (asr.ahead.passes, asr.ahead.used) == (1, 1)
    assert (same.segment_id, same.text, same.words) == (3, plain.text, plain.words)
    np.testing.assert_array_equal(asr.voice_states.get(3)[1], asr.voice_states.get(1)[1])

    asr.transcribe_ahead(seg(-1, a, later))
    near = asr.transcribe(seg(4, a, b))
    assert asr.ahead.used_near == 1 and near.text == longer.text
    assert all(w.t_end <= b for w in near.words) and near.t_end == b
    assert asr.voice_states.get(4)[1].shape[0] == n_states(len(seg(4, a, b).samples))

    asr.transcribe_ahead(seg(-1, a, b - 0.7))
    again = asr.transcribe(seg(5, a, b))
    assert asr.ahead.unused == 1 and again.text == plain.text
    assert asr.transcribe(seg(6, a, b)).text == plain.text and asr.ahead.unused == 1  # forgotten
