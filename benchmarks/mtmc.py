"""Cross-camera linking side by side on the same tracklets and features: the two references
(never linking across cameras, a perfect linker) and each matcher, IDF1 / IDP / IDR.

    .venv/bin/python -m benchmarks.mtmc --footage synthetic --seeds 10,11,12
    .venv/bin/python -m benchmarks.mtmc --footage vtest

The pipeline (detect, track, embed) runs once per footage and is cached under
``runs/bench-mtmc/``; every matcher then re-links the stored tracklets
(:mod:`pipeline.run_record`), so the rows differ only in how tracklets are linked.

Ground truth: the synthetic scene writes its own (detections are the scene's, with jitter
and 5% misses). vtest.avi has none; its *pseudo* ground truth is the full-frame people of
:mod:`benchmarks.vtest_people` (the demo's detector and tracker on the full frame, things
dropped and one person's broken tracks joined, both checked by eye), cut into the virtual
cameras exactly as the cameras cut the frame. A perfect linker therefore scores below 1.0
where our per-camera tracks break differently from the people's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.vtest_people import DEMO_CAMS, PEOPLE
from pipeline.config import load_pipeline_config
from pipeline.evaluation import (
    evaluate_mtmc,
    link_quality,
    oracle_identities,
    read_ground_truth,
)
from pipeline.matcher import Matcher, MatcherConfig, connect
from pipeline.matcher.association import (
    AttentionInputs,
    associate,
    auc,
    cannot_link_pairs,
    cluster_tracklets,
    representatives,
    tracklet_vectors,
)
from pipeline.matcher.evidence import LLR_CLIP, AppearanceEvidence
from pipeline.matcher.moves import Moves, transit_scores
from pipeline.matcher.session import MatchingSession
from pipeline.matcher.store import Store
from pipeline.process import configure_process
from pipeline.run_record import read_summaries, read_tracklets, write_identities, write_mtmc
from pipeline.runner import Pipeline
from reid.config import load_yaml_settings
from reid.runtime import load_embedder
from reid.runtime.clustering import camera_centred, pair_distances
from reid.runtime.consistency import ConsistencyScorer
from reid.runtime.metadata import scorer_path
from reid.runtime.pair_scoring import AttentionScorer
from reid.training.adapt import DEFAULT_ADAPT, AdaptConfig, adapt
from reid_demo.scene import generate_scene
from reid_demo.vtest import fetch_vtest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "bench-mtmc"
ADAPT_CONFIG = DEFAULT_ADAPT
console = Console(width=150)
Linker = Callable[[Path, MatcherConfig], Callable[[str, int], str | None]]


def run_once(cams: Path, out: Path, overrides: list[str]) -> Path:
    """Run the pipeline over ``cams`` into ``out`` unless a finished run is there."""
    if (out / "summary.json").is_file():
        return out
    config = load_pipeline_config(
        cams, [f"outputs.dir={out}", "outputs.video=false", "outputs.crops=false", *overrides]
    )
    pipeline = Pipeline(config)
    Store.open(config.redis.url, config.redis.namespace).clear()
    pipeline.run()
    Store.open(config.redis.url, config.redis.namespace).clear()
    return out


def synthetic_footage(
    seed: int, people: int, cameras: int, duration: float
) -> tuple[Path, Path, Path]:
    """(cams.yaml, ground truth, cache folder) of one synthetic scene."""
    folder = CACHE / f"synthetic-{people}p{cameras}c{duration:g}s-seed{seed}"
    cams = folder / "scene" / "cams.yaml"
    if not cams.is_file():
        generate_scene(folder / "scene", people, cameras, duration, seed=seed)
    return cams, folder / "scene" / "gt", folder


# The non-overlapping cuts of vtest.avi: two views with a band between them that neither
# camera sees (a blind zone of a few seconds' walk). vtest-gap: 320 px views, 128 px band
# (the cut the matcher's hand-overs were developed on); vtest-wide: 256 px views, 256 px
# band (report footage: nothing was chosen on it).
GAP_CROPS = {
    "vtest-gap": {"left": [0, 0, 320, 576], "right": [448, 0, 320, 576]},
    "vtest-wide": {"left": [0, 0, 256, 576], "right": [512, 0, 256, 576]},
}


def gap_cams(video: Path, folder: Path, cut: str) -> Path:
    """cams.yaml of a non-overlapping cut: the demo's settings, crops :data:`GAP_CROPS`,
    no overlapping pair."""
    spec = yaml.safe_load(DEMO_CAMS.read_text())
    spec["cameras"] = [
        {**camera, "source": str(video.resolve()), "crop": GAP_CROPS[cut][camera["id"]]}
        for camera in spec["cameras"]
    ]
    spec["matcher"] = {k: v for k, v in spec["matcher"].items() if k != "overlapping"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cams.yaml").write_text(yaml.safe_dump(spec))
    return folder / "cams.yaml"


def vtest_footage(cut: str) -> tuple[Path, Path, Path]:
    """(cams.yaml, pseudo ground truth, cache folder) of a cut of vtest.avi: ``vtest``, the
    demo's two overlapping views, or one with a blind band between two views
    (:data:`GAP_CROPS`).
    The pseudo ground truth is the full-frame run's tracks cut into the views exactly as the
    views cut the frame (:func:`cut_pseudo_ground_truth`)."""
    video = fetch_vtest(ROOT / "data")
    if video is None:
        raise SystemExit("vtest.avi could not be fetched (needs apt-get); use --footage synthetic")
    folder = CACHE / cut
    cams = DEMO_CAMS if cut == "vtest" else gap_cams(video, folder, cut)
    gt = folder / "gt"
    if not PEOPLE.is_file():
        raise SystemExit(f"{PEOPLE} is missing: make it with python -m benchmarks.vtest_people")
    if not gt.is_dir() or gt.stat().st_mtime < PEOPLE.stat().st_mtime:
        crops = {c["id"]: c["crop"] for c in yaml.safe_load(cams.read_text())["cameras"]}
        cut_pseudo_ground_truth(PEOPLE, crops, gt)
    return cams, gt, folder


def cut_pseudo_ground_truth(people: Path, crops: dict[str, list[int]], gt: Path) -> None:
    """MOT files per virtual camera from the full-frame people (:mod:`benchmarks.vtest_people`);
    a box counts in a camera when at least half of its width is inside that camera's crop."""
    gt.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {camera: [] for camera in crops}
    for row in people.read_text().splitlines():
        frame, person, x1, y1, x2, y2 = row.split()
        a, top, b, bottom = float(x1), float(y1), float(x2), float(y2)
        for camera, (cx, cy, cw, ch) in crops.items():
            left, right = max(a, cx), min(b, cx + cw)
            if right - left < 0.5 * (b - a):
                continue
            t, u = max(top, cy), min(bottom, cy + ch)
            box = f"{left - cx:.1f},{t - cy:.1f},{right - left:.1f},{u - t:.1f}"
            lines[camera].append(f"{frame},{person},{box},1,-1,-1,-1")
    for camera, rows in lines.items():
        (gt / f"{camera}.txt").write_text("\n".join(rows) + "\n")


