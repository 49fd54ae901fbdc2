"""The bench's provider: an MCP server with a 0 ms `echo`, a `sleep` of N milliseconds and a `blob` of N KiB.

    python bench_server.py              MCP over stdio (how hangar and the direct baseline run it)
    python bench_server.py --http PORT  MCP Streamable HTTP on 127.0.0.1:PORT at /mcp

Environment:
    SPAWN_LOG: a file this server appends its pid to when it starts (counts spawns).
"""

import asyncio
import os
import sys

from mcp.server import MCPServer

if os.environ.get("SPAWN_LOG"):
    with open(os.environ["SPAWN_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")

server = MCPServer("bench", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def sleep(ms: float) -> str:
    """Wait `ms` milliseconds, then answer."""
    if ms > 0:
        await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


@server.tool()
def blob(kib: int) -> str:
    """A text of `kib` KiB (a large result)."""
    return "x" * (kib * 1024)


@server.tool()
def whoami() -> dict[str, int]:
    """The pid of this provider process."""
    return {"pid": os.getpid()}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
