"""Who spoke when on real meetings: the DER the README claims, and a gallery that never gives a
stored id to someone else. Real audio: ten AMI excerpts and sample.wav (../shared/data).

The default settings were chosen on these same files (there is no other labelled meeting audio
here); bench/bench_diarization.py --halves shows the tune-on-one-half / score-on-the-other check.
"""

from __future__ import annotations

import pytest

from edge_app.audio.offline import AudioPipelineOptions, AudioStages, process_file

AMI = [f"trn{i:02d}" for i in range(10)]
# Claimed in README.md ("Diarization"), measured by bench/bench_diarization.py: pooled DER with
# no collar, the defaults, as `mlsan-live diarize` writes the turns (ids resolved) and as the
# live run's event stream carries them (its ``turn`` records, ids as first given: a --fast
# replay through the whole live pipeline, threads, speech recognition and emotion included).
# AMI: 29.78 % on the files as they are, 29.54-29.78 % on 8 copies with -120 dBFS of added
# noise (bench_diarization.py --perturb 8): the goal, 30 %, holds with a margin for float
# rounding. (Before CAM++'s input was level-normalised the noise flipped trn08's online
# labelling and the pooled DER spread over 29.7-30.4 %.)
AMI_DER = {"diarize": 0.30, "live": 0.30}
SAMPLE_DER = {"diarize": 0.12, "live": 0.12}  # measured 0.1156 both


def load_refs(shared_data):
    from edge_app.audio.scoring import read_rttm

    d = shared_data / "diarization"
    return read_rttm(d / "ami" / "train.rttm") | read_rttm(d / "sample.rttm")


def wav(shared_data, uri):
    d = shared_data / "diarization"
    return d / "sample.wav" if uri == "sample" else d / "ami" / f"{uri}.wav"


@pytest.fixture(scope="module")
def stages():
    import torch

    torch.set_num_threads(1)
    return AudioStages.load(AudioPipelineOptions())


@pytest.fixture(scope="module")
def offline(stages, shared_data):
    """{uri: FileResult} of `mlsan-live diarize`'s pipeline (ids as first given)."""
    return {
        uri: process_file(wav(shared_data, uri), stages, resolve_merged=False)
        for uri in [*AMI, "sample"]
    }


@pytest.fixture(scope="module")
def live_turns(shared_data, tmp_path_factory):
    """{uri: the ``turn`` records of a live run's event file}: ``mlsan-live --audio FILE
    --fast --headless --events FILE --no-gallery``, one LivePipeline per file."""
    import json

    from mlsan.errors import ModelNotFoundError
    from mlsan.registry import default_registry

    try:
        default_registry().resolve("mlsan")
    except ModelNotFoundError as exc:
        pytest.skip(f"no trained ML-SAN checkpoint: {exc}")
    from edge_app.live_pipeline import LiveOptions, LivePipeline

    out = {}
    folder = tmp_path_factory.mktemp("events")
    for uri in [*AMI, "sample"]:
        events = folder / f"{uri}.jsonl"
        options = LiveOptions(
            audio=wav(shared_data, uri), headless=True, events=str(events), realtime=False
        )
        assert LivePipeline(options).run() == 0
        records = [json.loads(line) for line in events.read_text().splitlines()]
        assert records[-1]["type"] == "summary"
        out[uri] = [r for r in records if r["type"] == "turn"]
        assert records[-1]["turns"]["emitted"] == len(out[uri])
    return out


