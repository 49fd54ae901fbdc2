"""Providers found while hangar runs, beside those of its config file (`discovery:`).

Each kind of source has a module whose `scan` is a plain function: it reads the source once and
returns what it found (`Found`: provider specs, checked by the config file's own schema, and
the errors of the entries that did not pass). `merge` decides, purely, which providers the
sources hold together: per-source caps, additive or authoritative modes, and the priority when
two sources name one id. `loop` runs the sources (watched paths, intervals), probes what is new
and quarantines a provider whose first start fails; `apply` hands the result to the running tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.spec import ProviderSpec

__all__ = ["Discovered", "Found"]


@dataclass(frozen=True)
class Discovered:
    """One provider a source declares, and where (a file, a container, an entry point)."""

    spec: ProviderSpec
    origin: str


@dataclass(frozen=True)
class Found:
    """One scan of a source.

    `complete` is False when the source itself could not be read (a directory that is gone, an
    engine that does not answer): what it held before is then kept, whatever its mode, since
    an unreadable source says nothing about what disappeared.
    """

    providers: tuple[Discovered, ...] = ()
    errors: tuple[str, ...] = ()
    complete: bool = True
