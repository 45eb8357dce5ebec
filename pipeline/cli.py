"""``reid-pipeline``: run the multi-camera pipeline, or evaluate its MTMC output."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from pipeline.config import PipelineConfig, load_pipeline_config, redis_refusals
from pipeline.run_state import RunState
from pipeline.runner import Pipeline
from reid.config import ConfigError

app = typer.Typer(
    help="Multi-camera person re-identification: reid-pipeline --cameras cams.yaml",
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def camera_table(state: RunState) -> Table:
    table = Table(title="cameras")
    for col in (
        "camera",
        "frames",
        "fps",
        "detections",
        "active tracks",
        "dropped",
        "corrupt",
        "reconnects",
        "state",
    ):
        table.add_column(col, justify="right")
    for cid, s in state.cameras.items():
        status = "error" if s.error else "done" if s.finished else "running"
        table.add_row(
            cid,
            str(s.frames),
            f"{s.fps:.1f}",
            str(s.detections),
            str(s.active_tracks),
            str(s.dropped),
            str(s.corrupt),
            str(s.reconnects),
            status,
        )
    table.caption = (
        f"identities {len(state.identities)}  cross-camera "
        f"{sum(len(c) > 1 for c in state.identity_cameras.values())}  decisions "
        f"{dict(state.decisions)}"
    )
    return table


def summary_table(summary: dict) -> Table:
    table = Table(title="run summary", show_header=False)
    table.add_row("identities", str(summary["identities"]))
    table.add_row("seen in 2+ cameras", str(summary["cross_camera_identities"]))
    table.add_row("frames", f"{summary['frames']} ({summary['fps']} frames/s overall)")
    for stage, seconds in summary["stage_s"].items():
        table.add_row(f"time in {stage}", f"{seconds:.1f} s")
    table.add_row("outputs", summary["outputs"])
    return table


def camera_group(config: PipelineConfig, only: str | None) -> PipelineConfig:
    """``config`` restricted to the cameras named in ``only`` (all when None)."""
    if only is None:
        return config
    wanted = [c.strip() for c in only.split(",") if c.strip()]
    unknown = sorted(set(wanted) - {c.id for c in config.cameras})
    if unknown:
        raise ConfigError(
            f"--only names unknown cameras {unknown}; cams.yaml has "
            f"{[c.id for c in config.cameras]}"
        )
    return config.model_copy(update={"cameras": [c for c in config.cameras if c.id in wanted]})


def _metrics(serve: Callable[[Any, int, str], None], source: Any, port: int, host: str) -> None:
    """Start ``/metrics``; a port it cannot listen on is a ConfigError naming it."""
    try:
        serve(source, port, host)
    except OSError as exc:
        raise ConfigError(
            f"metrics port {host}:{port}: {exc.strerror}; give another one (or none)"
        ) from None


def _on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    cameras: Annotated[Path | None, typer.Option(help="cams.yaml (see configs/cams/)")] = None,
    redis: Annotated[
        str | None,
        typer.Option(envvar="REID_REDIS_URL", help="Redis URL; default: cams.yaml, else embedded"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: outputs.dir)")] = None,
    max_frames: Annotated[
        int | None, typer.Option(min=1, help="stop each camera after N frames (N >= 1)")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="key=value override")] = None,
    live_table: Annotated[bool, typer.Option(help="live per-camera table")] = True,
    only: Annotated[
        str | None, typer.Option(help="comma-separated camera ids: run this camera group only")
    ] = None,
    publish_only: Annotated[
        bool, typer.Option(help="scale-out worker: publish tracklets for matcher processes")
    ] = False,
    verbose: bool = False,
) -> None:
    """Detect, track, embed and link people across the cameras in CAMERAS."""
    from pipeline.process import configure_process

    configure_process()  # process-wide settings: set once, here, for every command
    if ctx.invoked_subcommand is not None:
        return
    if cameras is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("ultralytics", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from pipeline.errors import USER_ERRORS
    from pipeline.sinks import PublishToStream

    extra = list(overrides or [])
    if redis is not None:
        extra.append(f"redis.url={redis}")
    if out is not None:
        extra.append(f"outputs.dir={out}")
    stop = threading.Event()
    try:
        config = camera_group(load_pipeline_config(cameras, extra), only)
        config.outputs.check_folder()
        with redis_refusals(config.redis.url):
            sink = PublishToStream.from_config(config.redis) if publish_only else None
            pipeline = Pipeline(config, max_frames=max_frames, sink=sink)
        _on_signals(stop)
        if config.metrics_port is not None:
            from pipeline.prometheus import serve_metrics

            _metrics(serve_metrics, pipeline.state, config.metrics_port, config.metrics_host)
        if live_table:
            with Live(camera_table(pipeline.state), console=console, refresh_per_second=2) as live:
                summary = pipeline.run(stop, lambda s: live.update(camera_table(s)))
        else:
            summary = pipeline.run(stop)
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    Console().print(summary_table(summary))


@app.command()
def matcher(
    cameras: Annotated[Path, typer.Option(help="the workers' cams.yaml (redis, matcher, reid)")],
    consumer: Annotated[
        str | None, typer.Option(help="unique consumer name; default: <hostname>-<pid>")
    ] = None,
    redis: Annotated[
        str | None, typer.Option(envvar="REID_REDIS_URL", help="Redis URL (overrides cams.yaml)")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus /metrics port")] = None,
    claim_idle_s: Annotated[float, typer.Option(help="claim a dead consumer's entries")] = 30.0,
    exit_when_idle: Annotated[
        float | None, typer.Option(help="stop after this many idle seconds (batch jobs)")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="key=value override")] = None,
) -> None:
    """Scale-out matcher: consume published tracklets as part of the 'matchers' group."""
    from pipeline.errors import USER_ERRORS
    from pipeline.matcher import Matcher
    from pipeline.matcher.store import RetryPolicy, Store
    from pipeline.matcher.stream import MatcherWorker
    from pipeline.runner import load_scorer

    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    stop = threading.Event()
    try:
        extra = list(overrides or []) + ([f"redis.url={redis}"] if redis else [])
        config = load_pipeline_config(cameras, extra)
        scorer = load_scorer(config.reid)
        name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        with redis_refusals(config.redis.url):
            store = Store.open(
                config.redis.url, config.redis.namespace, retry=RetryPolicy(stopping=stop)
            )
            store.store_settings(config.matcher, f"matcher {name}")
        worker = MatcherWorker(
            Matcher(config=config.matcher, scorer=scorer, store=store),
            name,
            claim_idle_ms=int(claim_idle_s * 1000),
        )
        if metrics_port is not None:
            from pipeline.prometheus import serve_worker_metrics

            _metrics(serve_worker_metrics, worker, metrics_port, config.metrics_host)
        _on_signals(stop)
        idle_since = time.monotonic()
        while not stop.is_set():
            decisions = store.call(worker.step, 500)
            if decisions or worker.barrier is not None:  # waiting on a dead one is not idle
                idle_since = time.monotonic()
            elif exit_when_idle is not None and time.monotonic() - idle_since > exit_when_idle:
                break
        worker.finish()
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(
        f"matcher {name}: {worker.processed} tracklets processed, "
        f"{len(worker.relinks)} re-associations run here"
    )


@app.command()
def relink(
    cameras: Annotated[
        Path | None, typer.Option(help="cams.yaml (matcher settings, Redis, namespace)")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(envvar="REID_REDIS_URL", help="Redis URL; default: cams.yaml, else embedded"),
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="default: cams.yaml's")] = None,
    since: Annotated[
        float | None, typer.Option(help="only tracklets that ended at or after T (footage s)")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run", help="a run's output folder: rewrite its mtmc.txt")
    ] = None,
    epoch: Annotated[
        str | None,
        typer.Option(help="only tracklets on this footage clock; default: --run's, else all"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Re-associate recorded tracklets now: re-cluster with all evidence, apply merges and
    splits atomically in Redis (old ids resolve to their survivors)."""
    from pipeline.config import RedisConfig
    from pipeline.errors import USER_ERRORS
    from pipeline.matcher import Matcher
    from pipeline.matcher.store import Store
    from pipeline.run_record import RunRecordError, read_tracklets, write_identities, write_mtmc

    try:
        config = load_pipeline_config(cameras) if cameras else None
        url = redis or (config.redis.url if config else None)
        ns = namespace or (config.redis if config else RedisConfig()).namespace
        with redis_refusals(url):
            store = Store.open(url, ns)
        settings = config.matcher if config else store.configured()
        matcher = Matcher(config=settings, store=store)
        if epoch is None and run_dir is not None and (run_dir / "summary.json").is_file():
            epoch = json.loads((run_dir / "summary.json").read_text()).get("epoch")
        report = matcher.relink(since, epoch)
        if run_dir is not None:
            cams = [c.id for c in config.cameras] if config else ()
            write_mtmc(run_dir, matcher.identity_of, cameras=cams)
            tracks = [(t.camera_id, t.track_id) for t in read_tracklets(run_dir)]
            write_identities(run_dir, tracks, matcher.identity_of)
    except (*USER_ERRORS, RunRecordError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    c = report.calibration
    console.print(
        f"re-associated {report.tracklets} tracklets into {report.clusters} identities in "
        f"{report.seconds:.2f} s ({report.round_trips} Redis round trips): {report.moves} "
        f"tracklets moved, {len(report.merges)} merges, {len(report.splits)} splits; link "
        f"threshold {c.threshold:.4f} "
        + (f"learned from {c.negatives} cannot-link pairs" if c.learned else "(configured)")
    )
    if run_dir is not None:
        console.print(
            f"{run_dir / 'mtmc.txt'} and identities.json rewritten with the corrected identities"
        )


@app.command()
def adapt(
    cameras: Annotated[Path, typer.Option(help="cams.yaml of the footage to learn")],
    redis: Annotated[
        str | None,
        typer.Option(envvar="REID_REDIS_URL", help="Redis URL; default: cams.yaml, else embedded"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: outputs.dir)")] = None,
    adapt_config: Annotated[
        Path | None, typer.Option(help="reid-train adapt settings; default: the shipped ones")
    ] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="key=value override")] = None,
) -> None:
    """The loop in one command: run the pipeline over the footage, adapt CASN to it with no
    labels (reid-train adapt), then, if adopted, re-match the stored tracklets with it."""
    import subprocess
    import sys

    from pipeline.errors import USER_ERRORS
    from pipeline.rematch import rematch
    from pipeline.run_record import RunRecordError

    logging.basicConfig(level=logging.WARNING, handlers=[RichHandler(console=console)])
    extra = list(overrides or []) + ["outputs.video=false"]
    if redis is not None:
        extra.append(f"redis.url={redis}")
    if out is not None:
        extra.append(f"outputs.dir={out}")
    try:
        config = load_pipeline_config(cameras, extra)
        console.print("[bold]1/3[/bold] running the pipeline")
        before = Pipeline(config).run()
        run_dir = Path(before["outputs"])
        model = run_dir / "adapted" / "model.onnx"
        console.print(f"[bold]2/3[/bold] adapting to {run_dir} (reid-train adapt)")
        trained = subprocess.run(
            [sys.executable, "-m", "reid.training.cli", "adapt", str(run_dir)]
            + ["--out", str(model.parent)]
            + (["--config", str(adapt_config)] if adapt_config else [])
            + ([f"--init={config.reid.model}"] if str(config.reid.model).endswith(".pt") else []),
            check=False,
        )
        if trained.returncode != 0:
            console.print(f"[red]error:[/red] reid-train adapt failed ({trained.returncode})")
            raise typer.Exit(2)
        verdict = json.loads((model.parent / "report.json").read_text())["self_validation"]
        if not verdict["adopted"]:  # the run's own identities stand
            console.print(f"[yellow]3/3[/yellow] not re-matched: {verdict['line']}")
            return
        console.print(f"[bold]3/3[/bold] re-matching the stored tracklets with {model}")
        adapted = load_pipeline_config(cameras, [*extra, f"reid.model={model}"])
        final, report = rematch(run_dir, adapted)
    except (*USER_ERRORS, RunRecordError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    identities = {i for i in final.values() if i is not None}
    console.print(
        f"identities: {before['identities']} before, {len(identities)} after adaptation "
        f"({report.tracklets} tracklets); {run_dir / 'mtmc.txt'} rewritten. Keep using the "
        f"model: --set reid.model={model}"
    )


@app.command("eval")
def evaluate(
    gt: Annotated[Path, typer.Option(help="ground truth: folder of <camera>.txt MOT files")],
    pred: Annotated[Path, typer.Option(help="predictions: mtmc.txt (with ids.json beside)")],
    iou: Annotated[float, typer.Option(help="IoU to match a predicted box to a true one")] = 0.5,
) -> None:
    """Multi-camera IDF1 / IDP / IDR of PRED against GT."""
    from pipeline.errors import USER_ERRORS
    from pipeline.evaluation import evaluate_mtmc

    try:
        scores = evaluate_mtmc(gt, pred, iou)
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"MTMC identity metrics ({pred})")
    for col in ("IDF1", "IDP", "IDR", "IDTP", "IDFP", "IDFN"):
        table.add_column(col, justify="right")
    table.add_row(
        *(f"{scores[k]:.1%}" for k in ("idf1", "idp", "idr")),
        *(str(int(scores[k])) for k in ("idtp", "idfp", "idfn")),
    )
    Console().print(table)


if __name__ == "__main__":
    app()
