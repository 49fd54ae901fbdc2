"""Memory limits of subprocess providers: a cgroup where hangar may make one, else rlimits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import async_wait_until, fixture_provider, running_hangar

pytestmark = pytest.mark.anyio

FAST_BACKOFF = {"initial_s": 0.05, "max_s": 0.2, "factor": 2.0, "jitter": 0.0}


@pytest.mark.parametrize("mode", ["cgroup", "rlimit"])
async def test_a_provider_over_its_memory_limit_is_killed_and_restarted(
    write_config: Any, short_tmp: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "rlimit":
        monkeypatch.setenv("HANGAR_RESOURCE_LIMITS", "rlimit")
    config = write_config({"fat": fixture_provider(memory="160m", cpus=1, backoff=FAST_BACKOFF)})
    async with running_hangar(config, short_tmp / "ctl.sock") as h:
        await h.client.call_tool("hangar_warm", {"providers": "fat"})
        details = (await h.client.call_tool("hangar_details", {"provider": "fat"})).structured_content
        assert details is not None
        limits = details["transport"]["limits"]
        if mode == "rlimit":
            assert limits == "memory 160 MiB, cpus 1 (not enforced: a CPU share needs a cgroup) by rlimit"
        else:
            assert limits in ("memory 160 MiB, cpus 1 by cgroup v1", "memory 160 MiB, cpus 1 by cgroup v2")
        assert details["limits"] == {"memory": 160 * 2**20, "cpus": 1.0}
        first_pid = h.status("fat")["provider_pid"]

        await h.client.call_tool("fat__hog", {"mib": 600})
        status = await async_wait_until(
            lambda: (s := h.status("fat"))["restarts"] >= 1 and s, 20.0, "the provider killed and restarted"
        )
        assert "over its memory limit of 160 MiB" in status["last_error"]
        ready = await async_wait_until(
            lambda: (s := h.status("fat"))["state"] == "ready" and s, 20.0, "restarted"
        )
        assert ready["provider_pid"] != first_pid
        again = await h.client.call_tool("fat__echo", {"text": "lean again"})
        assert again.content[0].text == "lean again"  # type: ignore[union-attr]
