"""deploy/ cannot run here (no container engine), so check what can be checked: every file
parses, every container command is a real command with real options, and the shipped
cams.yaml validates."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
import yaml

from pipeline.cli import app as pipeline_app
from pipeline.config import PipelineConfig
from pipeline.query.cli import app as query_app
from reid.config import validate_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROGRAMS = {"reid-pipeline": pipeline_app, "reid-query": query_app}


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.split("#")[0].strip()
    return values


def substitute(text: str) -> str:
    env = env_example()
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1], m[2] or ""), text)


def _bytes(size: str) -> int:
    """'3gb' (Redis) or '4Gi' (Kubernetes) -> bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", size).groups()  # type: ignore[union-attr]
    scale = {"": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "ki": 1024, "mi": 1024**2}
    return int(number) * {**scale, "gi": 1024**3}[unit.lower()]


def parse_command(program: str, args: list[str]) -> None:
    """Parse ``args`` with the real CLI; unknown commands or options raise click errors."""
    command = typer.main.get_command(PROGRAMS[program])
    ctx = (
        command.make_context(program, list(args), resilient_parsing=False)
        if not (args and isinstance(command, click.Group) and args[0] in command.commands)
        else None
    )
    if ctx is None:
        sub = command.commands[args[0]]
        sub.make_context(args[0], list(args[1:]))


def k8s_containers() -> list[dict]:
    containers = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            containers += [{**c, "_file": path.name} for c in spec.get("containers", [])]
    return containers


def test_every_file_parses() -> None:
    for path in [*DEPLOY.glob("k8s/*.yaml"), DEPLOY / "compose.yaml", DEPLOY / "config/cams.yaml"]:
        assert list(yaml.safe_load_all(path.read_text())), path
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.gpu"):
        text = (DEPLOY / dockerfile).read_text()
        assert "USER reid" in text and "HEALTHCHECK" in text  # non-root, health-checked
    assert (DEPLOY / "entrypoint-gpu.sh").stat().st_mode & 0o111


def test_shipped_cams_yaml_validates_and_matches_the_configmap() -> None:
    raw = yaml.safe_load((DEPLOY / "config/cams.yaml").read_text())
    config = validate_settings(raw, PipelineConfig, "deploy/config/cams.yaml")
    configmap = yaml.safe_load((DEPLOY / "k8s/configmap.yaml").read_text())
    assert yaml.safe_load(configmap["data"]["cams.yaml"]) == raw
    groups = {"WORKER_A_CAMERAS", "WORKER_B_CAMERAS"}
    env = env_example()
    named = {c for g in groups for c in env[g].split(",")}
    assert named == {c.id for c in config.cameras}  # every camera in exactly one group
    assert config.metrics_port == 9108 and config.metrics_host == "0.0.0.0"  # scraped


@pytest.mark.parametrize("container", k8s_containers(), ids=lambda c: f"{c['_file']}:{c['name']}")
def test_k8s_commands_exist_and_probes_use_declared_ports(container: dict) -> None:
    if container["image"].startswith("redis"):
        args = container["args"]
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        maxmemory = _bytes(args[args.index("--maxmemory") + 1])
        limit = _bytes(container["resources"]["limits"]["memory"])
        assert maxmemory <= 0.8 * limit  # headroom for the AOF rewrite's fork
        return
    program = container.get("command", ["reid-pipeline"])[0]
    parse_command(program, container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] in ports
    env = {e["name"] for e in container.get("env", [])}
    assert "REID_REDIS_URL" in env


def test_workers_request_gpus_and_cli_reads_the_env_names() -> None:
    workers = [c for c in k8s_containers() if c["_file"] == "pipeline-workers.yaml"]
    assert workers and all(c["resources"]["limits"]["nvidia.com/gpu"] == 1 for c in workers)
    run = typer.main.get_command(pipeline_app)
    assert any(p.envvar == "REID_REDIS_URL" for p in run.params)
    serve = typer.main.get_command(query_app).commands["serve"]
    assert any(p.envvar == "REID_QUERY_TOKEN" for p in serve.params)


def test_compose_services_run_real_commands() -> None:
    compose = yaml.safe_load(substitute((DEPLOY / "compose.yaml").read_text()))
    services = compose["services"]
    assert {"redis", "worker-a", "worker-b", "matcher", "query"} <= set(services)
    assert "--requirepass" in services["redis"]["command"]
    assert "--appendonly" in services["redis"]["command"]
    command = services["redis"]["command"]
    assert command[command.index("--maxmemory") + 1] and "noeviction" in command
    for name, service in services.items():
        if name == "redis":
            continue
        program = service.get("entrypoint", ["reid-pipeline"])[0]
        parse_command(program, service["command"])
        assert "REID_REDIS_URL" in service["environment"]


def test_each_camera_group_writes_its_own_folder_and_gets_time_to_stop() -> None:
    """Two groups writing one folder used to move each other's runs aside and crash-loop on
    EBUSY; compose's default 10 s of grace was below a run's shutdown."""
    compose = yaml.safe_load(substitute((DEPLOY / "compose.yaml").read_text()))
    workers = [s for name, s in compose["services"].items() if name.startswith("worker")]
    outs = [s["command"][s["command"].index("--out") + 1] for s in workers]
    assert len(workers) >= 2 and len(set(outs)) == len(outs)
    grace = compose["x-app"]["stop_grace_period"]
    assert int(grace.rstrip("s")) >= 30
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "StatefulSet"):
                pod = doc["spec"]["template"]["spec"]
                assert pod.get("terminationGracePeriodSeconds", 30) >= 30, path.name
                for c in pod["containers"]:
                    if "--publish-only" in c.get("args", []):
                        assert "--out" in c["args"], path.name
