"""Run in the torch side environment (tests/test_weights.py, slow): torchvision's own ResNet with random
weights (BatchNorm statistics too), its state dict saved with safetensors, and its logits for the given
raw RGB images preprocessed as torchvision's transforms do.

    python tests/torch_side.py DEPTH IMAGES.npy OUT_DIR   ->  OUT_DIR/resnetDEPTH.tv_in1k.safetensors, logits.npy
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file


def main(depth: int, images: str, out: str) -> None:
    torch.manual_seed(0)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    out = Path(out)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"resnet{depth}.tv_in1k.safetensors"))
    x = np.load(images)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    with torch.no_grad():
        logits = net(torch.from_numpy(((x / 255 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    np.save(out / "logits.npy", logits)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
