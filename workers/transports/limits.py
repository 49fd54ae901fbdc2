"""Memory and CPU limits for a subprocess provider: a cgroup where hangar may make one, else rlimits.

A cgroup limits the provider and everything it spawns, and the kernel kills it when it goes
over its memory (`oom_kill` in the cgroup's events says so afterwards). hangar makes one under
its own cgroup when it can: cgroup v2 when the unified hierarchy has the `memory` (and `cpu`)
controller enabled below the worker's cgroup, or cgroup v1 when the `memory` and `cpu`
hierarchies are mounted and writable (a hybrid layout). Otherwise the limit is an rlimit and a
watch: the worker checks the provider's resident memory (its whole process group) once a second
and kills it when over, and `RLIMIT_DATA` at `RLIMIT_FACTOR` times the limit stops it from
running far past it in between. A CPU share cannot be enforced that way at all.

`HANGAR_RESOURCE_LIMITS=rlimit` chooses the rlimit way even where a cgroup could be made.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000  # the scheduler period a CPU share is a quota of (the kernel's default)
CGROUP_PREFIX = "hangar-"  # hangar-<provider>-<worker pid>-<n>: a leftover names its worker
MODE_ENV = "HANGAR_RESOURCE_LIMITS"  # "rlimit": never make a cgroup
OOM_WORDS = ("MemoryError", "out of memory", "Cannot allocate memory", "heap out of memory", "bad_alloc")
RLIMIT_FACTOR = 2  # without a cgroup: allocations fail past twice the limit; the watch kills at it

log = structlog.get_logger("workers.limits")


@dataclass
class Limits:
    """One provider process's limits: applied in the child before exec, read after its exit."""

    memory: int | None
    cpus: float | None
    mechanism: str  # "cgroup v2", "cgroup v1", "rlimit"
    directories: list[Path] = field(default_factory=list)  # the cgroup (one per v1 hierarchy)
    oom_file: Path | None = None

    def preexec(self) -> Callable[[], None]:
        """What the child runs between fork and exec: join the cgroup, or set the rlimit."""
        procs = [str(directory / "cgroup.procs") for directory in self.directories]
        memory = self.memory

        def apply() -> None:
            for path in procs:
                with open(path, "w") as handle:
                    handle.write("0")  # "0": the writing process itself
            if not procs and memory is not None:
                cap = RLIMIT_FACTOR * memory
                resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

        return apply

    def oom_killed(self) -> bool:
        """Whether the kernel killed something in the cgroup for going over its memory."""
        if self.oom_file is None:
            return False
        try:
            events = self.oom_file.read_text().split("\n")
        except OSError:
            return False
        return any(line.startswith("oom_kill ") and int(line.split()[1]) > 0 for line in events)

    def over_limit(self, pid: int | None) -> str | None:
        """Without a cgroup: why the process `pid` (and its children) must be killed, if over its memory."""
        if self.directories or self.memory is None or pid is None:
            return None
        import psutil

        try:
            leader = psutil.Process(pid)
            rss = sum(p.memory_info().rss for p in [leader, *leader.children(recursive=True)])
        except psutil.Error:
            return None
        if rss <= self.memory:
            return None
        return f"over its memory limit of {_mib(self.memory)} (resident {_mib(rss)}, rlimit watch)"

    def describe(self) -> str:
        parts = []
        if self.memory is not None:
            parts.append(f"memory {_mib(self.memory)}")
        if self.cpus is not None:
            enforced = "" if self.directories else " (not enforced: a CPU share needs a cgroup)"
            parts.append(f"cpus {self.cpus:g}{enforced}")
        return f"{', '.join(parts)} by {self.mechanism}"

    def exit_note(self, returncode: int, stderr_tail: list[str]) -> str | None:
        """Why an exit was the limit's doing, when it was."""
        if self.oom_killed():
            return f"killed: over its memory limit of {_mib(self.memory or 0)} ({self.mechanism})"
        ran_out = any(word in line for line in stderr_tail[-5:] for word in OOM_WORDS)
        if not self.directories and self.memory is not None and returncode != 0 and ran_out:
            return f"ran out of memory: over its memory limit of {_mib(self.memory)} (rlimit)"
        return None

    def close(self) -> None:
        """Remove the cgroup (once its processes are gone)."""
        for directory in self.directories:
            with contextlib.suppress(OSError):
                directory.rmdir()


