"""``reid-query``: where did a person go? Table output or ``--json``; ``serve`` for HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Query identities and their cross-camera trajectories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _process_settings() -> None:
    """Process-wide settings, set once for every command."""
    from pipeline.process import configure_process

    configure_process()


Redis = Annotated[
    str | None,
    typer.Option("--redis", envvar="REID_REDIS_URL", help="Redis URL; default: embedded"),
]
Namespace = Annotated[str, typer.Option(help="key namespace of the pipeline")]
Json = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]


def _reader(redis: str | None, namespace: str):  # noqa: ANN202
    from pipeline.config import redis_refusals
    from pipeline.matcher import IdentityReader

    with redis_refusals(redis):
        return IdentityReader(redis, namespace)


def _service(redis: str | None, namespace: str, model: Path | None = None):  # noqa: ANN202
    from pipeline.query.service import QueryService

    embedder = None
    if model is not None:
        from reid.runtime import load_embedder

        embedder = load_embedder(model)
    return QueryService(_reader(redis, namespace), embedder)


def _run(fn, *args: Any) -> Any:  # noqa: ANN001
    from pipeline.errors import USER_ERRORS
    from pipeline.query.service import QueryError

    try:
        return fn(*args)
    except (QueryError, *USER_ERRORS) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _table_wanted(rows: list, as_json: bool, empty: str) -> bool:
    """Prints ``rows`` as JSON, or ``empty`` when there are none; True if the caller's table
    should follow."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return False
    if not rows:
        console.print(empty)
        return False
    return True


