"""Multi-camera identity accuracy on the synthetic scene: feature-only vs feature + attention
matching, side by side (IDF1 / IDP / IDR against the scene's ground truth).

    .venv/bin/python -m benchmarks.mtmc --model runs/export/casn.onnx [--people 8] [--seed 0]

``--model`` is any model the pipeline loads (an exported .onnx with its .consistency.pt
beside it gives attention inputs); without it the ImageNet fallback runs feature-only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import load_pipeline_config
from pipeline.evaluation import evaluate_mtmc
from pipeline.runner import Pipeline
from pipeline.scene import generate_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default="0,0.3", help="attention weights to compare")
    parser.add_argument("--threshold", type=float, default=0.2, help="matcher.link_threshold")
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mtmc-"))
    cams = generate_scene(work / "scene", people=args.people, cameras=args.cameras, seed=args.seed)
    table = Table(
        title=f"MTMC on the synthetic scene ({args.people} people, {args.cameras} "
        f"cameras, seed {args.seed}, model {args.model or 'ImageNet fallback'})"
    )
    for col in ("attention weight", "identities", "IDF1", "IDP", "IDR"):
        table.add_column(col, justify="right")
    for weight in (float(w) for w in args.weights.split(",")):
        overrides = [
            f"matcher.attention_weight={weight}",
            f"outputs.dir={work / str(weight)}",
            f"matcher.link_threshold={args.threshold}",
            "redis.namespace=bench-mtmc",
            "outputs.video=false",
        ]
        if args.model:
            overrides.append(f"reid.model={args.model}")
        if args.redis:
            overrides.append(f"redis.url={args.redis}")
        pipeline = Pipeline(load_pipeline_config(cams, overrides))
        pipeline.matcher.clear()
        summary = pipeline.run()
        scores = evaluate_mtmc(cams.parent / "gt", work / str(weight) / "mtmc.txt")
        table.add_row(
            f"{weight:.2f}",
            str(summary["identities"]),
            *(f"{scores[k]:.1%}" for k in ("idf1", "idp", "idr")),
        )
        pipeline.matcher.clear()
    Console().print(table)


if __name__ == "__main__":
    main()
