"""What a hangar remembers across its restarts: which providers ran, which were dead, its totals.

One JSON file per instance, `<state dir>/<instance>/state.json`. The state dir is the first of
`hangar serve --state-dir`, `$HANGAR_STATE_DIR`, `$STATE_DIRECTORY` (systemd's
`StateDirectory=`), `$XDG_STATE_HOME/hangar` and `~/.local/state/hangar`; the instance is
`--name` when given, else the config file's name and a digest of its path, so two hangars on
two configs keep apart.

The file holds, per provider: whether it had a running worker (`warm`), why its supervisor
gave up if it did (`dead`), and the totals `hangar ctl status` shows (calls, provider restarts,
worker restarts). At start a warm provider is started again in the background, a dead one
stays dead with its reason until it is started, and the totals go on from where they were
(Prometheus counters, which the router keeps, start from zero, as counters do).

It is written whole and atomically (a temporary file, fsync, rename, fsync of the directory)
at most once per WRITE_DEBOUNCE_S while things change, and at shutdown. A file that is not
hangar's state, or of another version, or not JSON, is moved aside to `state.json.unreadable`
with a warning, and hangar starts afresh: state is a convenience, never a reason not to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import structlog

from hangar.logbook import now_iso

STATE_FORMAT = "hangar-state"  # tells hangar's file from another program's
STATE_VERSION = 1  # a file of another version is set aside, not guessed at
STATE_FILE = "state.json"
UNREADABLE_SUFFIX = ".unreadable"
WRITE_DEBOUNCE_S = 1.0  # changes within this are written together
INSTANCE_DIGITS = 8  # of the config path's SHA-1, in an unnamed instance's directory name
ENV_STATE_DIR = "HANGAR_STATE_DIR"
ENV_SYSTEMD_STATE_DIR = "STATE_DIRECTORY"  # set by systemd for StateDirectory= (colon-separated)

log = structlog.get_logger("hangar.state")


@dataclass(frozen=True)
class ProviderMemory:
    """One provider, as hangar last saw it."""

    warm: bool = False  # it had a running worker
    dead: str | None = None  # why its supervisor gave up, while it was dead
    calls: int = 0
    restarts: int = 0  # of its provider process, by its worker
    worker_restarts: int = 0  # of its worker, by its supervisor


@dataclass(frozen=True)
class SavedState:
    """The whole file."""

    format: str
    version: int
    saved: str  # ISO 8601, UTC
    providers: dict[str, ProviderMemory] = field(default_factory=dict)


class _Header(msgspec.Struct):
    format: str = ""
    version: int = 0


def state_dir(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path:
    """The state directory (not yet created): see the module's docstring for the order."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if env.get(ENV_STATE_DIR):
        return Path(env[ENV_STATE_DIR])
    if env.get(ENV_SYSTEMD_STATE_DIR):
        return Path(env[ENV_SYSTEMD_STATE_DIR].split(":")[0])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "hangar"
    return Path(env.get("HOME") or Path.home()) / ".local" / "state" / "hangar"


def state_file(directory: Path, name: str | None, config_path: str) -> Path:
    """The instance's file: under `--name` when given, else under the config's name and a digest
    of its path (two `hangar.yaml` in two projects are two instances)."""
    if name is None:
        digest = hashlib.sha1(os.path.abspath(config_path).encode()).hexdigest()[:INSTANCE_DIGITS]
        name = f"{Path(config_path).stem}-{digest}"
    return directory / name / STATE_FILE


def read_state(path: Path) -> SavedState:
    """The state at `path`; a missing file is a fresh state, an unreadable one is set aside."""
    fresh = SavedState(STATE_FORMAT, STATE_VERSION, now_iso())
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return fresh
    except OSError as exc:
        log.warning("state_unreadable", path=str(path), error=str(exc), hint="starting with a fresh state")
        return fresh
    try:
        header = msgspec.json.decode(data, type=_Header)
        if header.format != STATE_FORMAT:
            raise ValueError(f"not a hangar state file (format {header.format!r})")
        if header.version != STATE_VERSION:
            raise ValueError(f"state version {header.version}, this hangar reads {STATE_VERSION}")
        return msgspec.json.decode(data, type=SavedState)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        aside = path.with_name(path.name + UNREADABLE_SUFFIX)
        with contextlib.suppress(OSError):
            path.replace(aside)
        log.warning(
            "state_unreadable",
            path=str(path),
            error=str(exc),
            moved_to=str(aside),
            hint="starting with a fresh state",
        )
        return fresh


def write_state(path: Path, state: SavedState) -> None:
    """Write `state` so that a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(msgspec.json.format(msgspec.json.encode(state)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


class StateKeeper:
    """Writes `snapshot()` to `path` after changes (debounced) and at the end."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, ProviderMemory]]) -> None:
        self.path = path
        self.snapshot = snapshot
        self._pending: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def changed(self) -> None:
        """Something worth remembering changed: write within WRITE_DEBOUNCE_S."""
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(WRITE_DEBOUNCE_S)
        await self.save()

    async def save(self) -> None:
        state = SavedState(STATE_FORMAT, STATE_VERSION, now_iso(), self.snapshot())
        async with self._writing:
            try:
                await asyncio.to_thread(write_state, self.path, state)
            except OSError as exc:
                log.warning("state_not_saved", path=str(self.path), error=str(exc))

    async def close(self) -> None:
        """The last write: a pending one is replaced by it."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
        await self.save()
