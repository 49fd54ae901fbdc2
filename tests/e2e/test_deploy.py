"""hangar's own image and its Kubernetes manifests: rendered, validated, built, run and stopped.

Every Kustomize overlay is rendered with `kubectl kustomize` and each object checked against the
Kubernetes schemas of the versions docs/scaling.md names. The image is built on the real Docker
engine from the Dockerfile, offline: the base is the local Python image `.ci/engines` imports,
with pip added, and the packages come from a wheelhouse built on the host (no registry is
reachable here). It then runs as it would in a cluster: read-only root, non-root user, no
capabilities, its writable directories on tmpfs, a subprocess provider inside the image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import REPO, free_port, require, wait_until

KUSTOMIZE = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSIONS = [
    "1.29.0",
    "1.30.0",
    "1.31.0",
    "1.32.0",
    "1.33.0",
    "1.34.0",
    "1.35.0",
]  # docs/scaling.md
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # CRDs: no schema in kubernetes-validate

CACHE = REPO / ".cache" / "image"
WHEELS = CACHE / "wheels"  # the image's packages, built on the host (.dockerignore lets it in)
LOCAL_PYTHON = "hangar-test/python-mcp:latest"  # built by .ci/engines from the host's python3.11
BASE = "hangar-test/python-base:latest"  # ... with pip, which the Dockerfile's build stage uses
IMAGE = "hangar-test/hangar:latest"
LABEL = "io.hangar.test=deploy"  # on every container this module starts, to find leftovers
UID = 10001  # the Dockerfile's USER
TOKEN = "deploy-test-token"
SESSION_KEY = "11" * 32
BUILD_TIMEOUT_S = 600  # a cold build on a busy 2-core machine: the wheelhouse, the base, the image
STOP_WITHIN_S = 5.0

CONFIG = {"providers": {"time": {"command": "${HANGAR_PYTHON}", "args": ["-m", "mcp_server_time"]}}}


# --- the manifests --------------------------------------------------------------------------


def kustomize(overlay: str) -> list[dict[str, Any]]:
    require(shutil.which("kubectl") is not None, "kubectl is not installed")
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_objects_valid_for_the_kubernetes_versions_claimed(
    overlay: str, version: str
) -> None:
    import kubernetes_validate

    objects = kustomize(overlay)
    problems = []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)  # strict: unknown fields too
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_runs_hangar_locked_down_with_probes_and_a_shared_session_key(overlay: str) -> None:
    objects = kustomize(overlay)
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    security = container["securityContext"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    probes = {
        name: container[f"{name}Probe"]["httpGet"]["path"] for name in ("startup", "readiness", "liveness")
    }
    assert probes == {"startup": "/health/startup", "readiness": "/health/ready", "liveness": "/health/live"}
    assert container["lifecycle"]["preStop"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    key = next(e for e in container["env"] if e["name"] == "HANGAR_SESSION_KEY")
    assert key["valueFrom"]["secretKeyRef"]["name"] == "hangar-secrets"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/run/hangar", "/tmp"} <= mounts  # the runtime dir and tmp are writable volumes
    (config_map,) = by_kind(objects, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["hangar.yaml"])["providers"]
    (service,) = by_kind(objects, "Service")
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    for monitor in by_kind(objects, "ServiceMonitor"):  # scrapes a port the Service has
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
            p["name"] for p in service["spec"]["ports"]
        }
    if deployment["spec"]["replicas"] > 1:  # several replicas: a budget for drains, an autoscaler on CPU
        (budget,) = by_kind(objects, "PodDisruptionBudget")
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (autoscaler,) = by_kind(objects, "HorizontalPodAutoscaler")
        assert autoscaler["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert autoscaler["spec"]["minReplicas"] == deployment["spec"]["replicas"]


# --- the image ------------------------------------------------------------------------------


def docker(*args: str, timeout_s: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr[-2000:]}"
    return done


def build_wheelhouse() -> None:
    """The image's dependencies as wheels for the base's Python (the host's python3.11)."""
    stamp = WHEELS / ".stamp"
    want = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(WHEELS)]
    subprocess.run(
        [*command, ".[examples]", "setuptools>=68"],  # setuptools: the build backend, for the image's pip
        cwd=REPO,
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    for own in WHEELS.glob("hangar-*.whl"):
        own.unlink()  # the image installs hangar from its sources, never from a stale wheel
    stamp.write_text(want)


def build_base() -> None:
    """The local Python image with pip (from this venv) where the Dockerfile expects it."""
    import pip

    context = CACHE / "base"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copytree(Path(pip.__file__).parent, context / "pip", ignore=shutil.ignore_patterns("__pycache__"))
    (context / "Dockerfile").write_text(
        f"FROM {LOCAL_PYTHON}\n"
        "COPY pip /usr/local/lib/python3.11/dist-packages/pip\n"
        "ENV PYTHONPATH=\n"  # the test image's mcp SDK is not the base's
        'CMD ["python3"]\n'
    )
    docker("build", "--quiet", "--network", "none", "--tag", BASE, str(context), timeout_s=BUILD_TIMEOUT_S)


@pytest.fixture(scope="module")
def image() -> str:
    require(shutil.which("docker") is not None, "docker is not installed")
    require(
        docker("info", check=False).returncode == 0,
        "the Docker engine is not running (`make test` starts it)",
    )
    require(
        docker("image", "inspect", LOCAL_PYTHON, check=False).returncode == 0,
        f"{LOCAL_PYTHON} is missing (`make test` builds it with .ci/engines)",
    )
    build_wheelhouse()
    build_base()
    docker(
        "build", "--quiet", "--network", "none", "--tag", IMAGE,
        "--build-arg", f"BASE={BASE}", "--build-arg", f"WHEELHOUSE={WHEELS.relative_to(REPO)}",
        "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "EXTRAS=examples", str(REPO),
        timeout_s=BUILD_TIMEOUT_S,
    )  # fmt: skip
    return IMAGE


def ready(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


def inspect(name: str) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(docker("inspect", name).stdout)[0]
    return state


@pytest.fixture
def run_hangar(image: str, tmp_path: Path) -> Iterator[Any]:
    """Start the image as a cluster would: read-only root, non-root, no capabilities, tmpfs."""
    config = tmp_path / "hangar.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    config.chmod(0o644)
    started: list[str] = []

    def run(port: int) -> str:
        name = f"hangar-deploy-test-{port}"
        docker(
            "run", "--detach", "--name", name, "--label", LABEL,
            "--network", "host",  # the engine has no bridge here; hangar binds loopback only
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            # owned by root, as a Kubernetes emptyDir is: hangar makes its private directory inside
            "--tmpfs", "/run/hangar", "--tmpfs", "/tmp", "--tmpfs", "/var/lib/hangar",
            "--health-interval", "1s", "--health-start-period", "30s",
            "--env", "HANGAR_HTTP_HOST=127.0.0.1", "--env", f"HANGAR_HTTP_PORT={port}",
            "--env", f"HANGAR_TOKENS={TOKEN}", "--env", f"HANGAR_SESSION_KEY={SESSION_KEY}",
            "--volume", f"{config}:/etc/hangar/hangar.yaml:ro",
            image,
        )  # fmt: skip
        started.append(name)
        wait_until(lambda: ready(port), timeout_s=60, what=f"{name} ready")
        return name

    yield run
    for name in started:
        docker("rm", "--force", name, check=False)
    left = docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}").stdout.split()
    assert not left, f"containers left behind: {left}"


def headers(session: str | None = None) -> dict[str, str]:
    given = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    return {**given, "Mcp-Session-Id": session} if session else given


@pytest.mark.anyio
@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
async def test_the_image_serves_mcp_as_a_non_root_user_on_a_read_only_root(run_hangar: Any) -> None:
    port = free_port()
    name = run_hangar(port)
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http_client,
        Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http_client), mode="legacy")
        as client,
    ):  # fmt: skip
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "time__get_current_time" in names
        now = await client.call_tool(
            "time__get_current_time", {"timezone": "UTC"}
        )  # a subprocess in the image
        assert not now.is_error and "UTC" in now.content[0].text  # type: ignore[union-attr]
    root = psutil.Process(inspect(name)["State"]["Pid"])
    tree = [root, *root.children(recursive=True)]
    assert len(tree) > 3 and {p.uids().effective for p in tree} == {UID}  # root, router, workers, provider
    wait_until(lambda: inspect(name)["State"]["Health"]["Status"] == "healthy", 30, "the HEALTHCHECK passes")


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_replicas_sharing_the_session_key_take_up_each_others_sessions(run_hangar: Any) -> None:
    first, second = free_port(), free_port()
    run_hangar(first)
    run_hangar(second)
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    opened = httpx2.post(f"http://127.0.0.1:{first}/mcp", json=initialize, headers=headers(), timeout=10)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    listed = httpx2.post(
        f"http://127.0.0.1:{second}/mcp",  # another replica, which has never seen this session
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={**headers(session), "Mcp-Protocol-Version": "2025-11-25"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    assert "hangar_list" in {tool["name"] for tool in json.loads(listed.text)["result"]["tools"]}
    forged = httpx2.post(
        f"http://127.0.0.1:{second}/mcp",
        json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        headers={
            **headers(session[:-4] + ("BBBB" if session.endswith("AAAA") else "AAAA")),
            "Mcp-Protocol-Version": "2025-11-25",
        },
        timeout=10,
    )
    assert forged.status_code == 404  # an id the shared key did not seal is no session


@pytest.mark.timeout(BUILD_TIMEOUT_S + 120)
def test_docker_stop_ends_hangar_cleanly_within_seconds(run_hangar: Any) -> None:
    port = free_port()
    name = run_hangar(port)
    started = time.monotonic()
    docker("stop", "--time", "30", name)  # SIGTERM to hangar as PID 1; SIGKILL only after 30 s
    elapsed_s = time.monotonic() - started
    state = inspect(name)["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"], state
    assert elapsed_s < STOP_WITHIN_S, f"docker stop took {elapsed_s:.1f} s"
    docker("rm", name)
    assert not docker("ps", "--all", "--quiet", "--filter", f"name={name}").stdout.strip()
