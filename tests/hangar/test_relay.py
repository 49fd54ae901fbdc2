"""The sealed request states of parked 2026-07-28 calls."""

from __future__ import annotations

from hangar.relay import RequestStates


def test_a_sealed_state_opens_to_its_call_whatever_bytes_its_mac_holds() -> None:
    states = RequestStates(key=b"k" * 32)
    for call in range(1, 2000):
        assert states.open(states.seal(call)) == call


def test_a_tampered_or_foreign_state_opens_to_nothing() -> None:
    states = RequestStates(key=b"k" * 32)
    sealed = states.seal(7)
    assert states.open(sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB")) is None
    assert states.open(sealed + "-TAMPERED") is None
    assert RequestStates(key=b"x" * 32).open(sealed) is None
    assert states.open("v1.the-providers-own-state") is None
