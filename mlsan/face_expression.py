"""Face-expression encoder: a compact VGG-style CNN on 48x48 grayscale face crops (FER2013 framing).

One model, one preprocessing, used by training (``mlsan.fer2013``), evaluation (``mlsan-eval
--dataset fer2013``), the ONNX export and the live video stage (``edge_app.video.expression``), so
there is no train/serve skew:

- input: float32 ``(N, 1, 48, 48)`` grey levels in ``[0, 255]`` (a uint8 crop cast to float);
- inside the model: per-image standardisation (zero mean, unit std), so the live camera's
  exposure and contrast matter less than they would with a fixed ``/255`` scale;
- output: ``logits (N, 7)`` in FER2013 order and ``embedding (N, D)`` (D = ``embed_dim``, 128),
  the penultimate layer after BatchNorm + ReLU, raw (not L2-normalised);
- with ``tta=True`` the model also runs the horizontally flipped crop and averages logits and
  embeddings of both views;
- an ensemble (:class:`FaceExpressionEnsemble`) runs several such networks on the same crop:
  logits averaged, embeddings concatenated (D = the members' D summed), so each member's
  embedding reaches the fused model whole.

Checkpoint format (``torch.save`` of a plain dict, ``weights_only=True`` loadable)::

    version 2: {"format": "mlsan-face-expression", "version": 2, "tta": bool,
                "members": [{"config": {...FaceEncoderConfig}, "state_dict": {...}}, ...],
                "label_names": [...7...], "meta": {...JSON-able...}}
    version 1 (one network, flip TTA): {..., "version": 1, "config": {...}, "state_dict": {...}}

``tta`` is stored with the weights because the shipped choice is made on PublicTest within the
speed budget (two members with the flip cost four network runs per face).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlsan.errors import CheckpointError

FORMAT = "mlsan-face-expression"
VERSION = 2
INPUT_SIZE = 48  # FER2013 crops are 48x48 grayscale
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass(frozen=True)
class FaceEncoderConfig:
    """Shapes of the encoder; stored in the checkpoint."""

    widths: tuple[int, ...] = (24, 48, 96, 192)  # channels of the 4 stages (2 convs each)
    embed_dim: int = 128  # D: size of the per-face embedding
    num_classes: int = 7
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceEncoderConfig:
        return cls(
            widths=tuple(int(w) for w in d["widths"]),
            embed_dim=int(d["embed_dim"]),
            num_classes=int(d["num_classes"]),
            dropout=float(d.get("dropout", 0.0)),
        )


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class FaceExpressionNet(nn.Module):
    """48x48 -> 4 stages of (conv3x3-BN-ReLU) x2 + maxpool (48,24,12,6,3) -> GAP -> D -> 7."""

    def __init__(self, config: FaceEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or FaceEncoderConfig()
        layers: list[nn.Module] = []
        cin = 1
        for width in self.config.widths:
            layers += _conv_bn_relu(cin, width) + _conv_bn_relu(width, width)
            layers.append(nn.MaxPool2d(2))
            cin = width
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Linear(cin, self.config.embed_dim, bias=False),
            nn.BatchNorm1d(self.config.embed_dim),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.embed_dim, self.config.num_classes)

    @staticmethod
    def standardise(x: torch.Tensor) -> torch.Tensor:
        """Per-image zero mean, unit std: (N,1,H,W) grey levels -> same shape."""
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-6).sqrt()
        return (x - mean) / std.clamp_min(1.0)  # a flat crop (std < 1 grey level) stays ~0

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One view: (N,1,48,48) in [0,255] -> (logits (N,7), embedding (N,D))."""
        h = self.features(self.standardise(x))
        emb = self.embed(h.mean(dim=(2, 3)))
        return self.classifier(self.dropout(emb)), emb

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_single(x)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        """The 7 logits of (pooled) embeddings (N, D) -> (N, 7)."""
        return self.classifier(self.dropout(embedding))