def run_tracks(run: Path) -> list[tuple[str, int]]:
    """Every (camera, track) the run summarised: the tracks a linker can give an identity.
    Tracks with boxes but no summary (a frame or two; a static thing such as the jacket of
    vtest) are left out of every row, the references included, so all rows score the same
    tracks."""
    return sorted({(t.camera_id, t.track_id) for t in read_tracklets(run)})


def only_tracks(
    tracks: Sequence[tuple[str, int]], identity_of: Callable[[str, int], str | None]
) -> Callable[[str, int], str | None]:
    """``identity_of`` on ``tracks``, None (left out of ``mtmc.txt``) elsewhere."""
    keep = set(tracks)
    return lambda camera, track: identity_of(camera, track) if (camera, track) in keep else None


def never_link(run: Path, config: MatcherConfig) -> Callable[[str, int], str | None]:
    return only_tracks(run_tracks(run), lambda camera, track: f"{camera}:{track}")


@contextmanager
def scratch_matcher(config: MatcherConfig) -> Iterator[Matcher]:
    """A matcher in a namespace of its own, cleared afterwards."""
    matcher = Matcher(
        client=connect(ARGS.redis), namespace=f"bench-mtmc-{time.time_ns()}", config=config
    )
    try:
        yield matcher
    finally:
        matcher.store.clear()


