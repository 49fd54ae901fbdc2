"""Example provider: echo, arithmetic and a slow tool (an MCP server over stdio)."""

import asyncio
import os

from mcp.server import MCPServer

server = MCPServer("echo")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
async def sleep(seconds: float) -> str:
    """Wait for the given number of seconds, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool()
def whoami() -> dict[str, int]:
    """The pid of this provider process."""
    return {"pid": os.getpid()}


if __name__ == "__main__":
    server.run("stdio")
