"""Readers on small files built here in the real formats: MELD CSV, feature store, ERC pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlsan.config import MLSANConfig
from mlsan.data import load_meld, make_batch
from mlsan.erc_pickle import ErcPickleError, erc_dialogue_arrays, read_erc_pickle
from mlsan.feature_store import FeatureStoreError, FeatureStoreWriter, read_feature_store
from mlsan.features import RawTextCache, cached_raw_text
from mlsan.meld import DataError, decode_mixed, read_meld_csv

HEADER = (
    b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
    b"StartTime,EndTime\r\n"
)


def _meld_csv(path, rows):
    lines = [HEADER]
    for i, (dia, utt, spk, emo, text) in enumerate(rows, start=1):
        lines.append(
            b'%d,"%s",%s,%s,neutral,%d,%d,1,1,"00:00:01,000","00:00:02,000"\r\n'
            % (i, text, spk.encode(), emo.encode(), dia, utt)
        )
    path.write_bytes(b"".join(lines))
    return path


def test_decode_mixed_handles_utf8_and_stray_cp1252():
    raw = "It’s ".encode() + b"I\x92m here \x85" + "café".encode()
    assert decode_mixed(raw) == "It’s I’m here …café"


def test_meld_csv_reader_orders_dialogues_and_decodes(tmp_path):
    path = _meld_csv(
        tmp_path / "train_sent_emo.csv",
        [
            (1, 1, "Ross", "joy", b"We were on a break\x92"),
            (0, 1, "Monica", "anger", "Don’t, \n multi-line".encode()),
            (1, 0, "Rachel", "sadness", b"No!"),
            (0, 0, "Joey", "neutral", b'How you doin, "you"?'),
        ],
    )
    dialogues = read_meld_csv(path)
    assert [d.dialogue_id for d in dialogues] == [0, 1]
    assert dialogues[0].speakers == ("Joey", "Monica")
    assert dialogues[1].utterances[1].text == "We were on a break’"
    assert dialogues[0].utterances[1].text == "Don’t, multi-line"
    assert dialogues[0].labels == (0, 6) and dialogues[1].labels == (3, 4)


def test_meld_csv_errors(tmp_path):
    with pytest.raises(DataError, match="--data"):
        read_meld_csv(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks MELD columns"):
        read_meld_csv(bad)
    path = _meld_csv(tmp_path / "x.csv", [(0, 0, "Joey", "bored", b"hi")])
    with pytest.raises(DataError, match=r"x.csv:2"):
        read_meld_csv(path)


def test_feature_store_round_trip_and_errors(tmp_path):
    writer = FeatureStoreWriter(extractors={"audio": "edge_app.audio.features"})
    writer.add(0, 0, audio=np.arange(88), visual=np.ones(112), voice=np.ones(256))
    writer.add(0, 1, audio=np.ones(88))
    with pytest.raises(ValueError, match="88"):
        writer.add(0, 2, audio=np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        writer.add(0, 2, visual=np.full(112, np.nan))
    path = writer.save(tmp_path / "train.npz")
    store = read_feature_store(path)
    assert len(store) == 2 and store.meta["extractors"]["audio"] == "edge_app.audio.features"
    row = store.lookup(0, 0)
    np.testing.assert_array_equal(row.audio, np.arange(88))
    assert store.lookup(0, 1).visual is None and store.lookup(5, 5) is None
    with np.load(path) as data:  # documented plain-numpy format, no pickles
        assert set(data.files) >= {"dialogue_id", "audio_present", "visual", "meta"}
    with pytest.raises(FeatureStoreError, match="does not exist"):
        read_feature_store(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(FeatureStoreError):
        read_feature_store(tmp_path / "other.npz")


def test_load_meld_merges_feature_store_and_masks_missing(tmp_path, monkeypatch):
    _meld_csv(
        tmp_path / "dev_sent_emo.csv",
        [
            (3, 0, "Ross", "joy", b"Hi"),
            (3, 1, "Rachel", "fear", b"Oh no"),
            (3, 2, "Ross", "disgust", b"Eww"),
        ],
    )
    writer = FeatureStoreWriter()
    writer.add(3, 1, audio=np.ones(88), voice=np.ones(256))
    store = read_feature_store(writer.save(tmp_path / "dev.npz"))

    class FakeEncoder:  # text encoding itself is tested on the real model in test_mlsan_real
        digest = "fake"

        def encode_raw(self, texts):
            rng = np.random.default_rng(len(texts))
            return (
                rng.normal(size=(len(texts), 384)).astype(np.float32),
                rng.normal(size=(len(texts), 7, 384)).astype(np.float32),
            )

    cfg = MLSANConfig()
    dialogues = load_meld(tmp_path, "dev", cfg, FakeEncoder(), store, tmp_path / "cache")
    (d,) = dialogues
    np.testing.assert_array_equal(d.modality_mask, [[1, 0, 0], [1, 1, 0], [1, 0, 0]])
    assert d.labels.tolist() == [4, 2, 5] and d.speakers == ("Ross", "Rachel", "Ross")
    batch = make_batch(dialogues, cfg)
    np.testing.assert_allclose(batch.speaker[0, 2, :-1].numpy(), d.text[0], rtol=1e-6)
    # The cache is reused: a second load gives identical features without encoding.
    cached = cached_raw_text(["Hi", "Oh no", "Eww"], "meld-dev", FakeEncoder(), tmp_path / "cache")
    assert isinstance(cached, RawTextCache)
    np.testing.assert_array_equal(cached.features(cfg.text_feature), d.text)


def _dialogue_dicts(n_dialogues, dims, meld):
    rng = np.random.default_rng(1)
    out = {k: {} for k in ("ids", "spk", "lab", "text", "audio", "visual", "sent")}
    for i in range(n_dialogues):
        t = 3 + i
        out["ids"][i] = [f"u{j}" for j in range(t)]
        out["spk"][i] = (
            [list(np.eye(9)[j % 2]) for j in range(t)]
            if meld
            else ["M" if j % 2 else "F" for j in range(t)]
        )
        out["lab"][i] = [int(x) for x in rng.integers(0, 7 if meld else 6, t)]
        for name in ("text", "audio", "visual"):
            out[name][i] = [list(rng.normal(size=dims[name])) for _ in range(t)]
        out["sent"][i] = [f"sentence {j}" for j in range(t)]
    return out


@pytest.mark.parametrize("layout", ["meld-dialoguernn", "meld-mmgcn", "iemocap"])
def test_erc_pickle_layouts(tmp_path, layout):
    dims = {"text": 10, "audio": 6, "visual": 4}
    meld = layout != "iemocap"
    d = _dialogue_dicts(4, dims, meld)
    train, test = [0, 1, 2], [3]
    if layout == "meld-dialoguernn":
        obj = (d["ids"], d["spk"], d["lab"], d["text"], d["audio"], d["sent"], train, test, {})
    elif layout == "meld-mmgcn":
        obj = (
            d["ids"],
            d["spk"],
            d["lab"],
            d["text"],
            d["audio"],
            d["visual"],
            d["sent"],
            train,
            test,
            {},
        )
    else:
        obj = (
            d["ids"],
            d["spk"],
            d["lab"],
            d["text"],
            d["audio"],
            d["visual"],
            d["sent"],
            set(train),
            set(test),
        )
    path = tmp_path / "features.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    data = read_erc_pickle(path, dataset=None if meld else "iemocap")
    assert data.dataset == ("meld" if meld else "iemocap")
    assert sorted(data.train_ids) == ["0", "1", "2"] and data.test_ids == ("3",)
    assert data.dims()["visual"] == (0 if layout == "meld-dialoguernn" else 4)
    dia = data.dialogues["1"]
    assert dia.text.shape == (4, 10) and dia.sentences[2] == "sentence 2"
    assert dia.speakers[:2] == (("speaker0", "speaker1") if meld else ("F", "M"))
    arrays = erc_dialogue_arrays(data, data.test_ids)
    has_visual = layout != "meld-dialoguernn"
    assert arrays[0].modality_mask[:, 2].tolist() == [float(has_visual)] * 6


def test_erc_pickle_errors(tmp_path):
    with pytest.raises(ErcPickleError, match="does not exist"):
        read_erc_pickle(tmp_path / "none.pkl")
    (tmp_path / "x.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ErcPickleError, match="tuple"):
        read_erc_pickle(tmp_path / "x.pkl")
    (tmp_path / "y.pkl").write_bytes(b"garbage")
    with pytest.raises(ErcPickleError, match="not a readable pickle"):
        read_erc_pickle(tmp_path / "y.pkl")


def test_mlsan_train_cli_on_an_erc_pickle(tmp_path, capsys):
    import json

    from mlsan.checkpoint import load_checkpoint
    from mlsan.train import main

    d = _dialogue_dicts(12, {"text": 10, "audio": 6, "visual": 4}, meld=False)
    obj = (
        d["ids"],
        d["spk"],
        d["lab"],
        d["text"],
        d["audio"],
        d["visual"],
        d["sent"],
        set(range(10)),
        {10, 11},
    )
    path = tmp_path / "IEMOCAP_features_raw.pkl"
    path.write_bytes(pickle.dumps(obj))
    out = tmp_path / "m.pt"
    argv = [
        "--erc-pickle",
        str(path),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--quiet",
        "--json",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test"]["n"] == 13 + 14 and summary["epochs_run"] == 2
    loaded = load_checkpoint(out)
    assert loaded.label_names[0] == "happy" and loaded.feature_dims["visual"] == 4
    assert loaded.trained_modalities == ("text", "audio", "visual")


class _CountingEncoder:
    """Stands in for TextEncoder in the cache test: counts real encoder passes."""

    digest = "fake-encoder-0001"

    def __init__(self) -> None:
        self.passes = 0

    def encode_raw(self, texts):
        self.passes += 1
        rng = np.random.default_rng(len(texts))
        return (
            rng.standard_normal((len(texts), 384)).astype(np.float32),
            rng.standard_normal((len(texts), 7, 384)).astype(np.float32),
        )


def test_text_feature_cache_tells_a_hit_from_a_miss(tmp_path):
    """A hit reads the file and runs no encoder pass; other texts, or a corrupt entry, miss."""
    from mlsan.features import cached_raw_text

    enc = _CountingEncoder()
    first = cached_raw_text(["hello", "there"], "t", enc, cache_dir=tmp_path)
    assert enc.passes == 1 and len(list(tmp_path.glob("t-*.npz"))) == 1
    again = cached_raw_text(["hello", "there"], "t", enc, cache_dir=tmp_path)
    assert enc.passes == 1  # served from the file
    np.testing.assert_array_equal(again.sentence, first.sentence)
    np.testing.assert_array_equal(again.layer_means, first.layer_means)
    cached_raw_text(["hello", "there!"], "t", enc, cache_dir=tmp_path)
    assert enc.passes == 2 and len(list(tmp_path.glob("t-*.npz"))) == 2  # new texts, new key
    for path in tmp_path.glob("t-*.npz"):
        path.write_bytes(b"not an npz")
    cached_raw_text(["hello", "there"], "t", enc, cache_dir=tmp_path)
    assert enc.passes == 3  # a corrupt entry is recomputed, not trusted
