"""docker-compose.yml and the Dockerfile, checked without a Docker engine: structure, and every service command
parsed by the very parsers (Locust's, llmload's) that will run it in the container."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from locust.argument_parser import get_parser

import llmload.plugin  # noqa: F401  (registers llmload's Locust options, as the locustfile import does)
from llmload.cli import build_parser
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def expand_defaults(args: list[str]) -> list[str]:
    """What compose substitutes when the variables are unset: ``${NAME:-default}`` -> ``default``."""
    return [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in args]


LLMLOAD_SERVICES = {"emulator", "master", "worker"}


def test_services_share_one_image_and_build() -> None:
    services = compose()["services"]
    assert set(services) == LLMLOAD_SERVICES | {"prometheus"}
    for service in (services[name] for name in LLMLOAD_SERVICES):
        assert service["image"] == "llmload:latest" and service["build"] == "."
        assert "OPENAI_API_KEY" in service["environment"]
        assert all("=" not in entry for entry in service["environment"]), "secrets must pass through, never inline"


def test_master_and_workers_run_the_chat_locustfile() -> None:
    services = compose()["services"]
    master = expand_defaults(services["master"]["command"])
    worker = expand_defaults(services["worker"]["command"])
    for command in (master, worker):
        assert command[:3] == ["locust", "-f", "locustfiles/chat.py"]
        assert (REPO / command[2]).is_file()
    assert "--master" in master and "--worker" in worker
    assert "worker" not in services["worker"].get("ports", [])
    master_opts = get_parser().parse_args(master[1:])
    worker_opts = get_parser().parse_args(worker[1:])
    assert master_opts.master and master_opts.web_host == "0.0.0.0"
    assert master_opts.host == "http://emulator:8000/v1" and master_opts.provider == "openai"
    assert worker_opts.worker and worker_opts.master_host == "master"
    assert worker_opts.master_port == master_opts.master_bind_port == 5557
    # The UI binds 0.0.0.0 only inside the container; the host publishes it on loopback.
    assert services["master"]["ports"] == ["127.0.0.1:8089:8089"]
    assert services["worker"]["depends_on"] == ["master"]


def test_emulator_service_serves_every_protocol_on_the_compose_network() -> None:
    emulator = compose()["services"]["emulator"]
    command = expand_defaults(emulator["command"])
    assert command[0] == "llmload"
    args = build_parser().parse_args(command[1:])
    assert args.command == "emulate" and args.protocol == "all" and args.host == "0.0.0.0" and args.port == 8000
    assert "ports" not in emulator, "the emulator stays on the compose network"
    assert "http://emulator:8000" in " ".join(compose()["services"]["master"]["command"])


def test_dockerfile_copies_what_the_services_need() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.MULTILINE)
    sources = [src for line in copied for src in line.split()]
    for needed in ("requirements.lock", "llmload", "locustfiles", "config", "pyproject.toml"):
        assert needed in sources
        assert (REPO / needed).exists()
    assert "pip install -r requirements.lock" in dockerfile
    assert re.search(r"^USER (?!root)\w+", dockerfile, flags=re.MULTILINE)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and "reports/" in ignored


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """``docker compose config`` when the compose plugin is installed; the YAML structure checks above otherwise."""
    docker = shutil.which("docker")
    has_compose = docker is not None and subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True
    ).returncode == 0
    if has_compose:
        assert docker is not None
        result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    # Without the plugin, the anchors must still resolve: every llmload service got the shared keys.
    services = compose()["services"]
    for name in LLMLOAD_SERVICES:
        assert {"build", "image", "environment", "command"} <= set(services[name])


def test_prometheus_service_scrapes_the_masters_metrics() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"]), "pin the Prometheus version"
    assert "build" not in prometheus and "environment" not in prometheus, "no llmload image, no provider secrets"
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]
    assert prometheus["depends_on"] == ["master"]
    # The mounted file is config/prometheus.yml, and the command points Prometheus at it.
    mounts = dict(v.removesuffix(":ro").split(":", 1) for v in prometheus["volumes"])
    container_path = mounts["./config/prometheus.yml"]
    assert f"--config.file={container_path}" in prometheus["command"]
    config = yaml.safe_load((REPO / "config" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"  # served by llmload.monitor_web on the web UI
    (static,) = job["static_configs"]
    # The target is the master service on the port its web UI (which serves /metrics) listens on.
    master_opts = get_parser().parse_args(expand_defaults(services["master"]["command"])[1:])
    assert not master_opts.headless and not master_opts.web_login, "a headless or login-guarded UI has no open /metrics"
    assert static["targets"] == [f"master:{master_opts.web_port}"]
    assert f"127.0.0.1:{master_opts.web_port}:{master_opts.web_port}" in services["master"]["ports"]
