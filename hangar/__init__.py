"""hangar: one MCP endpoint in front of many MCP servers, supervised like Erlang/OTP."""

__version__ = "0.1.0"  # also in pyproject.toml
