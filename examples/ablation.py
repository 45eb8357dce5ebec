"""Ablation of the CASN loss terms and ranking on the synthetic dataset (CPU-sized).

Trains the same configuration three times (L_ide; + L_ia; + L_sa, i.e. full CASN) and
evaluates each with feature-only and CASN ranking, next to the untrained model. Prints a
Markdown table. Takes about 20 minutes on 2 CPU cores::

    .venv/bin/python examples/ablation.py [--config configs/train/synthetic_mobilenet.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from reid.config import load_yaml_settings
from reid.data import generate_synthetic, load_dataset
from reid.evaluation import EvalResult, evaluate
from reid.models import CASN
from reid.training import TrainConfig, Trainer, trained_model

VARIANTS = {
    "IDE": ["loss.ia=0", "loss.sa=0"],
    "IDE + IA": ["loss.sa=0"],
    "IDE + IA + SA (CASN)": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/train/synthetic_mobilenet.yaml")
    parser.add_argument("--output", default="runs/ablation")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    base = load_yaml_settings(args.config, TrainConfig)
    if not Path(base.data.root).is_dir():
        generate_synthetic(base.data.root, identities=200, cameras=4, images_per_camera=4)
    dataset = load_dataset(base.data.dataset, base.data.root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rankings = ("feature", "casn")
    ecfg = base.eval

    def scores(model: CASN) -> list[EvalResult]:
        return evaluate(
            model.to(device),
            dataset,
            device,
            rankings,
            ecfg.attention_weight,
            ecfg.top_k,
            ecfg.batch_size,
        )

    rows = {"untrained": scores(CASN.from_config(base.model, dataset.num_train_pids))}
    for name, overrides in VARIANTS.items():
        slug = name.split(" (")[0].replace(" + ", "_").lower()
        extra = [f"output={args.output}/{slug}", "eval.every=1000"]
        if args.epochs:
            extra.append(f"optim.epochs={args.epochs}")
        config = load_yaml_settings(args.config, TrainConfig, overrides + extra)
        summary = Trainer(config, dataset).fit()
        model, _ = trained_model(summary.last_checkpoint)
        rows[name] = scores(model)
    print(
        f"\n{dataset.name}: {len(dataset.query)} queries, {len(dataset.gallery)} gallery; "
        f"{base.model.backbone} {base.model.input_size}, {base.optim.epochs} epochs\n"
    )
    print("| model | ranking | rank-1 | rank-5 | mAP |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        for r in results:
            print(f"| {name} | {r.ranking} | {r.rank1:.1%} | {r.rank5:.1%} | {r.mAP:.1%} |")


if __name__ == "__main__":
    main()
