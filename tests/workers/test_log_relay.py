"""A worker's log lines on their way to the root: what is kept of each, and a flood's bound."""

from __future__ import annotations

import asyncio

import pytest

from workers.log_relay import MAX_QUEUED, LogRelay, line_of


def test_a_providers_stderr_line_keeps_its_text_and_other_events_their_fields() -> None:
    stderr = line_of({"event": "provider_stderr", "line": "boom", "level": "warning", "timestamp": "t"})
    assert stderr == {
        "ts": "t",
        "level": "warning",
        "source": "provider",
        "event": "provider_stderr",
        "text": "boom",
    }
    own = line_of({"event": "provider_state", "before": "cold", "after": "ready", "provider": "fx", "pid": 1})
    assert own["source"] == "worker" and own["text"] == "provider_state before=cold after=ready"


@pytest.mark.anyio
async def test_lines_are_sent_in_one_batch_and_a_flood_is_cut_to_a_count() -> None:
    sent: list[tuple[int, int]] = []
    relay = LogRelay()
    relay.attach(lambda lines, dropped: sent.append((len(lines), dropped)))
    for index in range(MAX_QUEUED + 25):
        relay({"event": "provider_stderr", "line": str(index)})
    relay.flush()
    await asyncio.sleep(0)
    assert sent == [(MAX_QUEUED, 25)]
