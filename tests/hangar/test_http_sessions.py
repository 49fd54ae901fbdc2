"""Session ids sealed with AES-GCM: what any router holding the key takes up, and what it refuses."""

from __future__ import annotations

import base64
import os

import pytest

from hangar.fronts.http_sessions import Sessions, session_keys

PARAMS = {"capabilities": {"sampling": {}}, "clientInfo": {"name": "secret-client-name", "version": "1"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_another_router_with_the_key_takes_the_session_up_from_its_id() -> None:
    key = os.urandom(32)
    session_id, _ = Sessions([key]).create("2025-11-25", PARAMS)
    taken = Sessions([key]).get(session_id)
    assert taken is not None
    assert taken.session.protocol_version == "2025-11-25"
    assert taken.session.client_info == PARAMS["clientInfo"]
    assert taken.session.capabilities == PARAMS["capabilities"]


def test_the_id_cannot_be_read_without_the_key() -> None:
    session_id, _ = Sessions([os.urandom(32)]).create("2025-11-25", PARAMS)
    raw = base64.urlsafe_b64decode(session_id[3:] + "=" * (-len(session_id[3:]) % 4))
    assert b"secret-client-name" not in raw and "secret-client-name" not in session_id
    assert all(0x21 <= ord(char) <= 0x7E for char in session_id)  # what the spec allows in the header


def test_a_tampered_id_an_unknown_key_and_an_unsealed_id_are_refused() -> None:
    key = os.urandom(32)
    sessions = Sessions([key])
    session_id, _ = sessions.create("2025-11-25", PARAMS)
    fresh = Sessions([key])
    for position in (3, len(session_id) // 2, len(session_id) - 2):
        flipped = "A" if session_id[position] != "A" else "B"
        assert fresh.get(session_id[:position] + flipped + session_id[position + 1 :]) is None
    assert Sessions([os.urandom(32)]).get(session_id) is None
    assert fresh.get("s1.") is None and fresh.get("s1.!!!") is None and fresh.get("anything") is None
    assert fresh.get(session_id) is not None


def test_during_a_rotation_ids_of_the_old_key_open_and_new_ids_use_the_new_one() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before, _ = Sessions([old]).create("2025-11-25", PARAMS)
    rotating = Sessions([new, old])
    assert rotating.get(before) is not None
    after, _ = rotating.create("2025-11-25", PARAMS)
    assert Sessions([new]).get(after) is not None
    assert Sessions([old]).get(after) is None


def test_an_id_past_its_lifetime_is_refused_and_a_little_clock_skew_is_not() -> None:
    key, clock = os.urandom(32), Clock()
    session_id, _ = Sessions([key], ttl_s=3600, clock=clock).create("2025-11-25", PARAMS)
    clock.now -= 60  # another replica whose clock is a minute behind
    assert Sessions([key], ttl_s=3600, clock=clock).get(session_id) is not None
    clock.now += 60 + 3601
    assert Sessions([key], ttl_s=3600, clock=clock).get(session_id) is None


def test_a_deleted_session_is_refused_by_the_router_that_deleted_it() -> None:
    sessions = Sessions([os.urandom(32)])
    session_id, _ = sessions.create("2025-11-25", PARAMS)
    assert sessions.delete(session_id)
    assert sessions.get(session_id) is None


def test_session_keys_reads_a_rotation_and_names_a_bad_key() -> None:
    one, two = os.urandom(32), os.urandom(32)
    assert session_keys(f"{one.hex()}, {two.hex()}") == [one, two]
    with pytest.raises(ValueError, match="key 2 is not 64 hex digits"):
        session_keys(f"{one.hex()},abc")
