"""Closed-form Siamese attention vs autograd Grad-CAM, measured side by side.

    python -m benchmarks.attention                      # ResNet50 IDE, 288x144, 8 pairs
    python -m benchmarks.attention --backbone resnet18 --pairs 32

Three ways to get the same pair attention maps:
  autograd (images)  the paper's reference: backbone forward + Grad-CAM backward per pair
  autograd (maps)    Grad-CAM backward from precomputed conv maps (head and pooling only)
  closed form (maps) reid.attention.pair_attention on precomputed maps: no backward pass
At inference the engine already outputs the maps, so "closed form (maps)" is what the
matcher pays; the ratio against "autograd (images)" is the saving over running Grad-CAM.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from reid.attention import normalize_maps, pair_attention
from reid.models import CASN, VARIANTS
from reid.models.heads import SAME


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _autograd_from_maps(model: CASN, maps1: torch.Tensor, maps2: torch.Tensor):
    with torch.enable_grad():
        leaves = [m.detach().requires_grad_() for m in (maps1, maps2)]
        raw = [model.pool(m) for m in leaves]
        diff = F.normalize(raw[0], dim=1) - F.normalize(raw[1], dim=1)
        (dz,) = torch.autograd.grad(model.siamese_head(diff)[:, SAME].sum(), diff)
        alpha = (dz > 0).to(diff.dtype)
        out = []
        for m, f in zip(leaves, raw, strict=True):
            (grad,) = torch.autograd.grad((alpha * f).sum(), m, retain_graph=True)
            out.append(F.relu((grad.mean(dim=(2, 3), keepdim=True) * m).sum(1)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--variant", default="ide", choices=sorted(VARIANTS))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = CASN(751, backbone=args.backbone, variant=args.variant).eval().to(device)
    size = VARIANTS[args.variant].input_size
    x1 = torch.randn(args.pairs, 3, *size, device=device)
    x2 = torch.randn(args.pairs, 3, *size, device=device)
    e1, e2 = model.embed(x1), model.embed(x2)

    def sync(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return result

        return run

    reference = model.siamese_attention(x1, x2)
    closed = pair_attention(model, e1.maps, e2.maps, e1.features, e2.features)
    agreement = max(
        (normalize_maps(r) - normalize_maps(c)).abs().max().item()
        for r, c in zip(reference, closed, strict=True)
    )

    with torch.no_grad():
        t_closed = _median_seconds(
            sync(lambda: pair_attention(model, e1.maps, e2.maps, e1.features, e2.features)),
            args.repeats * 20,
        )
    t_maps = _median_seconds(sync(lambda: _autograd_from_maps(model, e1.maps, e2.maps)), 20)
    t_images = _median_seconds(sync(lambda: model.siamese_attention(x1, x2)), args.repeats)

    h, w = e1.maps.shape[-2:]
    print(
        f"{args.backbone} {args.variant} {size[0]}x{size[1]} maps {h}x{w}, "
        f"{args.pairs} pairs on {device.type} ({torch.get_num_threads()} threads)"
    )
    print(f"max |closed - autograd| after max-normalisation: {agreement:.2e}")
    print(f"{'method':<22}{'ms / batch':>12}{'pairs / s':>14}{'closed-form speed-up':>24}")
    for name, seconds in (
        ("autograd (images)", t_images),
        ("autograd (maps)", t_maps),
        ("closed form (maps)", t_closed),
    ):
        print(
            f"{name:<22}{seconds * 1e3:>12.3f}{args.pairs / seconds:>14.0f}"
            f"{seconds / t_closed:>23.0f}x"
        )


if __name__ == "__main__":
    main()