class FaceExpressionEnsemble(nn.Module):
    """Several encoders on one crop: (N,1,48,48) -> (mean logits (N,7), concat embedding (N,sum D)).

    Averaged logits, not averaged embeddings: separately trained networks do not share an
    embedding space, so their embeddings are kept side by side for the fused model.
    """

    def __init__(self, members: list[FaceExpressionNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def embed_dim(self) -> int:
        return sum(m.embed_dim for m in self.members)

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m.forward_single(x) for m in self.members]
        logits = torch.stack([lg for lg, _ in outs]).mean(dim=0)
        return logits, torch.cat([em for _, em in outs], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_single(x)

    def head(self, embedding: torch.Tensor) -> torch.Tensor:
        """Each member's classifier on its slice of (N, sum D), logits averaged -> (N, 7)."""
        parts = torch.split(embedding, [m.embed_dim for m in self.members], dim=1)
        logits = [m.head(p) for m, p in zip(self.members, parts, strict=True)]
        return torch.stack(logits).mean(dim=0)


class FaceExpressionTTA(nn.Module):
    """Inference wrapper: averages the crop and its mirror image."""

    def __init__(self, net: FaceExpressionNet | FaceExpressionEnsemble) -> None:
        super().__init__()
        self.net = net

    @property
    def embed_dim(self) -> int:
        return self.net.embed_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = torch.cat([x, torch.flip(x, dims=[3])], dim=0)
        logits, emb = self.net.forward_single(both)
        n = x.shape[0]
        return (logits[:n] + logits[n:]) * 0.5, (emb[:n] + emb[n:]) * 0.5


def combine(nets: list[FaceExpressionNet], tta: bool) -> nn.Module:
    """One network, or several as a :class:`FaceExpressionEnsemble`, inside the flip wrapper
    when ``tta``; in eval mode. What a checkpoint loads as and what ``ensemble`` scores."""
    core: nn.Module = nets[0] if len(nets) == 1 else FaceExpressionEnsemble(nets)
    return (FaceExpressionTTA(core) if tta else core).eval()


@dataclass(frozen=True)
class LoadedFaceEncoder:
    """A loaded encoder in eval mode on CPU: ``model`` is the TTA wrapper when ``tta``, and
    ``model.net`` (or ``model``) the network or ensemble; ``config`` is the first member's,
    ``embed_dim`` the output size (summed over members)."""

    model: nn.Module
    config: FaceEncoderConfig
    label_names: tuple[str, ...]
    meta: dict[str, Any]
    path: Path | None
    sha256: str | None
    tta: bool
    members: int = 1
    embed_dim: int = 128

    @property
    def core(self) -> nn.Module:
        """The network or ensemble without the flip wrapper (``core.head(embedding)`` -> the 7
        logits of a pooled embedding)."""
        return self.model.net if self.tta else self.model


def save_face_checkpoint(
    path: str | Path,
    net: FaceExpressionNet | FaceExpressionEnsemble,
    meta: dict[str, Any] | None = None,
    tta: bool = True,
) -> str:
    """Write the checkpoint (atomically) and ``<file>.sha256``; returns the hex digest."""
    from mlsan.checkpoint import save_payload

    nets = list(net.members) if isinstance(net, FaceExpressionEnsemble) else [net]
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "tta": bool(tta),
        "members": [
            {
                "config": m.config.to_dict(),
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in m.state_dict().items()},
            }
            for m in nets
        ],
        "label_names": list(FER_LABELS),
        "meta": dict(meta or {}),
    }
    return save_payload(path, payload)


def load_face_checkpoint(path: str | Path, tta: bool | None = None) -> LoadedFaceEncoder:
    """Load a face-expression checkpoint; a missing or foreign file is a one-line error.

    ``tta``: None = as stored in the checkpoint (version 1: True); True/False overrides it."""
    from mlsan.registry import file_sha256

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"face-expression checkpoint not found: {path}; fix: give the path of an existing "
            "one (a training run's best.pt, or mlsan/checkpoints/face_expression.pt: reinstall "
            "mlsan-live if that is missing)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a torch file
        raise CheckpointError(
            f"cannot read face-expression checkpoint {path}: {type(exc).__name__}; "
            "fix: pass a file written by `python -m mlsan.fer2013 train`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a face-expression checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}); "
            "fix: pass a file written by `python -m mlsan.fer2013 train`"
        )
    if payload.get("version", 1) == 1:
        specs = [{"config": payload["config"], "state_dict": payload["state_dict"]}]
        stored_tta = True
    else:
        specs, stored_tta = payload["members"], bool(payload.get("tta", True))
    nets = []
    for spec in specs:
        net = FaceExpressionNet(FaceEncoderConfig.from_dict(spec["config"]))
        net.load_state_dict(spec["state_dict"])
        nets.append(net.eval())
    tta = stored_tta if tta is None else tta
    model = combine(nets, tta)
    return LoadedFaceEncoder(
        model=model,
        config=nets[0].config,
        label_names=tuple(payload["label_names"]),
        meta=dict(payload.get("meta") or {}),
        path=path,
        sha256=file_sha256(path),
        tta=tta,
        members=len(nets),
        embed_dim=int(model.embed_dim),
    )


def to_input(crops: np.ndarray) -> torch.Tensor:
    """uint8/float crops (N,48,48) or (48,48) -> float32 tensor (N,1,48,48) in [0,255]."""
    arr = np.asarray(crops)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"face crops must be (N, 48, 48), got {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)[:, None])


