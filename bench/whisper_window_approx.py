"""An approximate Whisper encoder for ``bench_asr_window.py --approx``: tried, not shipped.

The README ("Live latency") has the numbers: the voice feature pooled from it is within cosine
0.997 of the full pass at about half the cost, but Whisper's decoder, fed its output, makes more
word errors (its padding positions are only approximate), so the live ASR keeps the full pass.

API::

    enc = WindowEncoder.from_ct2(model_dir)          # the CTranslate2 Whisper model's encoder
    states = enc.states(window, n)                   # (80, 3000) log-mel window -> (n, width)

Why: faster-whisper pads every segment to a 30-s window (1500 encoder positions), and the voice
feature (``mlsan.voice_features``) is pooled from that window's states at the audio's positions.
A 2-s segment is 100 of the 1500 positions, so on a CPU most of the encoder's time goes to the
padding. The padding's log-mel is a constant (zeros), so its positions differ only through
attention, and only a little. This module runs the encoder on

- the audio's positions (and two more, the convolutions' reach), exactly;
- every ``stride``-th padding position (the anchors), exactly given the keys and values below;
- for the other padding positions, the keys and values of the padding-only window (computed once)
  plus the anchors' change from it, linearly interpolated between anchors.

On the conversation turns of ``bench_asr_window.py`` the pooled voice feature is within cosine
0.997 of CTranslate2's int8 pass over the whole window (CTranslate2's float32 and int8 passes
differ by about 0.999). Cost: the audio's positions plus 1500 / ``stride``.

The weights are read from the CTranslate2 ``model.bin`` faster-whisper already loads
(``mlsan.whisper_encoder.read_ct2_encoder``, which the shipped bfloat16 encoder uses too); a file
that is not such a model raises :class:`WindowEncoderError` with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlsan.whisper_encoder import WhisperEncoderError as WindowEncoderError
from mlsan.whisper_encoder import read_ct2_encoder

WINDOW_FRAMES = 3000  # log-mel frames in Whisper's 30-s window
POSITIONS = 1500  # encoder positions (the second convolution halves the frames)
REACH = 2  # positions past the audio whose inputs still see audio frames through the convs


@dataclass(frozen=True)
class WindowEncoderOptions:
    stride: int = 16  # one padding position in ``stride`` is computed exactly (the anchors)
    margin: int = 0  # padding positions right after the audio computed exactly too
    threads: int = 2  # torch intra-op threads while encoding (restored after)


class WindowEncoder:
    """Whisper's encoder over one 30-s window, exact at the audio and approximate at the padding."""

    def __init__(
        self, weights: dict[str, np.ndarray], options: WindowEncoderOptions = WindowEncoderOptions()
    ) -> None:
        import torch

        self.options = options
        self.w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
        self.width = int(self.w["conv1/bias"].shape[0])
        heads = weights.get("num_heads")
        self.heads = int(heads) if heads is not None and heads.size == 1 else self.width // 64
        self.layers = sum(1 for k in weights if k.endswith("self_attention/linear_0/weight"))
        if self.w["position_encodings/encodings"].shape[0] != POSITIONS:
            raise WindowEncoderError("the Whisper encoder has no 1500-position window")
        with torch.inference_mode():
            self._pad_front, self._pad_kv, self._pad_out = self._padding_window()

    @classmethod
    def from_ct2(
        cls, model_dir: str | Path, options: WindowEncoderOptions = WindowEncoderOptions()
    ) -> WindowEncoder:
        return cls(read_ct2_encoder(Path(model_dir) / "model.bin"), options)

    # -- the encoder's pieces (Whisper: pre-norm blocks, GELU, sinusoidal positions) ----------
    def _norm(self, x, name: str):
        import torch.nn.functional as F

        return F.layer_norm(x, (self.width,), self.w[f"{name}/gamma"], self.w[f"{name}/beta"])

    def _front(self, mel):
        """(80, T) log-mel -> (T // 2, width) inputs of the first block (positions added)."""
        import torch.nn.functional as F

        x = F.gelu(F.conv1d(mel[None], self.w["conv1/weight"], self.w["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, self.w["conv2/weight"], self.w["conv2/bias"], stride=2, padding=1))
        x = x[0].T
        return x + self.w["position_encodings/encodings"][: len(x)]

    def _qkv(self, x, i: int):
        import torch.nn.functional as F

        p = f"layer_{i}/self_attention"
        h = self._norm(x, f"{p}/layer_norm")
        return F.linear(h, self.w[f"{p}/linear_0/weight"], self.w[f"{p}/linear_0/bias"]).split(
            self.width, -1
        )

    def _block_rest(self, x, q, k, v, i: int):
        """Attention of queries ``q`` (rows of ``x``) over all keys / values, then the FFN."""
        import torch.nn.functional as F

        n, h = q.shape[0], self.heads
        d = self.width // h
        a = F.scaled_dot_product_attention(
            q.view(n, h, d).transpose(0, 1),
            k.view(-1, h, d).transpose(0, 1),
            v.view(-1, h, d).transpose(0, 1),
        )
        a = a.transpose(0, 1).reshape(n, self.width)
        p = f"layer_{i}"
        w = self.w
        x = x + F.linear(
            a, w[f"{p}/self_attention/linear_1/weight"], w[f"{p}/self_attention/linear_1/bias"]
        )
        f = self._norm(x, f"{p}/ffn/layer_norm")
        f = F.gelu(F.linear(f, w[f"{p}/ffn/linear_0/weight"], w[f"{p}/ffn/linear_0/bias"]))
        return x + F.linear(f, w[f"{p}/ffn/linear_1/weight"], w[f"{p}/ffn/linear_1/bias"])

    def _full(self, mel):
        """Every position of a window: the first block's inputs, each block's keys / values,
        and the last block's outputs (before the final norm)."""
        front = x = self._front(mel)
        kv = []
        for i in range(self.layers):
            q, k, v = self._qkv(x, i)
            kv.append((k, v))
            x = self._block_rest(x, q, k, v, i)
        return front, kv, x

    def _padding_window(self):
        """The padding-only window (see ``_full``)."""
        import torch

        return self._full(torch.zeros(80, WINDOW_FRAMES))

    # -- one window --------------------------------------------------------------------------
    def states(self, window: np.ndarray, n: int, whole: bool = False) -> np.ndarray:
        """(80, 3000) log-mel window (zeros past the audio, as faster-whisper pads it) and the
        number of positions that hold audio -> (n, width) float32 final encoder states
        (``whole``: all 1500 positions, the padding's interpolated too)."""
        import torch

        mel = np.asarray(window, np.float32)
        if mel.ndim == 3:
            mel = mel[0]
        if mel.shape[-1] != WINDOW_FRAMES:
            raise ValueError(f"window has {mel.shape[-1]} frames, expected {WINDOW_FRAMES}")
        n = max(1, min(POSITIONS, int(n)))
        prev = torch.get_num_threads()
        torch.set_num_threads(self.options.threads)
        try:
            with torch.inference_mode():
                out = self._states(torch.from_numpy(np.ascontiguousarray(mel)), n, whole)
        finally:
            torch.set_num_threads(prev)
        return out.numpy() if whole else out[:n].numpy()

    def exact(self, window: np.ndarray) -> np.ndarray:
        """(80, 3000) window -> (1500, width): every position computed (checks the weights)."""
        import torch

        mel = torch.from_numpy(np.ascontiguousarray(np.asarray(window, np.float32).reshape(80, -1)))
        with torch.inference_mode():
            return self._norm(self._full(mel)[2], "layer_norm").numpy()

    def _states(self, mel, n: int, whole: bool = False):
        import torch

        # exact positions: the audio, the convolutions' reach and the margin
        m = min(POSITIONS, n + max(REACH, self.options.margin))
        anchors = np.arange(m, POSITIONS, self.options.stride)
        if m < POSITIONS and anchors[-1] != POSITIONS - 1:
            anchors = np.append(anchors, POSITIONS - 1)
        rest = np.setdiff1d(np.arange(m, POSITIONS), anchors)
        ids = torch.from_numpy(np.concatenate([np.arange(m), anchors]))
        a_ids, r_ids = torch.from_numpy(anchors), torch.from_numpy(rest)
        blend = _interpolation(rest, anchors) if len(rest) else None  # (len(rest), len(anchors))
        front = self._front(mel[:, : 2 * m + 2 * REACH])[:m]
        x = torch.cat([front, self._pad_front[a_ids]])  # anchors' inputs: padding only
        for i in range(self.layers):
            q, k, v = self._qkv(x, i)
            keys, values = self._pad_kv[i]
            keys, values = keys.clone(), values.clone()
            keys[ids], values[ids] = k, v
            if blend is not None:
                keys[r_ids] += blend @ (k[m:] - self._pad_kv[i][0][a_ids])
                values[r_ids] += blend @ (v[m:] - self._pad_kv[i][1][a_ids])
            x = self._block_rest(x, q, keys, values, i)
        if not whole:
            return self._norm(x[:m], "layer_norm")
        out = self._pad_out.clone()
        out[ids] = x
        if blend is not None:
            out[r_ids] += blend @ (x[m:] - self._pad_out[a_ids])
        return self._norm(out, "layer_norm")


def _interpolation(rest: np.ndarray, anchors: np.ndarray):
    """Weights that interpolate linearly between ``anchors`` at positions ``rest``."""
    import torch

    weights = np.zeros((len(rest), len(anchors)), np.float32)
    if len(anchors) == 1:
        weights[:, 0] = 1.0
        return torch.from_numpy(weights)
    j = np.clip(np.searchsorted(anchors, rest, side="right") - 1, 0, len(anchors) - 2)
    t = np.clip((rest - anchors[j]) / (anchors[j + 1] - anchors[j]), 0.0, 1.0)
    rows = np.arange(len(rest))
    weights[rows, j] = 1.0 - t
    weights[rows, j + 1] = t
    return torch.from_numpy(weights)
