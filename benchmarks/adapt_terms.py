"""Does each CASN loss term help label-free adaptation? The same footage, the same run, the
same pseudo-identity loop; only the loss terms differ (identification alone, then with
identification attention, Siamese attention, both at the paper's weights).

    .venv/bin/python -m benchmarks.adapt_terms --seeds 0,1,2          # calibration seeds
    .venv/bin/python -m benchmarks.adapt_terms --seeds 10,11,12,13,14 --vtest

Each row: multi-camera IDF1 after re-associating the re-embedded tracklets, with the two
references on the same footage (never link, perfect link), and the pair-verification AUC
of the adapted features (ground-truth labels, pairs that are not cannot-links). Runs and
adapted models are cached under ``runs/bench-mtmc/`` as in :mod:`benchmarks.mtmc`.
"""

from __future__ import annotations

import argparse
import statistics

from rich.table import Table

from benchmarks.mtmc import (
    adapted,
    console,
    never_link,
    only_tracks,
    run_once,
    run_tracks,
    synthetic_footage,
    verification_auc,
    vtest_footage,
)
from pipeline.config import load_pipeline_config
from pipeline.evaluation import evaluate_mtmc, oracle_identities
from pipeline.process import configure_process
from pipeline.run_record import write_mtmc
from reid.config import LossConfig

PAPER = LossConfig()
IA, SA = f"train.loss.ia={PAPER.ia}", f"train.loss.sa={PAPER.sa}"
NO_IA, NO_SA = "train.loss.ia=0", "train.loss.sa=0"
VARIANTS: dict[str, tuple[str, ...]] = {  # every term set explicitly, whatever the yaml says
    "identification only": (NO_IA, NO_SA),
    f"+ identification attention ({PAPER.ia})": (IA, NO_SA),
    f"+ Siamese attention ({PAPER.sa})": (NO_IA, SA),
    "+ both (paper weights)": (IA, SA),
}


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="synthetic scene seeds ('' for none)")
    parser.add_argument("--vtest", action="store_true", help="add vtest.avi's two cameras")
    args = parser.parse_args()
    footages = {
        f"seed {s}": synthetic_footage(int(s), 12, 3, 40.0) for s in args.seeds.split(",") if s
    }
    if args.vtest:
        footages["vtest"] = vtest_footage()
    table = Table(title="label-free adaptation: which CASN loss terms help")
    for col in ("footage", "variant", "IDF1", "vs identification only", "pair AUC"):
        table.add_column(col, justify="right")
    gains: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for name, (cams, gt, folder) in footages.items():
        run = run_once(cams, folder / "run-fallback", ["redis.namespace=bench-mtmc"])
        config = load_pipeline_config(cams, []).matcher
        idf1 = {
            "never link (floor)": evaluate_mtmc(gt, write_mtmc(run, never_link(run, config)))[
                "idf1"
            ],
            "perfect link (ceiling)": evaluate_mtmc(
                gt, write_mtmc(run, only_tracks(run_tracks(run), oracle_identities(gt, run)))
            )["idf1"],
        }
        for reference, score in idf1.items():
            table.add_row(name, reference, f"{score:.3f}", "", "")
        base = None
        for variant, terms in VARIANTS.items():
            # every variant's model, adopted or not by self-validation: the terms are compared
            overrides = (*terms, "holdout=0")
            pred = write_mtmc(run, adapted(run, config, overrides))
            score = evaluate_mtmc(gt, pred)["idf1"]
            base = score if base is None else base
            gains[variant].append(score - base)
            pair_auc = verification_auc(run, gt, config, adapted_with=overrides)["appearance"]
            table.add_row(name, variant, f"{score:.3f}", f"{score - base:+.3f}", f"{pair_auc:.3f}")
        table.add_section()
    console.print(table)
    for variant, values in gains.items():
        console.print(
            f"{variant:>36}: IDF1 vs identification only, mean {statistics.mean(values):+.3f} "
            f"(min {min(values):+.3f}, max {max(values):+.3f}) over {len(values)} footages"
        )


if __name__ == "__main__":
    main()
