"""``reid-train``: train CASN, evaluate checkpoints, generate the synthetic dataset.

The commands only parse arguments and call public functions of :mod:`reid.training`,
:mod:`reid.evaluation` and :mod:`reid.data`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from reid.config import ConfigError, load_yaml_settings, validate_settings
from reid.data import DatasetError, generate_synthetic, load_dataset
from reid.evaluation import EvalResult, evaluate
from reid.metrics import NoValidQueryError
from reid.models.backbones import PretrainedWeightsError
from reid.training.checkpoint import CheckpointError, trained_model
from reid.training.config import TrainConfig
from reid.training.distributed import init_distributed, shutdown
from reid.training.engine import Trainer, TrainingInterrupted, resolve_device

app = typer.Typer(
    help="Train CASN person re-id models (reid-train --config FILE), evaluate, make data.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
# errors a user can fix: reported in one line. Anything else (a CUDA out-of-memory, a
# shape bug) shows its traceback
USER_ERRORS = (
    ConfigError,
    DatasetError,
    CheckpointError,
    PretrainedWeightsError,
    NoValidQueryError,
)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2)


def results_table(results: list[EvalResult], title: str) -> Table:
    table = Table(title=title)
    for column in ("ranking", "rank-1", "rank-5", "rank-10", "mAP"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.ranking, *(f"{v:.1%}" for v in (r.rank1, r.rank5, r.rank10, r.mAP)))
    return table


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="training YAML (configs/train/)")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a setting: --set optim.lr=0.01 (repeatable)"),
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="checkpoint to continue from")] = None,
    verbose: bool = False,
) -> None:
    """Train CASN with the settings in CONFIG (paper defaults for anything unset)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    _setup_logging(verbose)
    try:
        settings = load_yaml_settings(config, TrainConfig, overrides or [])
        dataset = load_dataset(settings.data.dataset, settings.data.root)
        dist_ctx = init_distributed(settings.device != "cpu" and _cuda_available())
        if dist_ctx.is_main:
            console.print(dataset.summary())
        trainer = Trainer(settings, dataset, dist_ctx, console)
        if resume is not None:
            trainer.resume(resume)
        summary = trainer.fit()
    except TrainingInterrupted as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130) from None
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    shutdown(dist_ctx)
    if dist_ctx.is_main:
        console.print(
            f"done: best validation mAP {summary.best_map:.1%}; checkpoints "
            f"{summary.best_checkpoint} (best), {summary.last_checkpoint} (last)"
        )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@app.command("eval")
def evaluate_checkpoint(
    checkpoint: Annotated[Path, typer.Option(help="a reid-train checkpoint (.pt)")],
    dataset: Annotated[
        str | None, typer.Option(help="dataset name; default: the one it was trained on")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="dataset folder; default: as trained")] = None,
    ranking: Annotated[
        list[str] | None, typer.Option(help="feature and/or casn (repeatable)")
    ] = None,
    attention_weight: Annotated[float | None, typer.Option(help="CASN ranking weight")] = None,
    device: str = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Rank-1/5/10 and mAP of CHECKPOINT on a dataset's query/gallery split."""
    _setup_logging(False)
    try:
        model, config = trained_model(checkpoint)
        eval_cfg = validate_settings(
            {
                **config.eval.model_dump(),
                "rankings": ranking or ["feature", "casn"],
                "select_by": (ranking or ["feature"])[0],
                **({"attention_weight": attention_weight} if attention_weight is not None else {}),
            },
            type(config.eval),
            "command line",
        )
        data = load_dataset(dataset or config.data.dataset, root or config.data.root)
        target = resolve_device(device, init_distributed(False))
        results = evaluate(
            model.to(target),
            data,
            target,
            eval_cfg.rankings,
            eval_cfg.attention_weight,
            eval_cfg.top_k,
            eval_cfg.batch_size,
        )
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    if json_out:
        import json

        typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        Console().print(results_table(results, f"{checkpoint} on {data.name}"))


def _input_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not HEIGHTxWIDTH, e.g. 256x128") from None
    return height, width


