"""The pseudo ground truth of vtest.avi: who is who on the full frame, checked by eye.

vtest.avi has no annotation. The benchmarks' ground truth is made once, by running the
demo's detector and tracker on the full frame (768 px, more complete than the demo's
416 px), then correcting what a tracker gets wrong, by eye:

- things boxed as people (:data:`NOT_PEOPLE`) are dropped;
- a tracker breaks one person into several tracks (occlusion by the sign and by other
  people). Candidate fragments are pairs of a track end and a track start that are each
  other's nearest (within 4 s, foot points within ``0.6 + 0.12 * frames`` box heights);
  a contact sheet shows each candidate (two crops of each track) and every candidate is
  joined except those rejected by eye (:data:`REJECTED`, by the frames where the two
  tracks end and begin).

Without the joins, a right stitch of one person's broken tracks counted as a wrong link.
The result is shipped (``benchmarks/data/vtest_people.txt``: ``frame person x1 y1 x2 y2``,
full-frame pixels, frames 1-based in the video, one in two) so that every machine scores
against the same people whatever its detector's last digits; this module remakes it and
the contact sheet:

    .venv/bin/python -m benchmarks.vtest_people --sheet /tmp/fragments.png
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ROOT / "benchmarks" / "data" / "vtest_people.txt"
DEMO_CAMS = ROOT / "configs/cams/vtest_demo.yaml"
MAX_GAP_FRAMES = 40

# Things the full-frame detector boxes as people, checked by eye once: a full-frame track
# whose median box centre lies in one of these (x1, y1, x2, y2) regions is not a person.
NOT_PEOPLE = {"yellow jacket lying on the grass, boxed for the whole video": (50, 480, 180, 570)}

# Candidate fragments that are not one person, checked by eye on the contact sheet
# (2026-12-04): (frame where the first track ends, frame where the second begins).
REJECTED = {
    (119, 135): "light-blue hooded jacket, then a striped jumper",
    (403, 425): "a man in a dark jacket, then a woman in red",
    (519, 539): "a man, then a blonde woman in a black coat",
    (659, 693): "a blue jacket, then a dark coat",
    (687, 691): "the first track itself changes person (red-navy jacket to a dark coat)",
    (105, 141): "hidden behind the sign for the whole first track: cannot tell",
    (483, 507): "2.5 box heights apart, both in dark clothes: cannot tell",
}

Row = tuple[int, str, list[float]]  # frame, track, (x1, y1, x2, y2)


def full_frame_run(cache: Path) -> Path:
    """The full-frame run's ``boxes.txt`` (the pipeline is run once into ``cache``)."""
    from benchmarks.mtmc import run_once  # the benchmark's cached pipeline run
    from reid_demo.vtest import fetch_vtest

    video = fetch_vtest(ROOT / "data")
    if video is None:
        raise SystemExit("vtest.avi could not be fetched (needs apt-get)")
    full = yaml.safe_load(DEMO_CAMS.read_text())
    full["cameras"] = [{"id": "full", "source": str(video.resolve()), "fps": 5}]
    full["detector"] = {**full["detector"], "imgsz": 768, "conf": 0.25}
    full["matcher"] = {k: v for k, v in full["matcher"].items() if k != "overlapping"}
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "cams.yaml").write_text(yaml.safe_dump(full))
    run = run_once(cache / "cams.yaml", cache / "run", ["redis.namespace=bench-mtmc-gt"])
    return run / "boxes.txt"


def read_rows(boxes: Path) -> list[Row]:
    rows = []
    for line in boxes.read_text().splitlines():
        _, frame, track, *box = line.split()
        rows.append((int(frame), track, [float(v) for v in box]))
    return rows


def people_only(rows: list[Row]) -> list[Row]:
    """``rows`` without the tracks that are one of :data:`NOT_PEOPLE`."""
    centres: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, track, (x1, y1, x2, y2) in rows:
        centres[track].append(((x1 + x2) / 2, (y1 + y2) / 2))
    things = set()
    for track, points in centres.items():
        x, y = np.median(np.array(points), axis=0)
        if any(a <= x <= b and top <= y <= bottom for a, top, b, bottom in NOT_PEOPLE.values()):
            things.add(track)
    return [row for row in rows if row[1] not in things]


