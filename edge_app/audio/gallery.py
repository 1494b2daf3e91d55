"""The on-disk speaker gallery: who the app knows, so the same people are recognised next run.

API::

    g = SpeakerGallery(path)
    speakers = g.load()           # list[GallerySpeaker]; [] when the file does not exist yet
    g.save(speakers)              # atomic: temp file in the same folder, fsync, os.replace

File: one JSON object ``{"format": "mlsan-live speaker gallery", "version": 2,
"embedding_model": "campplus_cn_en_common:1336173d64f5", "embedding_dim": 192, "speakers":
[{"id", "name", "centroid": [192 floats], "count", "seconds"}]}``. Only each person's mean voice
embedding, id, optional name and seconds of speech are stored, never audio or words.

The embedding model is part of the file: vectors of two models are not comparable, so
``load(model_id=...)`` refuses a gallery made with another model (or a version-1 file, which
resemblyzer's 256-d vectors filled) with one line naming the fix, instead of mixing them.
``forget(who)`` removes a person by id or name (``mlsan-live --forget NAME``).

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
VERSION = 2


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
    def __init__(
        self,
        path: str | Path,
        model_id: str | None = None,
        embedding_dim: int | None = None,
    ) -> None:
        """``model_id``: the embedding model this run uses (None: not checked);
        ``embedding_dim``: the voice model's; a gallery of another size is refused."""
        self.path = Path(path).expanduser()
        self.model_id = model_id
        self.embedding_dim = embedding_dim
        self.file_model: str | None = None  # what the file says, after load()

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
        version = data.get("version")
        if version not in (1, VERSION):
            raise self._corrupt(f"version {version!r}, this app reads {VERSION}")
        file_model = "resemblyzer-ge2e (version-1 gallery)" if version == 1 else None
        if version == VERSION:
            file_model = data.get("embedding_model")
            if not isinstance(file_model, str) or not file_model:
                raise self._corrupt("missing 'embedding_model'")
        self.file_model = file_model
        if self.model_id is not None and file_model != self.model_id:
            raise GalleryError(
                f"speaker gallery {self.path} was made with the voice model {file_model}, this "
                f"run uses {self.model_id}: their voice vectors cannot be compared, so it was "
                "left untouched; fix: move it away (a new one is started), pass another "
                "--gallery, or --no-gallery"
            )
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

    def forget(self, who: str) -> list[str]:
        """Remove every speaker whose id or name is ``who`` (case-insensitive for names);
        returns the removed ids. Raises GalleryError (nothing written) when nobody matches."""
        speakers = self.load()
        key = who.strip().lower()
        gone = [s for s in speakers if s.speaker_id == who or (s.name or "").lower() == key]
        if not gone:
            known = ", ".join(
                f"{s.speaker_id}" + (f" ({s.name})" if s.name else "") for s in speakers
            )
            raise GalleryError(
                f"nobody called {who!r} in speaker gallery {self.path} (known: "
                f"{known or 'nobody'}); fix: pass one of those ids or names"
            )
        ids = {s.speaker_id for s in gone}
        model = self.model_id or self.file_model
        self._write([s for s in speakers if s.speaker_id not in ids], model)
        return sorted(ids)

    def save(self, speakers: list[GallerySpeaker]) -> None:
        if self.path.exists():
            self.load()  # raises (and writes nothing) if the existing file is corrupt
        self._write(speakers, self.model_id or self.file_model)

    def _write(self, speakers: list[GallerySpeaker], model: str | None) -> None:
        if model is None or model.endswith("(version-1 gallery)"):
            raise GalleryError(
                f"cannot write speaker gallery {self.path}: the voice model is not known; fix: "
                "pass the model id (SpeakerGallery(path, model_id))"
            )
        dim = int(speakers[0].centroid.shape[0]) if speakers else 0
        data = {
            "format": FORMAT,
            "version": VERSION,
            "embedding_model": model,
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