def greedy(run: Path, config: MatcherConfig) -> Callable[[str, int], str | None]:
    """Today's online matcher: every summary in the run's order, greedy, never revisited."""
    with scratch_matcher(config) as matcher:
        for tracklet, _ in read_summaries(run):
            matcher.decide(tracklet)
        found = {
            (t.camera_id, t.track_id): matcher.identity_of(t.camera_id, t.track_id)
            for t in read_tracklets(run)
        }
    return lambda camera, track: found.get((camera, track))


def reassociate(run: Path, config: MatcherConfig) -> Callable[[str, int], str | None]:
    """Re-association of all the run's tracklets (offline, no Redis)."""
    tracklets = read_tracklets(run)
    labels, _ = cluster_tracklets(tracklets, config)
    found = {
        (t.camera_id, t.track_id): f"c{label}" for t, label in zip(tracklets, labels, strict=True)
    }
    return lambda camera, track: found.get((camera, track))


def adapted_model(run: Path, config: MatcherConfig, overrides: Sequence[str] = ()) -> Path | None:
    """``reid-train adapt`` on the run's own tracklets (no labels), round 0 from the run's
    final identities as the pipeline would have written them; ``overrides`` (``key=value``)
    change the adaptation settings. Cached beside the run, one folder per overrides. None
    when self-validation kept the run's own model (``report.json``'s ``model`` is null)."""
    tag = "".join(f"-{kv}" for kv in overrides).replace("/", "_")
    out = run.parent / f"adapt-{run.name}{tag}"
    if not (out / "report.json").is_file():
        tracklets = read_tracklets(run)
        labels, _ = cluster_tracklets(tracklets, config)
        final = {(t.camera_id, t.track_id): f"c{n}" for t, n in zip(tracklets, labels, strict=True)}
        write_identities(run, list(final), lambda camera, track: final[(camera, track)])
        settings = load_yaml_settings(ADAPT_CONFIG, AdaptConfig, list(overrides))
        adapt([run], out, settings, console=console)
    adopted = json.loads((out / "report.json").read_text()).get("model")
    return out / "model.onnx" if adopted else None


def adapted_tracklets(
    run: Path, config: MatcherConfig, overrides: Sequence[str] = ()
) -> tuple[list, AttentionScorer | None]:
    """The stored crops re-embedded with the adapted model (no detection again), and the
    model's attention scorer; the run's own tracklets (no scorer) where the adapted model
    was not adopted."""
    model = adapted_model(run, config, overrides)
    if model is None:
        return read_tracklets(run), None
    scorer = ConsistencyScorer.load(scorer_path(model)).to_numpy()
    return read_tracklets(run, load_embedder(model, "ort")), scorer


def adapted(
    run: Path, config: MatcherConfig, overrides: Sequence[str] = ()
) -> Callable[[str, int], str | None]:
    """After adaptation: re-embedded tracklets re-associated, attention included (its
    weight fitted on pseudo-pairs)."""
    tracklets, scorer = adapted_tracklets(run, config, overrides)
    labels, _ = cluster_tracklets(tracklets, config, scorer)
    found = {
        (t.camera_id, t.track_id): f"c{label}" for t, label in zip(tracklets, labels, strict=True)
    }
    return lambda camera, track: found.get((camera, track))


def appearance_only(run: Path, config: MatcherConfig) -> Callable[[str, int], str | None]:
    return reassociate(run, config.model_copy(update={"spatio_temporal": False}))


def pipeline_default(run: Path, config: MatcherConfig) -> Callable[[str, int], str | None]:
    """What reid-pipeline does: the run's summaries through its matching policy
    (:class:`MatchingSession`: online decisions, re-association every ``relink_every_s`` of
    footage over ``relink_window_s``, a final one over the run), as ``rematch`` does."""
    with scratch_matcher(config) as matcher:
        session = MatchingSession(matcher)
        for tracklet, _ in read_summaries(run):
            session.submit([tracklet])
        session.finish()
        found = {
            (t.camera_id, t.track_id): matcher.identity_of(t.camera_id, t.track_id)
            for t in read_tracklets(run)
        }
    return lambda camera, track: found.get((camera, track))