@torch.inference_mode()
def encode_crops(
    model: nn.Module, crops: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Run the encoder on (N,48,48) crops -> (logits (N,7) float32, embeddings (N,D) float32).

    Batches of 64 (128 views with the flip) keep each activation under glibc's mmap threshold,
    so the allocator reuses memory instead of page-faulting fresh pages every batch.

    The one function the feature store, the evaluation and the torch live path all call.
    """
    model.eval()
    logits, embs = [], []
    for start in range(0, len(crops), batch_size):
        x = to_input(crops[start : start + batch_size]).contiguous(
            memory_format=torch.channels_last
        )
        lg, em = model(x)
        logits.append(lg.float().numpy())
        embs.append(em.float().numpy())
    if not logits:
        return np.zeros((0, 7), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(embs)


def pool_embeddings(embeddings: np.ndarray) -> np.ndarray | None:
    """Utterance pooling: the mean over frames of (T, D) per-frame embeddings -> (D,) float32.

    None when there is no frame. Mean (not max) because expression is a sustained state over
    an utterance and the mean is what ML-SAN's visual input was trained on (FACE_INTERFACE.md).
    """
    arr = np.asarray(embeddings, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0:
        return None
    return arr.mean(axis=0).astype(np.float32)


ONNX_INPUT = "faces"  # (batch, 1, 48, 48) float32 grey levels in [0, 255]
ONNX_OUTPUTS = ("logits", "embedding")  # (batch, 7), (batch, D)
ONNX_OPSET = 17  # TensorRT 8.6 (JetPack 6.0) parses at most 17, like engines/export.py


def export_onnx(checkpoint: str | Path, out_path: str | Path, opset: int = ONNX_OPSET) -> dict:
    """Export the encoder as stored (members, flip or not) to ONNX (dynamic batch), check the
    graph, check parity with torch on real-looking input, write ``<out>.sha256``.
    -> {"path", "sha256", "max_abs_diff_logits", ...}.
    """
    import os
    import tempfile
    import warnings

    import onnx

    from mlsan.registry import file_sha256

    loaded = load_face_checkpoint(checkpoint)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 1, INPUT_SIZE, INPUT_SIZE) * 255
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                loaded.model,
                (example,),
                str(tmp),
                input_names=[ONNX_INPUT],
                output_names=list(ONNX_OUTPUTS),
                opset_version=opset,
                dynamo=False,
                dynamic_axes={n: {0: "batch"} for n in (ONNX_INPUT, *ONNX_OUTPUTS)},
                do_constant_folding=True,
            )
        onnx.checker.check_model(onnx.load(str(tmp)))
        os.replace(tmp, out_path)
        os.chmod(out_path, 0o644)  # mkstemp made it 0600; a shipped model is world-readable
    finally:
        tmp.unlink(missing_ok=True)
    digest = file_sha256(out_path)
    Path(str(out_path) + ".sha256").write_text(f"{digest}  {out_path.name}\n")
    parity = onnx_parity(loaded.model, out_path)
    return {"path": str(out_path), "sha256": digest, "opset": opset, **parity}


def onnx_encode(
    onnx_path: str | Path, crops: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(N,48,48) crops through an exported encoder with ONNX Runtime, one thread -> (logits,
    embeddings), like :func:`encode_crops`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise CheckpointError(
            f"cannot load ONNX face-expression model {onnx_path}: {type(exc).__name__}; fix: "
            "pass a file written by `python -m mlsan.fer2013 export`"
        ) from None
    logits, embs = [], []
    for start in range(0, len(crops), batch_size):
        lg, em = sess.run(
            list(ONNX_OUTPUTS), {ONNX_INPUT: to_input(crops[start : start + batch_size]).numpy()}
        )
        logits.append(lg)
        embs.append(em)
    return np.concatenate(logits), np.concatenate(embs)


def onnx_parity(model: nn.Module, onnx_path: str | Path, n: int = 16, seed: int = 0) -> dict:
    """Max |torch - onnxruntime| over logits and embeddings for n random crops (batch of n)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(n, INPUT_SIZE, INPUT_SIZE)).astype(np.uint8)
    t_logits, t_emb = encode_crops(model, crops)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    o_logits, o_emb = sess.run(list(ONNX_OUTPUTS), {ONNX_INPUT: to_input(crops).numpy()})
    return {
        "max_abs_diff_logits": float(np.abs(t_logits - o_logits).max()),
        "max_abs_diff_embedding": float(np.abs(t_emb - o_emb).max()),
    }