def import_to_checkpoint(file: Path, fmt: str, out: Path, input_size: str) -> tuple[Path, str]:
    """A public re-id checkpoint -> a reid-train checkpoint at ``out``; and its backbone."""
    from reid.models.public_weights import import_public
    from reid.training.checkpoint import save_untrained

    model, config = import_public(file, fmt, _input_size(input_size))
    imported_from = {"file": str(file), "format": fmt}
    path = save_untrained(out, model, config, num_classes=1, imported_from=imported_from)
    return path, model.backbone_name


@app.command("import")
def import_command(
    file: Annotated[
        Path, typer.Argument(help="a torchreid (ResNet50, OSNet x1.0) or fast-reid R50 checkpoint")
    ],
    fmt: Annotated[str, typer.Option("--format", help="torchreid or fastreid")],
    out: Annotated[Path, typer.Option(help="the reid-train checkpoint to write")],
    input_size: Annotated[
        str, typer.Option(help="HEIGHTxWIDTH the public model was trained at")
    ] = "256x128",
) -> None:
    """Make a CASN checkpoint from public re-id weights (Market-1501 / MSMT17 models)."""
    try:
        _, backbone = import_to_checkpoint(file, fmt, out, input_size)
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    console.print(
        f"{out}: CASN {backbone} with the {fmt} backbone of {file}; export it with "
        f"`reid-export onnx --checkpoint {out}` or adapt it with `reid-train adapt --init {out}`"
    )


@app.command("adapt")
def adapt_command(
    runs: Annotated[list[Path], typer.Argument(help="output folders of reid-pipeline runs")],
    out: Annotated[Path, typer.Option(help="where model.onnx and report.json go")],
    config: Annotated[
        Path | None, typer.Option(help="adaptation YAML; default: the shipped settings")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="start from this checkpoint instead of ImageNet")
    ] = None,
    init_format: Annotated[
        str | None,
        typer.Option(help="--init is a public checkpoint: torchreid or fastreid (imported first)"),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override: --set rounds=4, --set train.optim.lr=0.01"),
    ] = None,
    constraints: Annotated[
        Path | None,
        typer.Option(help="an operator's constraints.json (reid-query corrections export)"),
    ] = None,
    verbose: bool = False,
) -> None:
    """Train CASN on the site's own tracklets, with no labels (or an operator's must-link /
    cannot-link constraints), and export it if it beats the current model on held-out
    tracklets (--set holdout=0: unchecked)."""
    from reid.training.adapt import DEFAULT_ADAPT, AdaptConfig, adapt

    _setup_logging(verbose)
    try:
        settings = load_yaml_settings(config or DEFAULT_ADAPT, AdaptConfig, overrides or [])
        if init is not None and init_format is not None:
            init, _ = import_to_checkpoint(init, init_format, out / "imported.pt", "256x128")
        report = adapt(runs, out, settings, init, console, constraints)
    except TrainingInterrupted as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(130) from None
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    summary = ""  # no round: too little held-out evidence to train for, as said above
    if report["rounds"]:
        last = report["rounds"][-1]
        summary = (
            f"adapted on {report['tracklets']} tracklets ({report['crops']} crops) in "
            f"{report['seconds']:.0f} s: {last['clusters']} pseudo-identities in the last "
            f"round, {last['cross_camera_clusters']} across cameras; "
        )
    if report["model"] is None:  # the verdict line above says why
        console.print(f"{summary}no model written, the current one stays; {out / 'report.json'}")
    else:
        console.print(
            f"{summary}model {report['model']} (use it with --set reid.model={report['model']}); "
            f"report {out / 'report.json'}"
        )


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="folder to write (Market-1501 layout)")] = Path(
        "data/synthetic"
    ),
    identities: int = 200,
    cameras: int = 4,
    images_per_camera: int = 4,
    seed: int = 0,
) -> None:
    """Write the synthetic re-id dataset (for machines without the public benchmarks)."""
    try:
        generate_synthetic(out, identities, cameras, images_per_camera, seed)
        console.print(load_dataset("synthetic", out).summary())
    except USER_ERRORS as exc:
        raise _fail(exc) from None


if __name__ == "__main__":  # torchrun -m reid.training.cli --config ...
    app()