def people_crossing(gt: Path) -> tuple[int, int]:
    """(people in the ground truth, how many of them were seen in more than one camera)."""
    cameras: dict[int, set[str]] = defaultdict(set)
    for (camera, _), rows in read_ground_truth(gt).items():
        for person, _ in rows:
            cameras[person].add(camera)
    return len(cameras), sum(len(seen) > 1 for seen in cameras.values())


def verification_auc(
    run: Path, gt: Path, config: MatcherConfig, adapted_with: Sequence[str] | None = None
) -> dict[str, float]:
    """Pair-verification AUC on every pair of tracklets that is not a cannot-link, labelled
    by the ground truth (which no evidence model ever sees): raw appearance, camera-centred
    appearance, that plus attention consistency at the weight re-association fitted on
    pseudo-pairs (``adapted_with``: the model adapted with these overrides, which exports
    attention), and everything re-association weighs."""
    scorer = None
    if adapted_with is not None:
        tracklets, scorer = adapted_tracklets(run, config, adapted_with)
    else:
        tracklets = read_tracklets(run)
    oracle = oracle_identities(gt, run)
    truth = np.array([oracle(t.camera_id, t.track_id) for t in tracklets])
    raw = tracklet_vectors(tracklets)
    centred = camera_centred(raw, [t.camera_id for t in tracklets])
    negatives = cannot_link_pairs(tracklets, config)
    n = len(tracklets)
    i, j = np.triu_indices(n, 1)
    keep = ~np.isin(i * n + j, negatives[:, 0] * n + negatives[:, 1])
    i, j = i[keep], j[keep]
    pairs = np.stack([i, j], axis=1)
    same = truth[i] == truth[j]
    reps = representatives(tracklets) if scorer is not None else None
    inputs = AttentionInputs(scorer, *reps) if reps is not None else None
    result = associate(tracklets, config, attention=inputs)
    rate = result.calibration.pair_rate
    looks = AppearanceEvidence.fit(pair_distances(centred, negatives), rate).llr(
        pair_distances(centred, pairs)
    )
    row = {
        "pairs": len(pairs),
        "same": int(same.sum()),
        "appearance": auc(-pair_distances(raw, pairs), same),
        "camera-centred": auc(looks, same),
    }
    with_attention = looks
    if inputs is not None:
        consistency = AppearanceEvidence.fit(inputs.distances(negatives), rate)
        attention_llr = np.minimum(consistency.llr(inputs.distances(pairs)), LLR_CLIP)
        row["+ attention (w=1)"] = auc(looks + attention_llr, same)
        with_attention = looks + result.attention_weight * attention_llr
        row["+ attention (fitted w)"] = auc(with_attention, same)
        row["fitted w"] = result.attention_weight
    everything = with_attention
    if result.transit is not None:
        moves = Moves(result.transit, result.links, result.handover)
        everything = everything + transit_scores(tracklets, i, j, moves)
    if result.spatial is not None:
        everything = everything + np.array(
            [result.spatial.pair_llr.get((int(a), int(b)), 0.0) for a, b in pairs]
        )
    row["all evidence"] = auc(everything, same)
    return row


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--footage", choices=["synthetic", "vtest", *GAP_CROPS], default="synthetic"
    )
    parser.add_argument("--seeds", default="10,11,12", help="synthetic scene seeds")
    parser.add_argument("--people", type=int, default=12)
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--model", default=None, help="reid.model (default: ImageNet fallback)")
    parser.add_argument("--set", action="append", default=[], help="matcher.<key>=<value>")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--adapt", action="store_true", help="add a row after reid-train adapt on each footage"
    )
    global ARGS
    ARGS = parser.parse_args()
    extra = [f"reid.model={ARGS.model}"] if ARGS.model else []
    if ARGS.footage.startswith("vtest"):
        footages = {ARGS.footage: vtest_footage(ARGS.footage)}
    else:
        footages = {
            f"seed {s}": synthetic_footage(s, ARGS.people, ARGS.cameras, ARGS.duration)
            for s in (int(v) for v in ARGS.seeds.split(","))
        }
    linkers: dict[str, Linker] = {
        "never link (floor)": never_link,
        "perfect link (ceiling)": None,  # type: ignore[dict-item]
        "greedy online (before)": greedy,
        "re-association, appearance only": appearance_only,
        "re-association, all evidence (default)": reassociate,
        "pipeline now (online + re-association in Redis)": pipeline_default,
    }
    if ARGS.adapt:
        linkers["after label-free adaptation (re-embedded)"] = adapted
    table = Table(title=f"MTMC, {ARGS.footage}, model {ARGS.model or 'ImageNet fallback'}")
    columns = ("footage", "linker", "identities", "IDF1", "IDP", "IDR", "vs floor")
    for col in (*columns, "x-cam links", "right", "pure ids"):
        table.add_column(col, justify="right")
    idf1: dict[str, list[float]] = {name: [] for name in linkers}
    aucs: dict[str, dict[str, float]] = {}
    crossing: dict[str, tuple[int, int]] = {}
    for name, (cams, gt, folder) in footages.items():
        crossing[name] = people_crossing(gt)
        tag = (ARGS.model or "fallback").replace("/", "_")
        run = run_once(cams, folder / f"run-{tag}", extra + ["redis.namespace=bench-mtmc"])
        pipeline_config = load_pipeline_config(cams, [f"matcher.{kv}" for kv in ARGS.set])
        tracks = run_tracks(run)
        person_of = only_tracks(tracks, oracle_identities(gt, run))
        for linker_name, linker in linkers.items():
            if linker is None:
                identity_of = person_of
            else:
                identity_of = linker(run, pipeline_config.matcher)
            pred = write_mtmc(run, identity_of, run / f"mtmc-{len(idf1[linker_name])}.txt")
            ids = json.loads(pred.with_name("ids.json").read_text())["identities"]
            scores = evaluate_mtmc(gt, pred)
            idf1[linker_name].append(scores["idf1"])
            quality = link_quality(tracks, identity_of, person_of)
            table.add_row(
                name,
                linker_name,
                str(len(ids)),
                *(f"{scores[k]:.3f}" for k in ("idf1", "idp", "idr")),
                f"{scores['idf1'] - idf1['never link (floor)'][-1]:+.3f}",
                str(quality.links),
                f"{quality.correct} ({quality.precision:.0%})",
                f"{quality.purity:.0%}",
            )
        table.add_section()
        aucs[name] = verification_auc(run, gt, pipeline_config.matcher)
        if ARGS.adapt:
            aucs[f"{name}, adapted"] = verification_auc(
                run, gt, pipeline_config.matcher, adapted_with=()
            )
    console.print(table)
    for name, (people, crossed) in crossing.items():
        console.print(f"{name}: {people} people in the ground truth, {crossed} crossed cameras")
    pairs = Table(title="pair-verification AUC (pairs that are not cannot-links, GT labels)")
    columns = (
        "appearance",
        "camera-centred",
        "+ attention (w=1)",
        "+ attention (fitted w)",
        "fitted w",
        "all evidence",
    )
    for col in ("footage", "pairs", "same-person", *columns):
        pairs.add_column(col, justify="right")
    for name, row in aucs.items():
        pairs.add_row(
            name,
            str(row["pairs"]),
            str(row["same"]),
            *(f"{row[k]:.3f}" if k in row else "-" for k in columns),
        )
    console.print(pairs)
    floor = idf1["never link (floor)"]
    for name, values in idf1.items():
        gains = [v - f for v, f in zip(values, floor, strict=True)]
        console.print(
            f"{name:>48}: mean IDF1 {statistics.mean(values):.3f}, vs floor "
            f"{statistics.mean(gains):+.3f} (min {min(gains):+.3f}) over {len(values)}"
        )


if __name__ == "__main__":
    main()