def limits_for(provider_id: str, memory: int | None, cpus: float | None) -> Limits | None:
    """The limits of one provider process, a cgroup made for it if one can be; None without limits."""
    if memory is None and cpus is None:
        return None
    if os.environ.get(MODE_ENV) != "rlimit":
        name = f"{CGROUP_PREFIX}{provider_id}-{os.getpid()}-{next(_serial)}"
        for make in (_cgroup_v2, _cgroup_v1):
            try:
                made = make(name, memory, cpus)
            except OSError as exc:
                log.debug("cgroup_not_made", provider=provider_id, error=str(exc))
                continue
            if made is not None:
                return made
    return Limits(memory, cpus, "rlimit")


_serial = itertools.count(1)  # of the cgroups this worker made


def _own_cgroup(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of `controller` ("" for v2's unified one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _unified_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "cgroup2":
            return Path(fields[4])
    return None


def _cgroup_v2(name: str, memory: int | None, cpus: float | None) -> Limits | None:
    mount, own = _unified_mount(), _own_cgroup("")
    if mount is None or own is None:
        return None
    parent = mount / own.lstrip("/")
    wanted = {"memory"} | ({"cpu"} if cpus is not None else set())
    enabled = set((parent / "cgroup.subtree_control").read_text().split())
    if not wanted <= enabled:
        if not wanted <= set((parent / "cgroup.controllers").read_text().split()):
            return None
        # allowed only where the parent holds no processes itself (or is the root cgroup)
        (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted - enabled))
    _sweep(parent)
    directory = parent / name
    directory.mkdir()
    if memory is not None:
        (directory / "memory.max").write_text(str(memory))
        with contextlib.suppress(OSError):
            (directory / "memory.swap.max").write_text("0")
    if cpus is not None:
        (directory / "cpu.max").write_text(f"{round(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    return Limits(memory, cpus, "cgroup v2", [directory], directory / "memory.events")


def _cgroup_v1(name: str, memory: int | None, cpus: float | None) -> Limits | None:
    hierarchies = {"memory": CGROUP_ROOT / "memory"} | ({"cpu": CGROUP_ROOT / "cpu"} if cpus else {})
    directories: dict[str, Path] = {}
    try:
        for controller, mount in hierarchies.items():
            own = _own_cgroup(controller)
            if own is None or not (mount / "cgroup.procs").exists():
                return None
            parent = mount / own.lstrip("/")
            _sweep(parent)
            directory = parent / name
            directory.mkdir()
            directories[controller] = directory
        if memory is not None:
            (directories["memory"] / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(OSError):  # swap accounting is often off
                (directories["memory"] / "memory.memsw.limit_in_bytes").write_text(str(memory))
        if cpus is not None:
            (directories["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (directories["cpu"] / "cpu.cfs_quota_us").write_text(str(round(cpus * CPU_PERIOD_US)))
    except OSError:
        for directory in directories.values():
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return Limits(
        memory, cpus, "cgroup v1", list(directories.values()), directories["memory"] / "memory.oom_control"
    )


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups that workers which are gone left behind."""
    for directory in parent.glob(f"{CGROUP_PREFIX}*"):
        try:
            worker_pid = int(directory.name.rsplit("-", 2)[1])
        except (IndexError, ValueError):
            continue
        if worker_pid != os.getpid() and not Path(f"/proc/{worker_pid}").exists():
            with contextlib.suppress(OSError):
                directory.rmdir()


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"