def fragments(rows: list[Row]) -> list[tuple[str, str, int, int]]:
    """Candidate (track a, track b, frame a ends, frame b begins): a's end and b's start
    are each other's nearest within :data:`MAX_GAP_FRAMES`."""
    tracks: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    for frame, track, box in rows:
        tracks[track].append((frame, box))
    ends = {t: max(v) for t, v in tracks.items()}
    starts = {t: min(v) for t, v in tracks.items()}
    scored = []
    for a, (fa, ba) in ends.items():
        for b, (fb, bb) in starts.items():
            gap = fb - fa
            if a == b or not 1 <= gap <= MAX_GAP_FRAMES:
                continue
            foot_a = np.array([(ba[0] + ba[2]) / 2, ba[3]])
            foot_b = np.array([(bb[0] + bb[2]) / 2, bb[3]])
            height = (ba[3] - ba[1] + bb[3] - bb[1]) / 2
            d = float(np.linalg.norm(foot_a - foot_b) / height)
            if d <= 0.6 + 0.12 * gap:
                scored.append((d, a, b, fa, fb))
    best_end: dict[str, tuple] = {}
    best_start: dict[str, tuple] = {}
    for item in scored:
        if item[1] not in best_end or item < best_end[item[1]]:
            best_end[item[1]] = item
        if item[2] not in best_start or item < best_start[item[2]]:
            best_start[item[2]] = item
    mutual = [item for item in best_end.values() if best_start[item[2]] == item]
    return [(a, b, fa, fb) for _, a, b, fa, fb in sorted(mutual, key=lambda i: i[3])]


def joined(rows: list[Row]) -> list[Row]:
    """``rows`` with each accepted fragment's track renamed to its person's first track."""
    parent: dict[str, str] = {}

    def root(track: str) -> str:
        while parent.get(track, track) != track:
            track = parent[track]
        return track

    for a, b, fa, fb in fragments(rows):
        if (fa, fb) not in REJECTED:
            parent[root(b)] = root(a)
    return [(frame, root(track), box) for frame, track, box in rows]


def contact_sheet(video: Path, rows: list[Row], out: Path) -> None:
    """One line per candidate fragment: two crops of the first track (middle, end) and two
    of the second (start, middle), labelled with the frames that :data:`REJECTED` uses."""
    tracks: dict[str, list[tuple[int, list[float]]]] = defaultdict(list)
    for frame, track, box in rows:
        tracks[track].append((frame, box))
    for boxes in tracks.values():
        boxes.sort()
    capture = cv2.VideoCapture(str(video))

    def crop(frame: int, box: list[float]) -> np.ndarray:
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame - 1)
        _, image = capture.read()
        x1, y1, x2, y2 = (int(v) for v in box)
        return cv2.resize(image[max(y1 - 10, 0) : y2 + 10, max(x1 - 10, 0) : x2 + 10], (60, 120))

    lines = []
    for a, b, fa, fb in fragments(rows):
        ta, tb = tracks[a], tracks[b]
        picks = [ta[len(ta) // 2], ta[-1], tb[0], tb[len(tb) // 2]]
        label = np.full((120, 110, 3), 255, np.uint8)
        verdict = "rejected" if (fa, fb) in REJECTED else "joined"
        for n, text in enumerate((f"{fa}->{fb}", verdict)):
            cv2.putText(label, text, (2, 30 + 30 * n), 0, 0.45, (0, 0, 0), 1)
        lines.append(np.hstack([label, *(crop(f, box) for f, box in picks)]))
    cv2.imwrite(str(out), np.vstack(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench-mtmc" / "vtest-full")
    parser.add_argument("--sheet", type=Path, help="also write the candidates' contact sheet")
    args = parser.parse_args()
    rows = people_only(read_rows(full_frame_run(args.cache)))
    if args.sheet:
        contact_sheet(ROOT / "data" / "vtest.avi", rows, args.sheet)
    people = joined(rows)
    PEOPLE.parent.mkdir(parents=True, exist_ok=True)
    PEOPLE.write_text(
        "".join(f"{f} {t} {' '.join(f'{v:.1f}' for v in box)}\n" for f, t, box in people)
    )
    print(f"{len({t for _, t, _ in rows})} tracks, {len({t for _, t, _ in people})} people")


if __name__ == "__main__":
    main()