@pytest.fixture(scope="module")
def scored(offline, live_turns, shared_data):
    """{mode: {uri: (error seconds, scored seconds)}} with no collar."""
    from types import SimpleNamespace

    from edge_app.audio.scoring import der_parts

    refs = load_refs(shared_data)
    out = {"diarize": {}, "live": {}}
    for uri, r in offline.items():
        d = der_parts(refs[uri], r.all_turns, r.duration, rename=r.diarizer.resolve)
        out["diarize"][uri] = (d["missed_s"] + d["false_alarm_s"] + d["confusion_s"], d["scored_s"])
        turns = [
            SimpleNamespace(speaker_id=t["speaker"], t_start=t["t_start"], t_end=t["t_end"])
            for t in live_turns[uri]
        ]
        d = der_parts(refs[uri], turns, r.duration)
        out["live"][uri] = (d["missed_s"] + d["false_alarm_s"] + d["confusion_s"], d["scored_s"])
    return out


def test_live_turn_records_are_the_diarize_turns(offline, live_turns):
    """One pipeline: the live run's turn records are exactly the turns `mlsan-live diarize`
    finds (times to the record's millisecond, ids as first given, overlap turns flagged)."""

    def rows(turns, overlap):
        return [(round(t.t_start, 3), round(t.t_end, 3), t.speaker_id, overlap) for t in turns]

    for uri, r in offline.items():
        want = sorted(rows(r.turns, False) + rows(r.overlaps, True))
        got = sorted(
            (t["t_start"], t["t_end"], t["speaker"], t["overlap"]) for t in live_turns[uri]
        )
        assert got == want, uri
    assert sum(t["overlap"] for turns in live_turns.values() for t in turns) >= 4


@pytest.mark.parametrize("mode", ["diarize", "live"])
def test_ami_pooled_der_is_within_the_claim(scored, mode):
    rows = [scored[mode][u] for u in AMI]
    der = sum(e for e, _ in rows) / sum(t for _, t in rows)
    assert der <= AMI_DER[mode], f"AMI pooled DER {der:.4f}"


@pytest.mark.parametrize("mode", ["diarize", "live"])
def test_sample_der_is_within_the_claim(scored, mode):
    err, total = scored[mode]["sample"]
    assert err / total <= SAMPLE_DER[mode], f"sample DER {err / total:.4f}"


def test_gallery_reuses_ids_only_for_the_same_people(stages, shared_data, tmp_path):
    # Enroll the people of trn00, trn06 and trn07; replay files with other people (trn04,
    # trn05: nobody in common) and with the same people (trn03: MÉO069 of trn00; trn09:
    # FEE083 of trn06). No stored id may go to another person; the same people get theirs.
    from edge_app.audio.gallery import SpeakerGallery
    from edge_app.audio.scoring import majority_person

    refs = load_refs(shared_data)

    def people(uri, turns):
        return majority_person(refs[uri], turns)

    gal = SpeakerGallery(tmp_path / "g.json", model_id=stages.embedder.model_id)
    stored = {}
    for uri in ("trn00", "trn06", "trn07"):
        r = process_file(wav(shared_data, uri), stages, gallery=gal)
        r.diarizer.save()
        who = people(uri, r.all_turns)
        stored.update({s.speaker_id: who[s.speaker_id] for s in gal.load() if s.speaker_id in who})
    assert {"MÉO069", "FEE083"} <= set(stored.values())
    snapshot = gal.path.read_text()
    for uri, expect in (
        ("trn04", set()),
        ("trn05", set()),
        ("trn03", {"MÉO069"}),
        ("trn09", {"FEE083"}),
    ):
        gal.path.write_text(snapshot)
        r = process_file(wav(shared_data, uri), stages, gallery=gal)
        who = people(uri, r.all_turns)
        reused = {sid: p for sid, p in who.items() if sid in stored}
        assert all(stored[sid] == p for sid, p in reused.items()), (uri, reused, stored)
        assert set(reused.values()) == expect, (uri, reused)


