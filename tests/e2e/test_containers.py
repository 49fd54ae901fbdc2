"""Container providers on real engines (Docker and Podman, started by `make test`): lifecycle,
isolation, crashes of the container, the worker and the root, and no container left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from tests.conftest import (
    async_wait_until,
    fixture_provider,
    require,
    running_hangar,
    start_serve,
    wait_until,
    worker_node,
)

pytestmark = pytest.mark.anyio

IMAGE = "hangar-test/python-mcp:latest"  # built by .ci/engines
SOCKETS = {"docker": "unix:///var/run/docker.sock", "podman": "unix:///run/podman/podman.sock"}
FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}
ECHO = {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}


def engine(runtime: str) -> Any:
    """A client of `runtime`'s engine, with the test image in it (else skip; in CI, fail)."""
    import docker
    import docker.errors

    try:
        client = docker.APIClient(base_url=SOCKETS[runtime], version="auto", timeout=30)
        client.inspect_image(IMAGE)
    except Exception as exc:
        require(False, f"{runtime} with {IMAGE} is not available ({exc}); `make test` sets both up")
    return client


def containers(client: Any, provider: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.containers(
        all=True, filters={"label": [f"io.hangar.provider={provider}"]}
    )
    return found


def provider_spec(runtime: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": IMAGE, "runtime": runtime, "backoff": FAST_BACKOFF}
    spec.update(overrides)
    return spec


@pytest.fixture(params=["docker", "podman"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def unique() -> Iterator[str]:
    """A provider id no other test run uses, so its containers are found by label alone."""
    yield f"box{os.getpid()}x{time.monotonic_ns() % 10**6}"


async def test_listed_without_starting_then_called_then_stopped_when_idle(
    write_config: Any, short_tmp: Path, runtime: str, unique: str
) -> None:
    client = engine(runtime)
    config = write_config({unique: provider_spec(runtime, tools=[ECHO], idle_ttl_s=2, memory="128m")})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        listed = await h.client.list_tools()
        assert f"{unique}__echo" in [tool.name for tool in listed.tools]
        assert containers(client, unique) == []  # the predefined tools need no container

        result = await h.client.call_tool(f"{unique}__echo", {"text": f"hello from {runtime}"})
        assert result.content[0].text == f"hello from {runtime}"  # type: ignore[union-attr]
        [running] = containers(client, unique)
        assert running["State"] == "running"
        tree = h.ctl("tree")
        node = worker_node(tree, unique)["provider"]
        assert node["transport"]["container_id"] == running["Id"][:12]
        assert node["transport"]["image"] == IMAGE
        assert node["transport"]["memory"] == 128 * 2**20
        assert node["rss_mib"] > 0 and node["cpu_s"] is not None  # the container's processes

        await async_wait_until(lambda: h.status(unique)["state"] == "cold", 15.0, "the idle stop")
        await async_wait_until(lambda: containers(client, unique) == [], 10.0, "the container removed")
        again = await h.client.call_tool(f"{unique}__echo", {"text": "lazily again"})
        assert again.content[0].text == "lazily again"  # type: ignore[union-attr]
    assert containers(client, unique) == []


async def test_isolation_defaults_hold_in_the_running_container(
    write_config: Any, short_tmp: Path, runtime: str, unique: str
) -> None:
    client = engine(runtime)
    config = write_config({unique: provider_spec(runtime)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": unique})
        [summary] = containers(client, unique)
        inspected = client.inspect_container(summary["Id"])
        host = inspected["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert {cap.upper().removeprefix("CAP_") for cap in host["CapDrop"]} >= {"ALL"} or len(
            host["CapDrop"]
        ) > 10  # Podman lists every capability it dropped
        assert "no-new-privileges" in " ".join(host["SecurityOpt"])
        assert host["PidsLimit"] == 512
        assert "/tmp" in (host.get("Tmpfs") or {})
        labels = inspected["Config"]["Labels"]
        assert labels["io.hangar.provider"] == unique
        assert labels["io.hangar.instance"].split("/")[2] == str(h.ctl("tree")["pid"])
        state = inspected["State"]
        status = psutil.Process(state["Pid"]).as_dict(["uids"])  # the provider runs, as root, but
        assert status["uids"] is not None
        with open(f"/proc/{state['Pid']}/status") as proc_status:
            fields = dict(line.split(":", 1) for line in proc_status.read().splitlines())
        assert int(fields["CapEff"].strip(), 16) == 0  # ... without a single capability
        assert fields["NoNewPrivs"].strip() == "1"


async def test_container_killed_mid_call_fails_the_call_and_restarts(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    config = write_config({unique: provider_spec("docker")})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": unique})
        [first] = containers(client, unique)
        results: list[Any] = []

        async def slow_call() -> None:
            results.append(await h.client.call_tool(f"{unique}__sleep", {"seconds": 30}))

        async with anyio.create_task_group() as group:
            group.start_soon(slow_call)
            await async_wait_until(lambda: h.status(unique)["in_flight"] == 1, 10.0, "the call in flight")
            client.kill(first["Id"])
        [failed] = results
        assert failed.is_error
        assert failed.structured_content["error"]["type"] == "provider_crashed"  # type: ignore[index]
        status = await async_wait_until(
            lambda: (s := h.status(unique))["state"] == "ready" and s, 20.0, "restarted"
        )
        assert status["restarts"] == 1
        assert "killed by SIGKILL" in status["last_error"] or "exit code 137" in status["last_error"]
        again = await h.client.call_tool(f"{unique}__echo", {"text": "new container"})
        assert again.content[0].text == "new container"  # type: ignore[union-attr]
        assert [c["Id"] for c in containers(client, unique)] != [first["Id"]]
    assert containers(client, unique) == []


async def test_over_its_memory_limit_a_container_is_a_crash_that_says_so(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    config = write_config({unique: provider_spec("docker", memory="96m")})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        result = await h.client.call_tool(f"{unique}__hog", {"mib": 400})
        assert result.structured_content["error"]["type"] == "provider_crashed"  # type: ignore[index]
        status = await async_wait_until(
            lambda: (s := h.status(unique))["last_error"] and s, 10.0, "the crash handled"
        )
        assert "over its memory limit of 96 MiB" in status["last_error"]
    assert containers(client, unique) == []


def test_worker_killed_by_sigkill_leaves_no_container(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    config = write_config({unique: provider_spec("docker")})
    sock = short_tmp / "ctl.sock"
    proc = start_serve(config, sock)
    try:
        from hangar.control import request

        request(sock, "start", {"id": unique})
        [running] = containers(client, unique)
        worker = next(row for row in request(sock, "status", {}) if row["id"] == unique)["worker_pid"]
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: containers(client, unique) == [], 15.0, "the dead worker's container removed")
        assert running["Id"]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(20)
        proc.stdout.close()  # type: ignore[union-attr]


def test_the_root_holds_no_engine_connection_for_each_dead_worker_it_cleaned_up_after(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    config = write_config({unique: provider_spec("docker", intensity=100)})
    sock = short_tmp / "ctl.sock"
    proc = start_serve(config, sock)
    try:
        from hangar.control import request
        from hangar.errors import ControlError

        root = psutil.Process(request(sock, "tree")["pid"])

        def serving() -> tuple[int, str] | None:
            with contextlib.suppress(ControlError):  # "restarting": asked again on the next turn
                request(sock, "start", {"id": unique})
            row = next(row for row in request(sock, "status", {}) if row["id"] == unique)
            running = containers(client, unique)
            if row["state"] != "ready" or not row.get("worker_pid") or len(running) != 1:
                return None
            return int(row["worker_pid"]), str(running[0]["Id"])

        def kill_the_worker() -> None:
            worker, container = wait_until(serving, 30.0, "the provider ready in its container")
            os.kill(worker, signal.SIGKILL)
            wait_until(
                lambda: container not in [c["Id"] for c in containers(client, unique)],
                15.0,
                "the dead worker's container removed",
            )

        request(sock, "start", {"id": unique})
        kill_the_worker()
        before = root.num_fds()
        for _ in range(6):
            kill_the_worker()
        # each clean-up used to leave a pooled connection to the engine open, up to one per thread
        assert root.num_fds() <= before, [c for c in root.net_connections(kind="unix")]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(20)
        proc.stdout.close()  # type: ignore[union-attr]


def test_a_container_provider_added_by_a_reload_leaves_no_container_when_its_worker_is_killed(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    config = write_config({"plain": fixture_provider()})
    sock = short_tmp / "ctl.sock"
    proc = start_serve(config, sock)
    try:
        from hangar.control import request

        # a server that ignores its stdin closing: only the root can remove its container
        deaf = [
            "python3",
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
        ]
        write_config(
            {
                "plain": fixture_provider(),
                unique: provider_spec("docker", command=deaf, startup_timeout_s=120),
            }
        )
        request(sock, "reload", {"dry_run": False})
        starting = threading.Thread(target=_start_quietly, args=(request, sock, unique))
        starting.start()
        wait_until(lambda: len(containers(client, unique)) == 1, 30.0, "the added provider's container")
        worker = wait_until(
            lambda: next(row for row in request(sock, "status", {}) if row["id"] == unique).get("worker_pid"),
            15.0,
            "its worker",
        )
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: containers(client, unique) == [], 20.0, "the dead worker's container removed")
        starting.join(30)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(20)
        proc.stdout.close()  # type: ignore[union-attr]


def _start_quietly(request: Any, sock: Path, provider: str) -> None:
    with contextlib.suppress(Exception):  # the start fails: its worker is killed meanwhile
        request(sock, "start", {"id": provider})


def test_root_killed_by_sigkill_leaves_no_container_and_leftovers_are_swept(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    client = engine("docker")
    # a container an instance that is gone left behind (it died with its whole tree)
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    leftover = client.create_container(
        IMAGE,
        labels={
            "io.hangar.instance": f"{os.uname().nodename}/{boot_id}/999999999/1",
            "io.hangar.provider": f"{unique}-old",
            "io.hangar.worker": "999999999",
        },
        stdin_open=True,
    )
    config = write_config({unique: provider_spec("docker")})
    sock = short_tmp / "ctl.sock"
    proc = start_serve(config, sock)
    try:
        from hangar.control import request

        wait_until(lambda: containers(client, f"{unique}-old") == [], 15.0, "the leftover swept at start")
        request(sock, "start", {"id": unique})
        assert len(containers(client, unique)) == 1
        os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: containers(client, unique) == [], 20.0, "the container gone with its root")
    finally:
        proc.wait(20)
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
        if containers(client, f"{unique}-old"):
            client.remove_container(leftover["Id"], force=True)


async def test_hangar_details_name_the_container_keys(
    write_config: Any, short_tmp: Path, unique: str
) -> None:
    engine("docker")
    config = write_config({unique: provider_spec("docker", volumes=["/etc/hostname:/host-name:ro"])})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        details = (await h.client.call_tool("hangar_details", {"provider": unique})).structured_content
        assert details is not None
        container = details["container"]
        assert container["image"] == IMAGE
        assert (container["network"], container["read_only"], container["pids_limit"]) == ("none", True, 512)
        assert container["volumes"] == ["/etc/hostname:/host-name:ro"]
