"""hangar: one MCP endpoint in front of many MCP servers, supervised like Erlang/OTP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hangar")  # pyproject.toml holds it, once
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
