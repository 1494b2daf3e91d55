"""MELD annotation CSVs (``{train,dev,test}_sent_emo.csv``) -> typed, dialogue-ordered records.

The files are mostly UTF-8 with stray cp1252 bytes (``\\x92`` for an apostrophe), so each line is
decoded as UTF-8 and, where that fails, byte-by-byte with cp1252 for the offending bytes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from mlsan.config import MELD_LABELS
from mlsan.errors import UserFacingError

SPLITS = ("train", "dev", "test")
_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


class DataError(UserFacingError):
    """A dataset file is missing or malformed."""


@dataclass(frozen=True)
class Utterance:
    """One MELD row."""

    dialogue_id: int
    utterance_id: int
    speaker: str
    text: str
    label: int  # index into MELD_LABELS
    sentiment: str


@dataclass(frozen=True)
class Dialogue:
    """The utterances of one dialogue, in Utterance_ID order."""

    dialogue_id: int
    utterances: tuple[Utterance, ...]

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(u.speaker for u in self.utterances)

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(u.label for u in self.utterances)


def decode_mixed(raw: bytes) -> str:
    """UTF-8 where valid, cp1252 (then latin-1) for the bytes that are not."""
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        try:
            out.append(raw[pos:].decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out.append(raw[pos : pos + exc.start].decode("utf-8"))
            bad = raw[pos + exc.start : pos + exc.start + 1]
            try:
                out.append(bad.decode("cp1252"))
            except UnicodeDecodeError:
                out.append(bad.decode("latin-1"))
            pos += exc.start + 1
    return "".join(out)


def split_path(data_dir: str | Path, split: str) -> Path:
    if split not in SPLITS:
        raise DataError(f"unknown MELD split {split!r}; fix: use one of {', '.join(SPLITS)}")
    return Path(data_dir) / f"{split}_sent_emo.csv"


def read_meld_csv(path: str | Path, label_names: tuple[str, ...] = MELD_LABELS) -> list[Dialogue]:
    """All dialogues of one MELD CSV, sorted by Dialogue_ID then Utterance_ID."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read MELD file {path} ({exc.strerror}); fix: pass --data DIR holding "
            "train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv"
        ) from None
    text = decode_mixed(raw).replace("\u00a0", " ")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path} lacks MELD columns {missing}; fix: point --data at the MELD CSVs")
    label_index = {name: i for i, name in enumerate(label_names)}
    by_dialogue: dict[int, list[Utterance]] = {}
    for line, row in enumerate(reader, start=2):
        try:
            emotion = row["Emotion"].strip().lower()
            utt = Utterance(
                dialogue_id=int(row["Dialogue_ID"]),
                utterance_id=int(row["Utterance_ID"]),
                speaker=row["Speaker"].strip(),
                text=" ".join(row["Utterance"].split()),
                label=label_index[emotion],
                sentiment=(row.get("Sentiment") or "").strip(),
            )
        except (KeyError, ValueError, AttributeError) as exc:
            raise DataError(
                f"{path}:{line}: malformed MELD row ({exc}); fix or remove it"
            ) from None
        by_dialogue.setdefault(utt.dialogue_id, []).append(utt)
    if not by_dialogue:
        raise DataError(f"{path} has no utterances; fix: point --data at the MELD CSVs")
    return [
        Dialogue(d, tuple(sorted(us, key=lambda u: u.utterance_id)))
        for d, us in sorted(by_dialogue.items())
    ]


def read_meld_split(data_dir: str | Path, split: str) -> list[Dialogue]:
    return read_meld_csv(split_path(data_dir, split))


def meld_raw_clip(raw_dir: str | Path, dialogue_id: int, utterance_id: int) -> Path:
    """Where MELD.Raw keeps one utterance's clip: ``<split dir>/dia{D}_utt{U}.mp4``."""
    return Path(raw_dir) / f"dia{dialogue_id}_utt{utterance_id}.mp4"
