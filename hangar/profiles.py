"""Per-client views: what one client (an HTTP token, a stdio `--profile`) sees and may call.

A profile names the providers (and groups) it holds and, like a provider's own filters, globs
of tools to include and exclude; these match the names the client sees (`time__now`,
`hangar_call`), so one pattern can span providers. A client without a profile sees everything.
What is outside its profile is not listed to it, and a call to it is refused with
`not_in_profile` (counted per profile in the router's figures) before it leaves the router.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hangar.config import ProfileSpec
from hangar.exposure import shown
from workers.errors import CallError, ErrorType

HANGAR_ENTRY = "hangar"  # what hangar's own tools count as, in the figures


@dataclass(frozen=True)
class Profile:
    spec: ProfileSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def holds_entry(self, entry: str) -> bool:
        return self.spec.providers is None or entry in self.spec.providers

    def holds_tool(self, entry: str | None, listed_name: str) -> bool:
        """Whether the tool listed as `listed_name` (of `entry`; None: one of hangar's) is held."""
        if entry is not None and not self.holds_entry(entry):
            return False
        return shown(listed_name, self.spec.include_tools, self.spec.exclude_tools)

    def entries(self, entries: Iterable[str]) -> list[str]:
        return [entry for entry in entries if self.holds_entry(entry)]

    def refusal(self, what: str) -> CallError:
        return CallError(
            ErrorType.NOT_IN_PROFILE,
            f"{what} is not in profile {self.name!r}",
            "this client's profile does not offer it: tools/list shows what it may call",
        )
