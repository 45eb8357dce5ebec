"""The wheel as a user gets it: built from the working tree, installed into a fresh
virtualenv and used from a folder outside the checkout.

Nothing is downloaded: the wheel is built with this virtualenv's setuptools, and the new
virtualenv borrows this one's third-party packages through a ``.pth`` line naming its
site-packages. A folder named that way does not have its own ``.pth`` files run, so the
editable install's finder stays out and every project module comes from the wheel (checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reid_demo.scene import generate_scene
from tests.pipeline.servers import _free_port

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["importlinter"]["root_packages"]  # every project package
SCRIPTS = PYPROJECT["project"]["scripts"]
TIMEOUT_S = 300
# the checkout out of sight: no PYTHONPATH, no user site-packages
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
ENV["PYTHONNOUSERSITE"] = "1"
# run in the new virtualenv: where each project package is imported from, and the hooks
PROBE = """
import importlib, json, sys
modules = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
print(json.dumps({"modules": modules, "hooks": [repr(hook) for hook in sys.meta_path]}))
"""
# the shipped adaptation defaults (package data), cut down to seconds
TINY_ADAPT = (
    "rounds=1",
    "epochs_per_round=1",
    "train.model.pretrained=null",
    "train.model.input_size=[64,32]",
    "train.model.hidden_dim=32",
    "train.optim.batch_size=8",
    "holdout=0",  # a 12 s scene holds too little to validate on: train and adopt unchecked
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def execute(*args: str | Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to the end; a failure shows its output."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, **options)
    assert done.returncode == 0, f"{done.args}:\n{done.stdout}\n{done.stderr}"
    return done


@dataclass(frozen=True)
class Installed:
    wheel: Path
    source: Path  # the working tree's files the wheel was built from
    site: Path  # the new virtualenv's site-packages
    bin: Path  # its scripts
    work: Path  # outside the checkout: every command runs here

    def start(self, command: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.bin / command), *args],
            cwd=self.work,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return execute(self.bin / command, *args, cwd=self.work, env=ENV)


def copy_working_tree(to: Path) -> Path:
    """The files git would commit (tracked and new, not ignored): no build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # not deleted in the working tree
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)
    return to


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know the working tree's files")
    base = tmp_path_factory.mktemp("wheel")
    source = copy_working_tree(base / "source")  # builds leave nothing in the checkout
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir")
    offline = ("--no-deps", "--no-index")
    dist, venv = base / "dist", base / "venv"
    execute(*pip, "wheel", *offline, "--no-build-isolation", "-w", dist, source)
    (wheel,) = dist.glob("*.whl")
    execute(sys.executable, "-m", "venv", "--without-pip", venv)
    names = {"base": str(venv), "platbase": str(venv)}
    site = Path(sysconfig.get_path("purelib", "venv", vars=names))
    borrowed = dict.fromkeys(sysconfig.get_paths()[kind] for kind in ("purelib", "platlib"))
    (site / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    execute(*pip, "--python", venv / "bin" / "python", "install", *offline, wheel)
    (base / "work").mkdir()
    return Installed(wheel, source, site, venv / "bin", base / "work")


def test_the_wheel_holds_every_package_with_its_data_files(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    shipped = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    files = {
        str(path.relative_to(installed.source))
        for package in PACKAGES
        for path in (installed.source / package).rglob("*")
        if path.is_file()
    }
    assert shipped == files  # every module and data file of every package; nothing else
    data = {Path(name).suffix for name in files if not name.endswith(".py")}
    assert data >= {".lua", ".html", ".yaml"}  # Redis scripts, review page, adapt defaults


def test_console_scripts_and_modules_come_from_the_wheel(installed: Installed) -> None:
    probe = installed.start("python", "-c", PROBE, *PACKAGES)
    running = {name: installed.start(name, "--help") for name in SCRIPTS}  # all at once
    for name, process in running.items():
        out, err = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0 and "Usage" in out, f"{name} --help:\n{out}\n{err}"
    out, err = probe.communicate(timeout=TIMEOUT_S)
    assert probe.returncode == 0, err
    found = json.loads(out)
    assert all(Path(f).is_relative_to(installed.site) for f in found["modules"].values())
    assert not any("editable" in hook.lower() for hook in found["hooks"])


def test_a_run_an_adaptation_and_the_review_page_outside_the_checkout(
    installed: Installed, redis_url: str, namespace: str
) -> None:
    cameras = generate_scene(installed.work / "scene", people=3, cameras=2, duration=12, seed=5)
    installed.run(
        "reid-pipeline",
        *("--cameras", str(cameras), "--redis", redis_url, "--out", "run"),
        *("--max-frames", "100", "--no-live-table", "--set", f"redis.namespace={namespace}"),
    )
    summary = json.loads((installed.work / "run" / "summary.json").read_text())
    # each decision is committed by the matcher's Lua scripts (package data)
    assert summary["frames"] == 2 * 100 and summary["decisions"]["new_identity"] >= 2
    port = _free_port()
    server = installed.start(
        "reid-query",
        *("serve", "--port", str(port), "--redis", redis_url, "--namespace", namespace),
        *("--no-auth", "--crops-root", "run"),
    )
    try:  # the server starts while the model adapts
        installed.run(
            "reid-train",
            *("adapt", "run", "--out", "adapted"),
            *(item for setting in TINY_ADAPT for item in ("--set", setting)),
        )
        page = review_page(f"http://127.0.0.1:{port}/", server)
    finally:
        server.kill()
        server.communicate()
    shipped = (installed.source / "pipeline/query/static/review.html").read_text()
    title = re.search("<title>.*</title>", shipped)
    assert title and title[0] in page  # the page is the shipped file, filled in per server
    report = json.loads((installed.work / "adapted" / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0]
    assert (installed.work / "adapted" / "model.onnx").is_file()


def review_page(url: str, server: subprocess.Popen[str]) -> str:
    """The page at ``url`` once ``server`` answers."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError as exc:  # not listening yet
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                output = server.communicate()
                raise AssertionError(f"reid-query serve never answered: {output}") from exc
            time.sleep(0.2)