def test_gallery_of_another_voice_model_is_refused(stages, tmp_path):
    import json

    from edge_app.audio.gallery import GalleryError, SpeakerGallery

    path = tmp_path / "g.json"
    path.write_text(
        json.dumps(
            {
                "format": "mlsan-live speaker gallery",
                "version": 1,
                "embedding_dim": 2,
                "speakers": [{"id": "spk1", "name": None, "centroid": [1.0, 0.0]}],
            }
        )
    )
    with pytest.raises(GalleryError, match="made with the voice model resemblyzer"):
        process_file_gallery = SpeakerGallery(path, model_id=stages.embedder.model_id)
        process_file_gallery.load()
    before = path.read_text()
    with pytest.raises(GalleryError, match="cannot be compared"):
        from edge_app.audio.diarizer import OnlineDiarizer

        OnlineDiarizer(gallery=SpeakerGallery(path), model_id=stages.embedder.model_id)
    assert path.read_text() == before  # left untouched


def test_two_voices_with_the_same_times_both_count(tmp_path):
    """An overlap turn can start and end exactly where a main turn does (and two reference
    lines can share their times): scoring keeps both, it does not let one replace the other."""
    from types import SimpleNamespace

    from pyannote.core import Annotation, Segment

    from edge_app.audio.scoring import der_parts, read_rttm

    rttm = tmp_path / "two.rttm"
    rttm.write_text(
        "SPEAKER f 1 0.00 2.00 <NA> <NA> A <NA> <NA>\n"
        "SPEAKER f 1 0.00 2.00 <NA> <NA> B <NA> <NA>\n",
        encoding="utf-8",
    )
    assert read_rttm(rttm)["f"].labels() == ["A", "B"]
    ref = Annotation(uri="f")
    ref[Segment(0.0, 2.0), "a"] = "A"
    ref[Segment(0.0, 2.0), "b"] = "B"
    turns = [SimpleNamespace(t_start=0.0, t_end=2.0, speaker_id=s) for s in ("x", "y")]
    assert der_parts(ref, turns, 2.0)["der"] == 0.0


def test_clip_conversations_are_labelled_and_repeatable(shared_data):
    """The RAVDESS conversations of bench_diarization --ravdess: the same audio for the same
    number, turns inside the audio, in order, never overlapping, never one actor twice in a
    row."""
    import numpy as np

    from edge_app.audio.scoring import clip_conversation

    audio, ref = clip_conversation(shared_data / "ravdess", 1)
    again, _ = clip_conversation(shared_data / "ravdess", 1)
    np.testing.assert_array_equal(audio, again)
    assert audio.dtype == np.float32 and np.abs(audio).max() <= 1.0
    turns = list(ref.itertracks(yield_label=True))
    assert len(turns) == 12 and 2 <= len(ref.labels()) <= 3
    assert all(lab in {"actor21", "actor22", "actor23", "actor24"} for lab in ref.labels())
    end = 0.0
    for (seg, _, lab), (_, _, nxt) in zip(turns, [*turns[1:], (None, None, None)], strict=True):
        assert end <= seg.start < seg.end <= len(audio) / 16000
        assert seg.duration >= 0.5 and lab != nxt
        end = seg.end


# Claimed in README.md ("Other voices"): conversations 0-3 of bench_diarization --ravdess
# (real voices, close talk, 2-3 actors each): pooled DER with no collar, the defaults, as
# `mlsan-live diarize` writes the turns. Measured 0.2733 (one of the four, three actors found as
# one, is 69 %); all 24 conversations: 23.2 %.
RAVDESS_0_3_DER = 0.28


def test_ravdess_conversations_der_is_within_the_claim(stages, shared_data, tmp_path):
    import soundfile as sf

    from edge_app.audio.scoring import clip_conversation, der_parts

    err = total = 0.0
    for k in range(4):
        audio, ref = clip_conversation(shared_data / "ravdess", k)
        path = tmp_path / f"rav{k:02d}.wav"
        sf.write(path, audio, 16000, subtype="FLOAT")
        r = process_file(path, stages)
        d = der_parts(ref, r.all_turns, r.duration)
        err += d["missed_s"] + d["false_alarm_s"] + d["confusion_s"]
        total += d["scored_s"]
    assert err / total <= RAVDESS_0_3_DER
