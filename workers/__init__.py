"""The provider worker: one OS process per provider, and what both ends of the relay share."""

# hangar's version, for all three packages (they ship as one); defined here, the lowest layer
# that names hangar, so the worker can tell its providers who it is. pyproject.toml reads it.
__version__ = "0.1.0"