def _print_view(view: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    if "merged_from" in view:
        typer.echo(f"{view['merged_from']} was merged into {view['identity']}:")
    table = Table(title=f"{view['identity']}: {' -> '.join(view['cameras'])}")
    for col in ("camera", "track", "start", "end", "crops"):
        table.add_column(col)
    for s in view["trajectory"]:
        table.add_row(
            s["camera_id"],
            str(s["track_id"]),
            f"{s['start']:.1f}",
            f"{s['end']:.1f}",
            s["crops"][0] if s["crops"] else "",
        )
    Console().print(table)


@app.command()
def identity(
    identity_id: str, redis: Redis = None, namespace: Namespace = "reid", as_json: Json = False
) -> None:
    """The time-ordered trajectory of IDENTITY_ID across cameras."""
    service = _run(_service, redis, namespace)
    _print_view(_run(service.identity, identity_id).as_dict(), as_json)


@app.command()
def track(
    camera: str,
    track_id: int,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """The identity of local track TRACK_ID in CAMERA, and its trajectory."""
    service = _run(_service, redis, namespace)
    _print_view(_run(service.track, camera, track_id).as_dict(), as_json)


@app.command("list")
def list_identities(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """The most recently updated identities."""
    rows = _run(_run(_service, redis, namespace).list, limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} identities")
    for col in ("identity", "cameras", "sightings", "first seen", "last seen"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["identity"],
            " -> ".join(r["cameras"]),
            str(r["sightings"]),
            f"{r['first_seen']:.1f}",
            f"{r['last_seen']:.1f}",
        )
    Console().print(table)


@app.command()
def topology(
    plot: Annotated[Path | None, typer.Option(help="write a PNG of the distributions here")] = None,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """Camera-to-camera transit times learned by re-association (per ordered pair) and,
    with matcher.camera_links, the exit/entry zones and the links between them (--json: the
    transit rows; `reid-query camera-links --json` for the zones and links)."""
    from pipeline.query.topology import topology_png, topology_rows

    reader = _run(_service, redis, namespace).reader
    samples, links = _run(reader.topology), _run(reader.camera_links)
    rows = topology_rows(samples)
    if plot is not None and (rows or links["zones"]):
        plot.write_bytes(topology_png(samples, links))
        console.print(f"plot written to {plot}")
    if not as_json and links["links"]:
        _print_camera_links(links, namespace)
    if not _table_wanted(
        rows, as_json, "no transit times of confident links yet: they appear after a re-association"
    ):
        return
    table = Table(title=f"learned camera topology ({namespace})")
    for col in ("from", "to", "links", "mode s", "median s", "10-90% spread s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["source"]),
            str(r["target"]),
            str(r["links"]),
            *(f"{r[k]:.1f}" for k in ("mode_s", "median_s", "spread_s")),
        )
    Console().print(table)


@app.command("camera-links")
def camera_links(redis: Redis = None, namespace: Namespace = "reid", as_json: Json = False) -> None:
    """What re-association learned from when tracks end and begin: hand-overs (matcher.handovers:
    per camera pair, the share of track ends continued and the median gap) and exit/entry zones with
    the links between them (matcher.camera_links)."""
    links = _run(_run(_service, redis, namespace).reader.camera_links)
    if as_json:
        typer.echo(json.dumps(links, indent=2))
        return
    if not links["links"] and not links.get("handovers", {}).get("pairs"):
        console.print("nothing learned yet: it appears after a re-association")
    if links["links"]:
        _print_camera_links(links, namespace)
    if links.get("handovers", {}).get("pairs"):
        table = Table(title=f"hand-overs: tracks continued by later tracks ({namespace})")
        for col in ("from", "to", "share of ends continued", "median gap s"):
            table.add_column(col, justify="right")
        for pair in links["handovers"]["pairs"]:
            share, gap = f"{pair['continued']:.0%}", f"{pair['gap_s']:.1f}"
            table.add_row(str(pair["source"]), str(pair["target"]), share, gap)
        Console().print(table)


def _print_camera_links(links: dict, namespace: str) -> None:
    where = {
        (z["camera"], z["kind"], z["zone"]): f"({z['x']:.0f}, {z['y']:.0f})" for z in links["zones"]
    }
    table = Table(title=f"camera links from exits and entries ({namespace})")
    for col in ("from", "exit zone (foot px)", "to", "entry zone (foot px)", "transit s", "people"):
        table.add_column(col, justify="right")
    for link in links["links"]:
        table.add_row(
            str(link["source"]),
            f"{link['exit_zone']} {where.get((link['source'], 'exit', link['exit_zone']), '')}",
            str(link["target"]),
            f"{link['entry_zone']} {where.get((link['target'], 'entry', link['entry_zone']), '')}",
            f"{link['transit_s']:.1f}",
            f"{link['transitions']:.0f}",
        )
    Console().print(table)


@app.command()
def deadletters(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """Inbox entries set aside because no matcher could decide them, newest first."""
    rows = _run(_run(_service, redis, namespace).reader.dead_letters, limit)
    if not _table_wanted(rows, as_json, "no dead letters: every published tracklet was decided"):
        return
    table = Table(title=f"dead letters ({namespace}), newest first")
    for col in ("id", "camera", "track", "start", "end", "consumer", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(r.get(c, "") for c in ("id", "camera", "track", "start", "end")),
            r.get("consumer", ""),
            r.get("error", ""),
        )
    Console().print(table)


@app.command()
def image(
    path: Path,
    model: Annotated[Path, typer.Option(help="the pipeline's model")],
    k: Annotated[int, typer.Option(min=1, max=100)] = 5,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """Identities that look like the person in the photo at PATH."""
    if not path.is_file():
        console.print(f"[red]error:[/red] {path} does not exist")
        raise typer.Exit(2)
    hits = _run(_run(_service, redis, namespace, model).search_image, path.read_bytes(), k)
    if as_json:
        typer.echo(json.dumps(hits, indent=2))
        return
    table = Table(title=f"people like {path.name}")
    for col in ("identity", "similarity", "cameras"):
        table.add_column(col)
    for h in hits:
        table.add_row(h["identity"], f"{h['similarity']:.3f}", " -> ".join(h["cameras"]))
    Console().print(table)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    redis: Redis = None,
    namespace: Namespace = "reid",
    model: Annotated[Path | None, typer.Option(help="enables search by image")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="REID_QUERY_TOKEN", help="operator token: may view and correct identities"
        ),
    ] = None,
    token_name: Annotated[
        str, typer.Option(help="who corrections made with --token are recorded as")
    ] = "operator",
    read_token: Annotated[
        str | None,
        typer.Option(envvar="REID_QUERY_READ_TOKEN", help="read-only token: may only view"),
    ] = None,
    crops_root: Annotated[
        Path, typer.Option(help="serve crop images and run videos under this")
    ] = Path("runs"),
    max_upload_mb: Annotated[float, typer.Option(min=0.01)] = 5.0,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="serve without any token: anyone may view")
    ] = False,
) -> None:
    """The review page and HTTP API: gallery, identities with timelines and clips, search
    by photo, corrections (merge, split, confirm, not the same person, undo)."""
    import uvicorn

    from pipeline.query.api import create_app

    token, read_token = token or None, read_token or None  # an empty variable is no token
    if token is None and read_token is None and not no_auth:
        console.print(
            "[red]error:[/red] no --token (REID_QUERY_TOKEN) or --read-token "
            "(REID_QUERY_READ_TOKEN) given, or they are empty: the identities would be open "
            "to anyone who reaches the port. Give a token, or --no-auth to serve them open"
        )
        raise typer.Exit(2)
    if token is not None and token == read_token:
        console.print(
            "[red]error:[/red] --token and --read-token are the same secret: whoever holds it "
            "could not be told apart as operator or viewer. Give two different tokens"
        )
        raise typer.Exit(2)
    service = _run(_service, redis, namespace, model)
    api = create_app(
        service, token, int(max_upload_mb * 1024 * 1024), crops_root, read_token, token_name
    )
    mode = "token required" if token or read_token else "OPEN to anyone for viewing (--no-auth)"
    if not token:
        mode += "; corrections need --token"
    console.print(f"serving http://{host}:{port}/ ({mode})")
    uvicorn.run(api, host=host, port=port, log_level="warning")


corrections = typer.Typer(help="Operators' corrections: the log, and labels for training.")
app.add_typer(corrections, name="corrections")


def _corrector(redis: str | None, namespace: str):  # noqa: ANN202
    from pipeline.matcher.corrections import Corrector

    return Corrector(_reader(redis, namespace))


@corrections.command("list")
def list_corrections(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """The corrections log, newest first: who merged, split, confirmed or undid what."""
    rows = _run(_run(_corrector, redis, namespace).log, limit)
    if not _table_wanted(rows, as_json, "no corrections yet"):
        return
    table = Table(title=f"corrections ({namespace}), newest first")
    for col in ("event", "kind", "identity", "other", "who", "state"):
        table.add_column(col)
    for r in rows:
        other = r.get("other", "") if r["kind"] != "undo" else f"undo of {r.get('of', '')}"
        who = f"{r.get('who', '')} ({r.get('role', '')})"
        table.add_row(r["event"], r["kind"], r.get("identity", ""), other, who, r["state"])
    Console().print(table)


@corrections.command("export")
def export_corrections(
    out: Annotated[Path, typer.Option(help="folder for crops/<person>/ and constraints.json")],
    redis: Redis = None,
    namespace: Namespace = "reid",
    as_json: Json = False,
) -> None:
    """Corrections still in force as labels: confirmed people's crops (reid-train site data)
    and must-link / cannot-link constraints (reid-train adapt --constraints)."""
    from pipeline.query.labels import export_labels

    report = _run(export_labels, _run(_run(_corrector, redis, namespace).applied), out)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console.print(
        f"{report['people']} confirmed people ({report['crops']} crops) in {out / 'crops'}; "
        f"{report['must_link']} must-link and {report['cannot_link']} cannot-link groups in "
        f"{out / 'constraints.json'}"
        + (
            f"; {len(report['conflicts'])} people left out (conflicting)"
            if report["conflicts"]
            else ""
        )
        + (f"; {report['missing_crops']} crop files missing" if report["missing_crops"] else "")
    )


if __name__ == "__main__":
    app()
