"""Example provider: a small in-memory notebook (an MCP server over stdio)."""

from mcp.server import MCPServer

server = MCPServer("notes")
_notes: dict[str, str] = {}


@server.tool()
def add_note(title: str, text: str) -> str:
    """Store a note under a title (replaces an existing one)."""
    _notes[title] = text
    return f"saved {title!r} ({len(_notes)} notes)"


@server.tool()
def get_note(title: str) -> str:
    """Read a note by its title."""
    if title not in _notes:
        raise ValueError(f"no note titled {title!r}; titles: {', '.join(sorted(_notes)) or 'none'}")
    return _notes[title]


@server.tool()
def list_notes() -> list[str]:
    """List the titles of every note."""
    return sorted(_notes)


if __name__ == "__main__":
    server.run("stdio")
