"""`type: containers`: running Docker or Podman containers that say they serve MCP.

A container is a provider when it carries the label `hangar.provider=<id>`; it is reached as a
`remote` provider over HTTP, at a port it publishes (or, on the host's network, the port it
listens on). The container transport (`mode: container`) cannot take it over: it creates its
own container, attaches to its stdin/stdout *before* starting it (so no output is missed) and
removes it when it stops, while a discovered container was started by someone else, runs on its
own, and outlives hangar. Labels:

| label | meaning | default |
|---|---|---|
| `hangar.provider` | the provider id | (required) |
| `hangar.port` | the container port serving MCP (on the host network: the host's) | the one it publishes |
| `hangar.path` | the URL path of the MCP endpoint | `/mcp` |
| `hangar.transport` | `streamable-http`, `sse`, or `auto` | `auto` |
| `hangar.description` | shown in `hangar_list` / `hangar_details` | |

Stopping the container takes the provider away (in an `authoritative` source; an `additive`
one keeps it, and calls fail until the container is back).
"""

from __future__ import annotations

from typing import Any

from hangar.config.problems import Node, Problems, plain_node
from hangar.discovery import Found
from hangar.discovery.files import entries, merged
from workers.transports import engine

LABEL = "hangar.provider"
PREFIX = "hangar."
DEFAULT_PATH = "/mcp"
ANY_ADDRESS = ("", "0.0.0.0", "::")  # published on every interface: reached on loopback
LOOPBACK = "127.0.0.1"


def scan(runtime: str) -> Found:
    """The labelled running containers of `runtime`'s engine. Blocking: run it in a thread."""
    try:
        url, client = engine.connect(runtime)
        listed: list[dict[str, Any]] = client.containers(filters={"label": [LABEL], "status": "running"})
        for container in listed:
            if not (container.get("HostConfig") or {}).get("NetworkMode"):  # Podman's list leaves it out
                inspected = client.inspect_container(container["Id"])
                container["HostConfig"] = {"NetworkMode": inspected["HostConfig"]["NetworkMode"]}
    except Exception as exc:  # the engine is down or refuses: nothing can be said of what it runs
        return Found(errors=(f"{runtime}: {exc}",), complete=False)
    return merged([entry(container, url) for container in listed])


def entry(container: dict[str, Any], engine_url: str) -> Found:
    """The provider one container (as the engine lists it) declares. Pure."""
    labels: dict[str, str] = container.get("Labels") or {}
    name = (container.get("Names") or [str(container.get("Id", ""))[:12]])[0].lstrip("/")
    origin = f"container {name} ({engine_url})"
    provider = labels[LABEL]
    wanted = labels.get(PREFIX + "port")
    if (container.get("HostConfig") or {}).get("NetworkMode") == "host":
        if wanted is None:
            return Found(errors=(f"{origin}: on the host's network, it needs the label hangar.port",))
        host, public = LOOPBACK, wanted  # its port is the host's own
    else:
        found = _published(container, wanted, origin)
        if isinstance(found, Found):
            return found
        host, public = found
    host = f"[{host}]" if ":" in host else host
    path = labels.get(PREFIX + "path", DEFAULT_PATH)
    values: dict[str, Any] = {
        "url": f"http://{host}:{public}/{path.lstrip('/')}",
        "transport": labels.get(PREFIX + "transport", "auto"),
    }
    if PREFIX + "description" in labels:
        values["description"] = labels[PREFIX + "description"]
    problems = Problems(origin)
    root = Node("", 1, 1, {"providers": plain_node({provider: values}, "providers", lambda _: 0)})
    return entries(root, problems, origin, "/")


def _published(container: dict[str, Any], wanted: str | None, origin: str) -> tuple[str, str] | Found:
    """(host, port) where the container publishes its MCP port, or the error saying why not."""
    ports = [p for p in container.get("Ports") or [] if p.get("Type", "tcp") == "tcp" and p.get("PublicPort")]
    if wanted is not None:
        chosen = [p for p in ports if str(p.get("PrivatePort")) == wanted]
        if not chosen:
            published = ", ".join(str(p.get("PrivatePort")) for p in ports) or "none"
            return Found(
                errors=(f"{origin}: port {wanted} (hangar.port) is not published ({published} are)",)
            )
    else:
        chosen = ports
        if len({p.get("PrivatePort") for p in chosen}) != 1:
            return Found(
                errors=(
                    f"{origin}: publishes {len(chosen)} TCP ports; say which serves MCP with the label "
                    "hangar.port",
                )
            )
    host = str(chosen[0].get("IP") or "")
    return (LOOPBACK if host in ANY_ADDRESS else host), str(chosen[0]["PublicPort"])
