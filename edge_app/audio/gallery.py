"""The on-disk speaker gallery: who the app knows, so the same people are recognised next run.

API::

    g = SpeakerGallery(path)
    speakers = g.load()           # list[GallerySpeaker]; [] when the file does not exist yet
    g.save(speakers)              # atomic: temp file in the same folder, fsync, os.replace

File: one JSON object ``{"format": "mlsan-live speaker gallery", "version": 1,
"embedding_dim": 256, "speakers": [{"id", "name", "centroid": [256 floats], "count",
"seconds"}]}``. Only voice embeddings and names are stored, never audio.

A file that exists but is not a valid gallery raises ``GalleryError`` (one line naming the fix)
from ``load`` AND from ``save``: a corrupt gallery is never overwritten, so nothing the user had
is lost by accident; they move it away or point ``--gallery`` elsewhere.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsan.errors import UserFacingError

FORMAT = "mlsan-live speaker gallery"
VERSION = 1


class GalleryError(UserFacingError):
    """The gallery file cannot be read or written."""


@dataclass(frozen=True)
class GallerySpeaker:
    speaker_id: str
    name: str | None
    centroid: np.ndarray  # (D,) float32, L2-normalised
    count: int  # embeddings averaged into the centroid
    seconds: float  # seconds of speech behind the centroid


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


class SpeakerGallery:
    def __init__(self, path: str | Path, embedding_dim: int | None = None) -> None:
        """``embedding_dim``: the voice model's; a gallery of another size is refused."""
        self.path = Path(path).expanduser()
        self.embedding_dim = embedding_dim

    def _remove_stale_temps(self) -> None:
        """Temp files of a save that was killed (``.NAME.PID.*.tmp``) whose process is gone."""
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            pid = tmp.name[len(self.path.name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue  # another process is saving right now
            try:
                tmp.unlink()
            except OSError:
                pass

    def _corrupt(self, why: str) -> GalleryError:
        return GalleryError(
            f"speaker gallery {self.path} is not a valid gallery ({why}); it was left untouched; "
            "fix: move it away (a new one is started) or pass another --gallery"
        )

    def load(self) -> list[GallerySpeaker]:
        if not self.path.exists():
            return []
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise GalleryError(
                f"cannot read speaker gallery {self.path} ({exc.strerror}); fix: check its "
                "permissions or pass another --gallery"
            ) from None
        self._remove_stale_temps()
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._corrupt(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self._corrupt("no 'format' header")
        if data.get("version") != VERSION:
            raise self._corrupt(f"version {data.get('version')!r}, this app reads {VERSION}")
        dim = data.get("embedding_dim")
        speakers = data.get("speakers")
        if not isinstance(dim, int) or not isinstance(speakers, list):
            raise self._corrupt("missing 'embedding_dim' or 'speakers'")
        if self.embedding_dim is not None and dim != self.embedding_dim:
            raise GalleryError(
                f"speaker gallery {self.path} holds {dim}-d voices, the voice model gives "
                f"{self.embedding_dim}-d; it was left untouched; fix: pass another --gallery "
                "(or move this one away) for this voice model"
            )
        out: list[GallerySpeaker] = []
        seen: set[str] = set()
        for i, s in enumerate(speakers):
            try:
                sid = str(s["id"])
                name = s.get("name")
                centroid = np.asarray(s["centroid"], dtype=np.float32)
                count = int(s.get("count", 1))
                seconds = float(s.get("seconds", 0.0))
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise self._corrupt(f"speaker #{i}: {exc!r}") from None
            if count < 1 or not (np.isfinite(seconds) and seconds >= 0):
                raise self._corrupt(f"speaker {sid}: count/seconds out of range")
            if centroid.shape != (dim,) or not np.all(np.isfinite(centroid)):
                raise self._corrupt(f"speaker {sid}: centroid is not {dim} finite numbers")
            if sid in seen:
                raise self._corrupt(f"speaker id {sid} appears twice")
            seen.add(sid)
            norm = float(np.linalg.norm(centroid))
            if norm < 1e-6:
                raise self._corrupt(f"speaker {sid}: zero centroid")
            out.append(
                GallerySpeaker(
                    sid, None if name is None else str(name), centroid / norm, count, seconds
                )
            )
        return out

    def save(self, speakers: list[GallerySpeaker]) -> None:
        if self.path.exists():
            self.load()  # raises (and writes nothing) if the existing file is corrupt
        dim = int(speakers[0].centroid.shape[0]) if speakers else 256
        data = {
            "format": FORMAT,
            "version": VERSION,
            "embedding_dim": dim,
            "speakers": [
                {
                    "id": s.speaker_id,
                    "name": s.name,
                    "centroid": [round(float(x), 7) for x in s.centroid],
                    "count": int(s.count),
                    "seconds": round(float(s.seconds), 3),
                }
                for s in speakers
            ],
        }
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps()
            prefix = f".{self.path.name}.{os.getpid()}."  # the pid: whose temp file this is
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, indent=1)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise GalleryError(
                f"cannot write speaker gallery {self.path} ({exc.strerror}); fix: check the "
                "folder exists and is writable, or pass another --gallery"
            ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
