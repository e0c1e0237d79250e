"""torchvision's ResNet forward pass, written in numpy from torchvision's definition (NCHW, OIHW kernels,
symmetric padding, max pool padded with -inf, BatchNorm epsilon 1e-5, stride on a bottleneck's 3x3 conv):
an independent reference for loading torchvision state dicts, runnable where torch is not installed.
tests/test_weights.py also compares with torch itself when it is (a slow test, run by hand)."""

from __future__ import annotations

import numpy as np

EPS = 1e-5
MEAN = np.array([0.485, 0.456, 0.406], np.float64)
STD = np.array([0.229, 0.224, 0.225], np.float64)
BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


def conv(x, w, stride=1, pad=0):
    """x: N,C,H,W; w: O,C,kh,kw (PyTorch's Conv2d without bias)."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def bn(x, sd, prefix):
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    return (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + EPS) * g[None, :, None, None] + b[None, :, None, None]


def maxpool(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    return win.max(axis=(-1, -2))


def block(x, sd, p, kind, stride):
    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    if kind == "basic":
        out = relu(bn(conv(x, sd[p + "conv1.weight"], stride, 1), sd, p + "bn1"))
        out = bn(conv(out, sd[p + "conv2.weight"], 1, 1), sd, p + "bn2")
    else:
        out = relu(bn(conv(x, sd[p + "conv1.weight"]), sd, p + "bn1"))
        out = relu(bn(conv(out, sd[p + "conv2.weight"], stride, 1), sd, p + "bn2"))
        out = bn(conv(out, sd[p + "conv3.weight"]), sd, p + "bn3")
    if p + "downsample.0.weight" in sd:
        x = bn(conv(x, sd[p + "downsample.0.weight"], stride), sd, p + "downsample.1")
    return relu(out + x)


def forward(sd: dict, images: np.ndarray, depth: int) -> np.ndarray:
    """Logits of torchvision's resnet{depth} with state dict ``sd`` for raw RGB pixels (N, H, W, 3, 0..255),
    preprocessed as torchvision's transforms do: x / 255, then (x - mean) / std."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = ((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
    x = np.maximum(bn(conv(x, sd["conv1.weight"], 2, 3), sd, "bn1"), 0)
    x = maxpool(x)
    kind, counts = BLOCKS[depth]
    for stage, n in enumerate(counts, start=1):
        for i in range(n):
            x = block(x, sd, f"layer{stage}.{i}.", kind, 2 if i == 0 and stage > 1 else 1)
    x = x.mean(axis=(2, 3))
    return x @ sd["fc.weight"].T + sd["fc.bias"]


def random_state_dict(depth: int, classes: int = 1000, seed: int = 0) -> dict:
    """A torchvision-layout state dict with random weights (BatchNorm statistics too)."""
    rng = np.random.default_rng(seed)
    kind, counts = BLOCKS[depth]
    sd = {}

    def conv_w(name, o, c, k):
        sd[name] = rng.normal(0, np.sqrt(2 / (c * k * k)), (o, c, k, k)).astype(np.float32)

    def bn_w(name, c):
        sd[name + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[name + ".bias"] = rng.normal(0, 0.2, c).astype(np.float32)
        sd[name + ".running_mean"] = rng.normal(0, 0.2, c).astype(np.float32)
        sd[name + ".running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[name + ".num_batches_tracked"] = np.array(0, np.int64)

    conv_w("conv1.weight", 64, 3, 7)
    bn_w("bn1", 64)
    c_in = 64
    expansion = 1 if kind == "basic" else 4
    for stage, n in enumerate(counts, start=1):
        width = 64 * 2 ** (stage - 1)
        for i in range(n):
            p = f"layer{stage}.{i}."
            if kind == "basic":
                conv_w(p + "conv1.weight", width, c_in, 3)
                bn_w(p + "bn1", width)
                conv_w(p + "conv2.weight", width, width, 3)
                bn_w(p + "bn2", width)
            else:
                conv_w(p + "conv1.weight", width, c_in, 1)
                bn_w(p + "bn1", width)
                conv_w(p + "conv2.weight", width, width, 3)
                bn_w(p + "bn2", width)
                conv_w(p + "conv3.weight", width * 4, width, 1)
                bn_w(p + "bn3", width * 4)
            stride = 2 if i == 0 and stage > 1 else 1
            if stride != 1 or c_in != width * expansion:
                conv_w(p + "downsample.0.weight", width * expansion, c_in, 1)
                bn_w(p + "downsample.1", width * expansion)
            c_in = width * expansion
    sd["fc.weight"] = rng.normal(0, np.sqrt(1 / c_in), (classes, c_in)).astype(np.float32)
    sd["fc.bias"] = rng.normal(0, 0.2, classes).astype(np.float32)
    return sd
