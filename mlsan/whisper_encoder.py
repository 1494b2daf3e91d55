"""Whisper's encoder in PyTorch bfloat16 on CPUs with AMX; CTranslate2 still decodes.

API::

    kind = choose_encoder("auto", "cpu")     # "bf16" where AMX runs bf16, else "ctranslate2"
    enc = Bf16WhisperEncoder.from_ct2(model_dir, threads=2)  # weights: the CTranslate2 model
    states = enc.encode(features)            # (80, 3000) log-mel -> (1500, width) float32
    use_encoder(whisper_model, enc)          # faster-whisper's encode() runs it

Why: faster-whisper pads every segment to a 30-s window, so each live turn pays a full encoder
pass (1500 positions), the largest part of the ASR stage on a CPU. CTranslate2 runs it in int8
with AVX-512 / VNNI kernels; on CPUs with AMX (Intel Xeon 4th generation and later) oneDNN's
bfloat16 AMX kernels, which PyTorch already calls, do the same matrix products several times
faster. On the 2-core Xeon this project is tested on, the encoder took 140-156 ms a 30-s
window in bf16 against 390-458 ms in CTranslate2 int8 (two threads), and a whole turn 471 vs
722 ms wall, 686 vs 983 ms CPU (``bench/bench_asr_window.py --bf16``). bf16 is also closer to
the float32 encoder than int8 is: state cosine at least 0.9995 against 0.9981 on 111 real turns
and clips (README, "Live latency", has the words too).

``choose_encoder("auto", ...)`` picks bf16 only on a CPU device whose CPU runs AMX bf16
(PyTorch's CPU capabilities, and the kernel must allow the AMX state); elsewhere, including on
CUDA where CTranslate2 runs the encoder in float16, CTranslate2's own pass stays.

The weights are read from the CTranslate2 ``model.bin`` faster-whisper already loads (binary
format 6; float16, float32, bfloat16 or int8 variables), so there is no second copy of the model
on disk. A file that is not such a model raises :class:`WhisperEncoderError` with one line.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mlsan.errors import UserFacingError

WINDOW_FRAMES = 3000  # log-mel frames in Whisper's 30-s window
POSITIONS = 1500  # encoder positions (the second convolution halves the frames)
CT2_TYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5: bfloat16
ENCODERS = ("auto", "ctranslate2", "bf16")
# --asr-encoder, the same on the live run and on `mlsan-live diarize`
ENCODER_HELP = (
    "who runs Whisper's encoder: auto (PyTorch bfloat16 on CPUs with AMX, about 3x faster "
    "there; else CTranslate2), ctranslate2 or bf16 (default auto; README, Live latency)"
)


class WhisperEncoderError(UserFacingError):
    """The Whisper model file cannot be read as a CTranslate2 Whisper encoder."""


def read_ct2_encoder(model_bin: str | Path) -> dict[str, np.ndarray]:
    """``encoder/*`` variables of a CTranslate2 ``model.bin`` (binary version 6) as float32."""
    path = Path(model_bin)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WhisperEncoderError(
            f"cannot read the Whisper model {path} ({exc.strerror}); fix: give a faster-whisper "
            "(CTranslate2) model directory"
        ) from None
    pos = 0

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from(fmt, data, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal pos
        n = take("H")
        value = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return value

    out: dict[str, np.ndarray] = {}
    try:
        version = take("I")
        if version != 6:
            raise ValueError(f"binary version {version}, expected 6")
        spec = text()
        if spec != "WhisperSpec":
            raise ValueError(f"model spec {spec!r}, expected 'WhisperSpec'")
        take("I")  # spec revision
        for _ in range(take("I")):
            name = text()
            shape = [take("I") for _ in range(take("B"))]
            type_id = take("B")
            nbytes = take("I")
            raw = data[pos : pos + nbytes]
            pos += nbytes
            if len(raw) != nbytes:
                raise ValueError("file ends inside a variable")
            if not name.startswith("encoder/"):
                continue
            if type_id == 5:  # bfloat16: the high half of a float32
                arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, CT2_TYPES[type_id])
            out[name[len("encoder/") :]] = arr.reshape(shape).astype(np.float32)
        for name in [k for k in out if k.endswith("weight_scale")]:  # int8 / int16 models
            weight = name.removesuffix("_scale")
            scale = out.pop(name)
            out[weight] = out[weight] / scale.reshape(-1, *([1] * (out[weight].ndim - 1)))
    except (struct.error, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise WhisperEncoderError(
            f"{path} is not a CTranslate2 Whisper model ({exc}); fix: give a faster-whisper "
            "(CTranslate2) model directory"
        ) from None
    if "conv1/weight" not in out or "position_encodings/encodings" not in out:
        raise WhisperEncoderError(
            f"{path} holds no Whisper encoder weights; fix: give a faster-whisper "
            "(CTranslate2) model directory"
        )
    return out


def amx_bf16() -> bool:
    """PyTorch's oneDNN can run bfloat16 matrix products on AMX here (CPU flag and the OS
    allowing the AMX state)."""
    try:
        import torch

        caps = torch._C._cpu._get_cpu_capability()
        return bool(caps.get("amx_bf16") and caps.get("amx_tile") and torch._C._cpu._init_amx())
    except (ImportError, AttributeError, RuntimeError):
        return False


def choose_encoder(choice: str, device: str) -> str:
    """ "ctranslate2" or "bf16" for ``AsrOptions.encoder`` (see module docstring)."""
    if choice not in ENCODERS:
        raise WhisperEncoderError(
            f"unknown ASR encoder {choice!r}; fix: use one of {', '.join(ENCODERS)}"
        )
    if choice != "auto":
        return choice
    return "bf16" if device == "cpu" and amx_bf16() else "ctranslate2"


class Bf16WhisperEncoder:
    """Whisper's encoder (pre-norm blocks, GELU, sinusoidal positions) in bfloat16."""

    def __init__(self, weights: dict[str, np.ndarray], threads: int = 2) -> None:
        import torch

        def tensor(name: str):
            return torch.from_numpy(np.ascontiguousarray(weights[name])).to(torch.bfloat16)

        self.threads = threads
        self.width = int(weights["conv1/bias"].shape[0])
        heads = weights.get("num_heads")
        self.heads = int(heads.reshape(-1)[0]) if heads is not None else self.width // 64
        self.layers = sum(1 for k in weights if k.endswith("self_attention/linear_0/weight"))
        if weights["position_encodings/encodings"].shape[0] != POSITIONS:
            raise WhisperEncoderError("the Whisper encoder has no 1500-position window")
        self.w = {k: tensor(k) for k in weights if k != "num_heads"}
        self.encode(np.zeros((80, WINDOW_FRAMES), np.float32))  # oneDNN builds its kernels now

    @classmethod
    def from_ct2(cls, model_dir: str | Path, threads: int = 2) -> Bf16WhisperEncoder:
        return cls(read_ct2_encoder(Path(model_dir) / "model.bin"), threads)

    def encode(self, features: np.ndarray) -> np.ndarray:
        """(80, 3000) or (1, 80, 3000) float32 log-mel -> (1500, width) float32 final states."""
        import torch

        mel = np.asarray(features, np.float32).reshape(-1, WINDOW_FRAMES)
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # the live run keeps torch's other stages at one
        try:
            with torch.inference_mode():
                x = self._forward(torch.from_numpy(np.ascontiguousarray(mel))[None])
                return x[0].float().numpy()
        finally:
            torch.set_num_threads(prev)

    def _forward(self, mel):
        """(1, 80, 3000) float32 -> (1, 1500, width) bfloat16."""
        import torch
        import torch.nn.functional as F

        w, width = self.w, self.width
        x = F.gelu(F.conv1d(mel.to(torch.bfloat16), w["conv1/weight"], w["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))
        x = x.transpose(1, 2) + w["position_encodings/encodings"]
        n, h = x.shape[1], self.heads
        for i in range(self.layers):
            p = f"layer_{i}"
            y = self._norm(x, f"{p}/self_attention/layer_norm")
            qkv = F.linear(
                y, w[f"{p}/self_attention/linear_0/weight"], w[f"{p}/self_attention/linear_0/bias"]
            )
            # (1, n, 3 * width) -> q, k, v (1, heads, n, 64): the 4-d layout PyTorch's CPU
            # flash attention takes (3-d falls back to the unfused path, 3x slower here)
            q, k, v = qkv.view(1, n, 3, h, width // h).permute(2, 0, 3, 1, 4).unbind(0)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, n, width)
            x = x + F.linear(
                a, w[f"{p}/self_attention/linear_1/weight"], w[f"{p}/self_attention/linear_1/bias"]
            )
            y = self._norm(x, f"{p}/ffn/layer_norm")
            y = F.gelu(F.linear(y, w[f"{p}/ffn/linear_0/weight"], w[f"{p}/ffn/linear_0/bias"]))
            x = x + F.linear(y, w[f"{p}/ffn/linear_1/weight"], w[f"{p}/ffn/linear_1/bias"])
        return self._norm(x, "layer_norm")

    def _norm(self, x, name: str):
        import torch.nn.functional as F

        return F.layer_norm(x, (self.width,), self.w[f"{name}/gamma"], self.w[f"{name}/beta"])


def use_encoder(whisper_model, encoder: Bf16WhisperEncoder) -> None:
    """Make a faster_whisper.WhisperModel's ``encode`` run ``encoder``: CTranslate2's generate
    and align take encoded features ((1, 1500, width)) in place of a log-mel."""
    import ctranslate2

    alive: list[np.ndarray] = []  # the StorageView shares the array's memory: keep the last

    def encode(features):
        states = np.ascontiguousarray(encoder.encode(np.asarray(features))[None])
        alive[:] = [states]
        return ctranslate2.StorageView.from_array(states)

    whisper_model.encode = encode
