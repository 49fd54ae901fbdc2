"""hangar: one MCP endpoint in front of many MCP servers, supervised like Erlang/OTP."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it from here (`dynamic`)
