"""The same pre-training steps in PyTorch, timed in the same run: the peer our images/s is quoted against.

Each recipe mirrors benchmarks/train_step.py's: torchvision ResNet-18 (paper: MoCo with an EMA
key encoder and a queue, MoCo v2 MLP head, Adam, 96 × 128) and ResNet-50 (SimCLR NT-Xent over
both views, 3-layer BN MLP head, 224²). Inputs are uint8 batches already on the device;
augmentations run on the device at comparable cost (paper: column shift, column permutation,
hue rotation, noise; SimCLR: resized crop + flip by `grid_sample`, colour jitter, grayscale,
Gaussian blur), and each recipe is timed with and without them. channels_last, bf16 autocast
on CUDA (float32 on CPU, as our `model.dtype='auto'`), `torch.compile` unless `--eager`. LARS
is not in PyTorch: the SimCLR peer uses SGD with momentum, of the same cost per parameter.
With `--ours benchmarks/out/train_step.json` it prints ours/peer per recipe.

    python benchmarks/peer_torch.py [--recipes paper simclr_r50] [--batch-paper 256] [--eager]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import pathlib
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

RECIPES = {  # name → (depth, image size, method, head, out features, temperature)
    "paper": (18, (96, 128), "moco", "mocov2", 64, 0.2),
    "simclr_r50": (50, (224, 224), "simclr", "simclr", 128, 0.1),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--batch-paper", type=int, default=256)
    parser.add_argument("--batch-r50", type=int, default=256)
    parser.add_argument("--size-r50", type=int, default=224, help="shrink it on a CPU")
    parser.add_argument("--size-paper", type=int, nargs=2, default=[96, 128], help="H W")
    parser.add_argument("--queue", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eager", action="store_true", help="skip torch.compile")
    parser.add_argument("--ours", type=pathlib.Path, help="train_step.py JSON to compare with")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/out/peer_torch.json"))
    return parser.parse_args(argv)


def encoder(depth: int) -> nn.Module:
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    net.fc = nn.Identity()
    return net


def head(kind: str, features: int, out: int) -> nn.Module:
    if kind == "mocov2":
        return nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, out))
    return nn.Sequential(nn.Linear(features, features, bias=False), nn.BatchNorm1d(features),
                         nn.ReLU(), nn.Linear(features, features, bias=False),
                         nn.BatchNorm1d(features), nn.ReLU(), nn.Linear(features, out, bias=False),
                         nn.BatchNorm1d(out))


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _hue_rotation(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation of RGB about the grey axis, per example (our `hue` op's linear form)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    third, root = 1.0 / 3.0, math.sqrt(1.0 / 3.0)
    eye = torch.eye(3, device=x.device)
    ones = torch.full((3, 3), third, device=x.device)
    cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], device=x.device) * root
    m = (cos[:, None, None] * (eye - ones) + ones + sin[:, None, None] * cross)
    return torch.einsum("bij,bjhw->bihw", m, x).clamp(0, 1)


def sensor_augment(x: torch.Tensor) -> torch.Tensor:
    """Column shift and segment permutation (one gather), hue rotation, noise."""
    b, _, h, w = x.shape
    shift = torch.randint(-w // 10, w // 10 + 1, (b, 1), device=x.device)
    cut = torch.sort(torch.randint(1, w, (b, 3), device=x.device), dim=1).values
    columns = (torch.arange(w, device=x.device)[None] + shift) % w
    columns = torch.where(columns < cut[:, :1], columns + (w - cut[:, :1]), columns - cut[:, :1])
    x = torch.gather(x, 3, columns[:, None, None, :].expand(b, 3, h, w).clamp(0, w - 1))
    x = _hue_rotation(x, (torch.rand(b, device=x.device) - 0.5) * math.pi / 3)
    return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)


def mocov2_augment(x: torch.Tensor) -> torch.Tensor:
    """Resized crop with flip, brightness/contrast/saturation, hue, grayscale, blur."""
    b, _, h, w = x.shape
    dev = x.device
    scale = torch.sqrt(torch.empty(b, device=dev).uniform_(0.2, 1.0))
    flip = torch.where(torch.rand(b, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = (torch.rand(b, 2, device=dev) * 2 - 1) * (1 - scale[:, None])
    grid = F.affine_grid(theta, (b, 3, h, w), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", align_corners=False)
    f = torch.empty(b, 3, 1, 1, 1, device=dev).uniform_(0.6, 1.4)
    x = (x * f[:, 0]).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + f[:, 1] * (x - mean)).clamp(0, 1)
    grey = _grey(x)
    x = (grey + f[:, 2] * (x - grey)).clamp(0, 1)
    x = _hue_rotation(x, (torch.rand(b, device=dev) - 0.5) * 0.2 * 2 * math.pi)
    to_grey = (torch.rand(b, 1, 1, 1, device=dev) < 0.2).to(x.dtype)
    x = to_grey * _grey(x).expand_as(x) + (1 - to_grey) * x
    radius = max(1, int(0.1 * min(h, w)) // 2)
    sigma = torch.empty(b, device=dev).uniform_(0.1, 2.0)
    taps = torch.arange(-radius, radius + 1, device=dev, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0)
    flat = x.reshape(1, b * 3, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"),
                    kernel[:, None, :, None], groups=b * 3)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"),
                    kernel[:, None, None, :], groups=b * 3)
    return flat.reshape(b, 3, h, w)


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    logits = z @ z.T / temperature
    n = a.shape[0]
    logits = logits - 1e9 * torch.eye(2 * n, device=z.device)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


class Peer(nn.Module):
    """Encoder + head; the step (views, loss, update) is `step`, compiled as a whole."""

    def __init__(self, name: str, augment: bool, queue: int):
        super().__init__()
        depth, _, self.method, kind, out, self.temperature = RECIPES[name]
        self.net = nn.Sequential(encoder(depth), head(kind, 512 if depth < 50 else 2048, out))
        self.augment = (sensor_augment if name == "paper" else mocov2_augment) if augment \
            else (lambda x: x)
        if self.method == "moco":
            self.key_net = copy.deepcopy(self.net).requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(queue, out), dim=1))
            self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        mean, std = MEAN.to(x.device), STD.to(x.device)
        return tuple(((self.augment(x) - mean) / std).contiguous(
            memory_format=torch.channels_last) for _ in range(2))

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        a, b = self.views(images)
        if self.method == "simclr":
            z = self.net(torch.cat([a, b]))
            return nt_xent(z[: len(a)], z[len(a):], self.temperature)
        q = F.normalize(self.net(a).float(), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key_net(b).float(), dim=1)
        negatives = q @ self.queue.clone().T  # a copy: the queue is updated in place below
        logits = torch.cat([(q * k).sum(1, keepdim=True), negatives], 1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        rows = (self.ptr + torch.arange(len(k), device=k.device)) % len(self.queue)
        self.queue[rows] = k
        self.ptr.copy_((self.ptr + len(k)) % len(self.queue))
        return loss

    @torch.no_grad()
    def momentum_update(self, m: float = 0.999) -> None:
        if self.method == "moco":
            torch._foreach_lerp_(list(self.key_net.parameters()), list(self.net.parameters()),
                                 1 - m)


def measure(name: str, batch: int, size: tuple[int, int], augment: bool, args) -> dict[str, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peer = Peer(name, augment, args.queue).to(device).to(memory_format=torch.channels_last)
    params = [p for p in peer.net.parameters()]
    optimizer = (torch.optim.Adam(params, lr=1e-3) if peer.method == "moco"
                 else torch.optim.SGD(params, lr=0.3, momentum=0.9))
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step(images):
        with autocast:
            loss = peer.loss(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        peer.momentum_update()
        return loss

    run = step if args.eager else torch.compile(step)
    images = torch.randint(0, 256, (batch, *size, 3), dtype=torch.uint8, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(2):  # compile and warm up
        run(images)
    sync()
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = run(images)
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    return {"batch": batch, "image_size": list(size), "augment": augment, "device": device,
            "compiled": not args.eager, "bf16_autocast": device == "cuda",
            "warmup_s": warmup_s, "step_s": seconds, "images_per_s": batch / seconds,
            "loss": float(loss.detach())}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ours = {}
    if args.ours and args.ours.exists():  # device.sh passes it even when train_step failed
        ours = json.loads(args.ours.read_text())["results"]
    results = {}
    for name in args.recipes:
        batch = args.batch_paper if name == "paper" else args.batch_r50
        size = tuple(args.size_paper) if name == "paper" else (args.size_r50, args.size_r50)
        for augment in (True, False):
            label = f"{name}{'' if augment else '_no_augment'}"
            results[label] = r = measure(name, batch, size, augment, args)
            line = f"{label:<24} {r['images_per_s']:>10.1f} img/s  ({1e3 * r['step_s']:.1f} ms/step)"
            if augment and name in ours:
                mine = ours[name]["device_resident"]["images_per_s_per_device"]
                r["ours_over_peer"] = mine / r["images_per_s"]
                line += f"  ours {mine:.1f} img/s, ours/peer {r['ours_over_peer']:.2f}"
            print(line, flush=True)
    record = {"timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "argv": sys.argv, "torch": torch.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
