"""What clients see of one provider's lists: glob filters, renamed tools, descriptions of one's own.

A provider (or group) may hide tools, prompts and resources (`include_*` / `exclude_*` globs,
exclude winning) and give its tools other names and descriptions (`rename`, `descriptions`), so
an agent sees fewer tools and can tell two providers' tools apart. The catalog asks this module
what to list under which name; a call to a hidden tool is refused with `tool_filtered` (it
exists, but this hangar does not offer it), never relayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

from workers.errors import CallError, ErrorType
from workers.spec import Exposure


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether `name` matches one of the shell-style globs (case-sensitive, as names are)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def shown(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Included (by no include pattern at all, or by one of them) and not excluded."""
    return (not include or matches(name, include)) and not matches(name, exclude)


class View:
    """One entry's `Exposure`, applied."""

    def __init__(self, exposure: Exposure) -> None:
        self.exposure = exposure

    @cached_property
    def _originals(self) -> dict[str, str]:
        return {new: old for old, new in self.exposure.rename.items()}

    def shows_tool(self, own_name: str) -> bool:
        return shown(own_name, self.exposure.include_tools, self.exposure.exclude_tools)

    def shows_prompt(self, own_name: str) -> bool:
        return shown(own_name, self.exposure.include_prompts, self.exposure.exclude_prompts)

    def shows_resource(self, own_uri: str) -> bool:
        return shown(own_uri, self.exposure.include_resources, self.exposure.exclude_resources)

    def tool_name(self, own_name: str) -> str:
        """The name a tool is listed under (before its provider's namespace)."""
        return self.exposure.rename.get(own_name, own_name)

    def own_tool(self, listed_name: str) -> str:
        """The provider's own name of a tool listed as `listed_name` (renamed or not)."""
        return self._originals.get(listed_name, listed_name)

    def tool(self, tool: dict[str, Any]) -> dict[str, Any]:
        """The tool object as listed: its name replaced, its description too if given."""
        own = tool.get("name")
        if not isinstance(own, str):
            return tool
        changed = {**tool, "name": self.tool_name(own)}
        description = self.exposure.descriptions.get(own)
        if description is not None:
            changed["description"] = description
        return changed

    def check_tool(self, entry: str, own_name: str) -> None:
        """Refuse a call to a tool this entry hides.

        Raises:
            CallError: `tool_filtered`.
        """
        if not self.shows_tool(own_name):
            raise filtered(entry, own_name)


def filtered(entry: str, own_name: str) -> CallError:
    return CallError(
        ErrorType.TOOL_FILTERED,
        f"tool {own_name!r} of provider {entry} is filtered out by the config",
        f"see include_tools / exclude_tools of {entry}; tools/list shows what may be called",
    )


def unmatched(exposure: Exposure, tool_names: Sequence[str]) -> list[tuple[str, str]]:
    """(key, pattern or name) of the tool filters, renames and descriptions that name no tool."""
    found = []
    for key in ("include_tools", "exclude_tools"):
        for pattern in getattr(exposure, key):
            if not any(fnmatchcase(name, pattern) for name in tool_names):
                found.append((key, pattern))
    for key in ("rename", "descriptions"):
        for name in getattr(exposure, key):
            if name not in tool_names:
                found.append((key, name))
    return found
