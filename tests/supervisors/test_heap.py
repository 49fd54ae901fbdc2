"""A tuned child's large buffers come from the heap and are reused, not mapped afresh."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# In a fresh interpreter: allocate and free a 400 KB buffer many times, and count the minor page
# faults it took. Fresh pages fault once each (about 100 per buffer); reused ones do not.
PROBE = textwrap.dedent(
    """
    import resource, sys
    from supervisors.heap import keep_freed_buffers
    if sys.argv[1] == "tuned":
        assert keep_freed_buffers()
    line = b"x" * 409_600
    for _ in range(20):
        bytes(bytearray(line))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        bytes(bytearray(line))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_large_buffers_are_reused_once_tuned() -> None:
    untuned, tuned = faults("untuned"), faults("tuned")
    assert untuned > 1000  # copies faulted their pages in afresh: what the tuning is for
    assert tuned < 200  # the same copies, served from pages the process already had
