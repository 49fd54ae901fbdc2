"""What the router offers, under the names clients see, and the way back to a provider.

Every provider's (and group's) tools and prompts are exposed as `<provider>__<name>`, or under
their own name for a provider with `namespace: false`. Resource URIs of a namespaced provider
become `hangar://<provider>/<its own URI>`, so two providers that list the same URI are both
reachable; a `namespace: false` provider's URIs are passed through. Names longer than 64
characters (clients reject them) are shortened deterministically: their first 57 characters,
`_`, and 6 hex digits of their SHA-1.

What an entry's `Exposure` hides is left out (`hangar.exposure`), and its renamed tools are
listed under their new names; the names hidden tools would have are kept, so a call to one is
told `tool_filtered` rather than that no such tool exists.

The catalog is rebuilt, lazily, whenever a provider's lists change; it also keeps the encoded
list results, so a `tools/list` is answered from bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from hangar.config.values import TOOL_SEPARATOR
from hangar.exposure import View
from workers.spec import Exposure
from workers.status import Lists

MAX_NAME_LENGTH = 64  # what clients accept (SEP-986)
HASH_DIGITS = 6
URI_SCHEME = "hangar://"

log = structlog.get_logger("hangar.catalog")


def exposed_name(entry: str, name: str, *, namespaced: bool) -> str:
    full = f"{entry}{TOOL_SEPARATOR}{name}" if namespaced else name
    if len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:HASH_DIGITS]
    return f"{full[: MAX_NAME_LENGTH - HASH_DIGITS - 1]}_{digest}"


def exposed_uri(entry: str, uri: str, *, namespaced: bool) -> str:
    return f"{URI_SCHEME}{entry}/{uri}" if namespaced else uri


@dataclass(frozen=True)
class Target:
    """Where an exposed name leads: a provider or group, and the name it knows."""

    entry: str
    name: str


@dataclass
class _Built:
    tools: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    tool_targets: dict[str, Target] = field(default_factory=dict)
    prompt_targets: dict[str, Target] = field(default_factory=dict)
    template_targets: dict[str, Target] = field(default_factory=dict)  # exposed template -> its own
    filtered_tools: dict[str, Target] = field(default_factory=dict)  # the names hidden tools would have
    input_schemas: dict[str, Any] = field(default_factory=dict)  # a listed tool's name -> its inputSchema
    uri_owners: dict[str, list[str]] = field(default_factory=dict)  # a provider's own URI -> entries
    template_patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    encoded: dict[str, bytes] = field(default_factory=dict)


class Catalog:
    """The union of every entry's lists, renamed; rebuilt after `invalidate()`.

    Args:
        entries: public entries (providers and groups) in config order.
        namespaced: whether an entry's names are prefixed.
        lists_of: the current lists of an entry.
        reserved: names that belong to hangar itself (its management tools).
        exposure_of: what clients may see of an entry (default: everything).
    """

    def __init__(
        self,
        entries: Sequence[str],
        namespaced: Callable[[str], bool],
        lists_of: Callable[[str], Lists],
        reserved: frozenset[str] = frozenset(),
        exposure_of: Callable[[str], Exposure] | None = None,
    ) -> None:
        self.entries = list(entries)
        everything = View(Exposure())
        self.views = {
            entry: View(exposure_of(entry)) if exposure_of is not None else everything for entry in entries
        }
        self._namespaced = namespaced
        self._lists_of = lists_of
        self._reserved = reserved
        self._built: _Built | None = None
        self.version = 0
        self._notified: dict[str, bytes] = {}  # per list kind: what clients were last told of

    def reconfigure(self, entries: Sequence[str], exposure_of: Callable[[str], Exposure]) -> None:
        """A reload's entries and exposures; what clients were last told of stays, for the diff."""
        self.entries = list(entries)
        self.views = {entry: View(exposure_of(entry)) for entry in entries}
        self.invalidate()

    def invalidate(self) -> None:
        self._built = None
        self.version += 1

    @property
    def built(self) -> _Built:
        if self._built is None:
            self._built = self._build()
            if not self._notified:  # what clients can have seen so far
                self._notified = _signatures(self._built)
        return self._built

    # ------------------------------------------------------------------ reading

    def tools(self) -> list[dict[str, Any]]:
        return self.built.tools

    def prompts(self) -> list[dict[str, Any]]:
        return self.built.prompts

    def resources(self) -> list[dict[str, Any]]:
        return self.built.resources

    def templates(self) -> list[dict[str, Any]]:
        return self.built.templates

    def capabilities(self) -> dict[str, Any]:
        return self.built.capabilities

    def tool(self, name: str) -> Target | None:
        return self.built.tool_targets.get(name)

    def input_schema(self, name: str) -> Any:
        """The `inputSchema` a tool was listed with (None: not listed, or listed without one)."""
        return self.built.input_schemas.get(name)

    def filtered_tool(self, name: str) -> Target | None:
        """The tool a listed name would lead to, had the config not hidden it."""
        return self.built.filtered_tools.get(name)

    def prompt(self, name: str) -> Target | None:
        return self.built.prompt_targets.get(name)

    def encoded(self, key: str, encode: Callable[[], bytes]) -> bytes:
        """A cached encoding (of a list result, say), dropped with the next rebuild."""
        built = self.built
        cached = built.encoded.get(key)
        if cached is None:
            cached = built.encoded[key] = encode()
        return cached

    def template(self, uri_template: str) -> Target | None:
        return self.built.template_targets.get(uri_template)

    def diff_since_notified(self) -> list[str]:
        """The kinds of list ("tools", "prompts", "resources") that changed since the last call."""
        now = _signatures(self.built)
        changed = [kind for kind, signature in now.items() if self._notified.get(kind) != signature]
        self._notified = now
        return changed

    def resolve_uri(self, uri: str) -> Target | None:
        """The entry that serves `uri`, and the URI it knows; None when nothing claims it."""
        built = self.built
        if uri.startswith(URI_SCHEME):
            entry, _, own = uri[len(URI_SCHEME) :].partition("/")
            if entry in self.entries and own and self.views[entry].shows_resource(own):
                return Target(entry, own)
        owners = built.uri_owners.get(uri)
        if owners:
            return Target(owners[0], uri)
        for pattern, entry in built.template_patterns:
            if pattern.fullmatch(uri):
                return Target(entry, uri)
        offering = [e for e in self.entries if "resources" in (self._lists_of(e).get("capabilities") or {})]
        if len(offering) == 1 and self.views[offering[0]].shows_resource(uri):
            return Target(offering[0], uri)
        return None

    def uri_for(self, entry: str, uri: str) -> str:
        """A provider's own URI as clients know it (for its resources/updated notifications)."""
        return exposed_uri(entry, uri, namespaced=self._namespaced(entry))

    # ------------------------------------------------------------------ building

    def _build(self) -> _Built:
        built = _Built()
        for entry in self.entries:
            lists = self._lists_of(entry)
            namespaced = self._namespaced(entry)
            view = self.views[entry]
            for tool in lists.get("tools", []):
                own = tool.get("name") if isinstance(tool.get("name"), str) else None
                if own is not None and not view.shows_tool(own):
                    hidden = exposed_name(entry, view.tool_name(own), namespaced=namespaced)
                    built.filtered_tools.setdefault(hidden, Target(entry, own))
                    continue
                listed = view.tool(tool)
                added = self._add_named(
                    built.tools, built.tool_targets, entry, listed, namespaced, "tool", own
                )
                if added is not None:
                    built.input_schemas[added] = tool.get("inputSchema")
            for prompt in lists.get("prompts", []):
                if isinstance(prompt.get("name"), str) and not view.shows_prompt(prompt["name"]):
                    continue
                self._add_named(built.prompts, built.prompt_targets, entry, prompt, namespaced, "prompt")
            for resource in lists.get("resources", []):
                uri = resource.get("uri")
                if not isinstance(uri, str) or not view.shows_resource(uri):
                    continue
                built.uri_owners.setdefault(uri, []).append(entry)
                built.resources.append({**resource, "uri": exposed_uri(entry, uri, namespaced=namespaced)})
            for template in lists.get("resource_templates", []):
                uri_template = template.get("uriTemplate")
                if not isinstance(uri_template, str) or not view.shows_resource(uri_template):
                    continue
                if not namespaced:
                    built.template_patterns.append((template_pattern(uri_template), entry))
                exposed = exposed_uri(entry, uri_template, namespaced=namespaced)
                built.template_targets.setdefault(exposed, Target(entry, uri_template))
                built.templates.append({**template, "uriTemplate": exposed})
            _merge_capabilities(built.capabilities, lists.get("capabilities") or {})
        return built

    def _add_named(
        self,
        items: list[dict[str, Any]],
        targets: dict[str, Target],
        entry: str,
        item: dict[str, Any],
        namespaced: bool,
        kind: str,
        own: str | None = None,
    ) -> str | None:
        """Add `item` under its exposed name, leading to `own` (default: its name) at `entry`.

        Returns the exposed name (None: not added).
        """
        name = item.get("name")
        if not isinstance(name, str) or not name:
            return None
        exposed = exposed_name(entry, name, namespaced=namespaced)
        taken = targets.get(exposed)
        if taken is not None or exposed in self._reserved:
            owner = taken.entry if taken is not None else "hangar"
            log.warning(f"{kind}_name_clash", name=exposed, kept=owner, dropped=entry)
            return None
        targets[exposed] = Target(entry, own or name)
        items.append({**item, "name": exposed})
        return exposed


def _signatures(built: _Built) -> dict[str, bytes]:
    return {
        "tools": msgspec.json.encode(built.tools),
        "prompts": msgspec.json.encode(built.prompts),
        "resources": msgspec.json.encode([built.resources, built.templates]),
    }


def template_pattern(uri_template: str) -> re.Pattern[str]:
    """A regex for the URIs an RFC 6570 template (levels 1 and 2) expands to."""
    parts = re.split(r"(\{[^}]*\})", uri_template)
    regex = []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            regex.append(".+" if part[1:2] in ("+", "#") else "[^/?#]+")
        else:
            regex.append(re.escape(part))
    return re.compile("".join(regex))


def _merge_capabilities(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merged = into[key]
            for flag, setting in value.items():
                merged[flag] = merged.get(flag) or setting
        elif key not in into:
            into[key] = dict(value) if isinstance(value, dict) else value
