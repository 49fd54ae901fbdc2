"""hangar: one MCP endpoint in front of many MCP servers, supervised like Erlang/OTP."""

from workers import __version__  # defined once, in the lowest layer that names hangar

__all__ = ["__version__"]
