"""Reader for the feature pickles that ERC research code ships for MELD and IEMOCAP.

Layouts (a tuple of dicts keyed by dialogue id, then the train/test id collections):

* IEMOCAP ``IEMOCAP_features_raw.pkl`` (9): ids, speakers ("M"/"F"), labels, text, audio,
  visual, sentences, trainVid, testVid.
* MELD (DialogueRNN ``MELD_features_raw.pkl``, 9): ids, speakers (one-hot), labels, text, audio,
  sentences, trainVid, testVid, sentiment labels.
* MELD (MMGCN-style, 10): ids, speakers, labels, text, audio, visual, sentences, trainVid,
  testVid, sentiment labels.

The layout is recognised by position of the first two non-dict items (trainVid, testVid); the
dicts before them are ids, speakers, labels, text, audio, [visual], sentences. Pickles execute
code when loaded: only read files you trust.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsan.config import MELD_LABELS
from mlsan.errors import UserFacingError

IEMOCAP_LABELS = ("happy", "sad", "neutral", "angry", "excited", "frustrated")


class ErcPickleError(UserFacingError):
    """An ERC feature pickle is missing or not in a known layout."""


@dataclass(frozen=True)
class ErcDialogue:
    dialogue_id: str
    speakers: tuple[str, ...]
    labels: np.ndarray  # [T] int64
    text: np.ndarray  # [T,Dt] float32
    audio: np.ndarray  # [T,Da] float32
    visual: np.ndarray | None  # [T,Dv] float32, None when the pickle has none
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class ErcPickleData:
    dataset: str  # "meld" | "iemocap"
    label_names: tuple[str, ...]
    dialogues: dict[str, ErcDialogue]
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]

    def dims(self) -> dict[str, int]:
        first = next(iter(self.dialogues.values()))
        return {
            "text": first.text.shape[1],
            "audio": first.audio.shape[1],
            "visual": 0 if first.visual is None else first.visual.shape[1],
        }


def _id_order(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def _speaker_key(value) -> str:
    if isinstance(value, str):
        return value
    arr = np.asarray(value).reshape(-1)
    return f"speaker{int(arr.argmax())}" if arr.size > 1 else f"speaker{int(arr[0])}"


def _matrix(values, dialogue_id, name) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise ErcPickleError(
            f"{name} features of dialogue {dialogue_id} have shape {arr.shape}, expected "
            "[utterances, dim]; fix: use an unmodified ERC feature pickle"
        )
    return arr


def read_erc_pickle(path: str | Path, dataset: str | None = None) -> ErcPickleData:
    """Load a MELD/IEMOCAP feature pickle (``dataset`` guessed from labels when None)."""
    path = Path(path)
    fix = "fix: pass a MELD_features_raw.pkl / IEMOCAP_features_raw.pkl style file"
    if not path.is_file():
        raise ErcPickleError(f"ERC feature pickle {path} does not exist; {fix}")
    try:
        with path.open("rb") as handle:
            obj = pickle.load(handle, encoding="latin1")
    except Exception as exc:  # unpickling raises many types
        raise ErcPickleError(
            f"{path} is not a readable pickle ({type(exc).__name__}); {fix}"
        ) from None
    if not isinstance(obj, (tuple, list)) or len(obj) < 8:
        raise ErcPickleError(f"{path} is not a tuple of ERC feature dicts; {fix}")
    split_at = [i for i, item in enumerate(obj) if not isinstance(item, dict)]
    if len(split_at) < 2 or split_at[1] != split_at[0] + 1 or split_at[0] not in (6, 7):
        raise ErcPickleError(f"{path}: unknown ERC pickle layout; {fix}")
    dicts = obj[: split_at[0]]
    ids_d, spk_d, lab_d, text_d, audio_d = dicts[:5]
    visual_d = dicts[5] if len(dicts) == 7 else None
    sent_d = dicts[-1]
    # Sorted so the dev split carved from train is the same on every run (ids may be a set).
    train_ids = tuple(sorted((str(k) for k in obj[split_at[0]]), key=_id_order))
    test_ids = tuple(sorted((str(k) for k in obj[split_at[1]]), key=_id_order))
    dialogues: dict[str, ErcDialogue] = {}
    max_label = 0
    for key in lab_d:
        try:
            labels = np.asarray(lab_d[key], dtype=np.int64).reshape(-1)
            d = ErcDialogue(
                dialogue_id=str(key),
                speakers=tuple(_speaker_key(s) for s in spk_d[key]),
                labels=labels,
                text=_matrix(text_d[key], key, "text"),
                audio=_matrix(audio_d[key], key, "audio"),
                visual=None if visual_d is None else _matrix(visual_d[key], key, "visual"),
                sentences=tuple(str(s) for s in sent_d.get(key, ())),
            )
        except KeyError as exc:
            raise ErcPickleError(f"{path}: dialogue {key} lacks {exc}; {fix}") from None
        lengths = {len(d.speakers), len(d.labels), d.text.shape[0], d.audio.shape[0]}
        if d.visual is not None:
            lengths.add(d.visual.shape[0])
        if len(lengths) != 1:
            raise ErcPickleError(f"{path}: dialogue {key} has inconsistent lengths; {fix}")
        max_label = max(max_label, int(labels.max(initial=0)))
        dialogues[str(key)] = d
    del ids_d
    if dataset is None:
        dataset = "meld" if max_label >= 6 or len(obj) == 10 or visual_d is None else "iemocap"
    labels = MELD_LABELS if dataset == "meld" else IEMOCAP_LABELS
    missing = [k for k in train_ids + test_ids if k not in dialogues]
    if missing:
        raise ErcPickleError(f"{path}: {len(missing)} split ids have no features; {fix}")
    return ErcPickleData(dataset, labels, dialogues, train_ids, test_ids)


def erc_dialogue_arrays(data: ErcPickleData, ids: tuple[str, ...]):
    """The dialogues ``ids`` as ``mlsan.data.DialogueArrays`` (visual zero-masked if absent)."""
    from mlsan.data import DialogueArrays

    dims = data.dims()
    out = []
    for key in ids:
        d = data.dialogues[key]
        t = len(d.speakers)
        mask = np.ones((t, 3), np.float32)
        visual = d.visual
        if visual is None:
            visual = np.zeros((t, max(dims["visual"], 1)), np.float32)
            mask[:, 2] = 0.0
        out.append(
            DialogueArrays(
                f"{data.dataset}/{key}", d.text, d.audio, visual, mask, d.speakers, d.labels
            )
        )
    return out
