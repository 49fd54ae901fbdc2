"""The bench marker: `pytest -m "not bench"` leaves out the bench's smoke run."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: runs the benchmark suite (bench/run.py --quick) as a smoke test"
    )
