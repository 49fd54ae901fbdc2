"""Handshake-era sessions over Streamable HTTP, with ids that carry what the session negotiated.

`initialize` creates a session; its `Mcp-Session-Id` is the negotiated protocol version, the
client's info and capabilities and the time it was issued, sealed with AES-256-GCM (authenticated
encryption: the id can be neither read nor forged without the key). Any router that holds the key
takes up a session it has never seen from the id alone: a restarted router, or another replica
behind a load balancer. The key is the root's for the life of the instance, or
`$HANGAR_SESSION_KEY` (64 hex digits) shared by replicas; during a rotation it holds two keys,
`new,old`: ids are sealed with the first and opened with either.

What a session changes after `initialize` (its log level, resource subscriptions, its open
streams) lives in the router that saw the change and starts over elsewhere. An id that does not
open, one older than `http.session_ttl_s`, or a session deleted on this router is answered 404,
as the spec says, so the client initializes again.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hangar.fronts.streams import EventStore, Stream
from hangar.session import ClientSession
from workers import jsonrpc
from workers.protocol import Era

ENV_SESSION_KEY = "HANGAR_SESSION_KEY"  # hex; `new,old` during a rotation
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
SEAL_PREFIX = "s1."  # the format of the id: a later one gets a new prefix
SEAL_CONTEXT = b"hangar session id v1"  # authenticated with every id, never sent
SESSION_TTL_S = 7 * 24 * 3600.0  # an id older than this is refused (`http.session_ttl_s`)
CLOCK_SKEW_S = 300.0  # an id "from the future" by up to this much: another replica's clock
MAX_SESSIONS = 10_000  # in memory at once; the least recently used go first
IDLE_S = 3600.0  # a session unused this long is forgotten (its id still resumes it)


@dataclass(eq=False)
class HttpSession:
    session: ClientSession
    store: EventStore = field(default_factory=EventStore)
    standalone: Stream | None = None  # the GET stream, while one is open


def session_keys(value: str) -> list[bytes]:
    """The keys in `$HANGAR_SESSION_KEY`: hex, comma-separated, the sealing one first.

    Raises:
        ValueError: a key that is not 64 hex digits, named by its place in the list.
    """
    keys = []
    for place, text in enumerate(value.split(","), 1):
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise ValueError(
                f"{ENV_SESSION_KEY}: key {place} is not {2 * KEY_BYTES} hex digits "
                f"(make one with `python -c 'import os; print(os.urandom(32).hex())'`)"
            )
        keys.append(key)
    return keys


class Sessions:
    """The sessions of one router: those it serves now, and any other whose id opens.

    Args:
        keys: the sealing key first, then any that still open ids; default `$HANGAR_SESSION_KEY`,
            else a random key (sessions then live as long as this router).
        ttl_s: how long an id opens after it was issued.
        clock: seconds since the epoch (the id carries its issue time across machines).
    """

    def __init__(
        self,
        keys: Sequence[bytes] = (),
        ttl_s: float = SESSION_TTL_S,
        clock: Any = time.time,
    ) -> None:
        env_keys = os.environ.get(ENV_SESSION_KEY)
        keys = list(keys) or (session_keys(env_keys) if env_keys else [os.urandom(KEY_BYTES)])
        self._ciphers = [AESGCM(key) for key in keys]
        self._ttl_s = ttl_s
        self._clock = clock
        self._live: dict[str, HttpSession] = {}
        self._deleted: set[str] = set()

    def create(self, protocol_version: str, params: dict[str, Any]) -> tuple[str, HttpSession]:
        state: dict[str, Any] = {
            "v": protocol_version,
            "c": params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {},
            "i": params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else None,
            "t": int(self._clock()),
        }
        nonce = os.urandom(NONCE_BYTES)  # also what makes two sessions of one client differ
        sealed = nonce + self._ciphers[0].encrypt(nonce, jsonrpc.dumps(state), SEAL_CONTEXT)
        session_id = SEAL_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")
        entry = self._entry(session_id, state)
        return session_id, entry

    def get(self, session_id: str) -> HttpSession | None:
        """The live session, or one rebuilt from a valid id; None for a bad or deleted id."""
        live = self._live.get(session_id)
        if live is not None:
            live.session.last_active = time.monotonic()
            return live
        if session_id in self._deleted:
            return None
        state = self._open(session_id)
        return self._entry(session_id, state) if state is not None else None

    def delete(self, session_id: str) -> bool:
        entry = self.get(session_id)
        if entry is None:
            return False
        self._deleted.add(session_id)
        self._live.pop(session_id, None)
        entry.session.close()
        if entry.standalone is not None:
            entry.standalone.close()
        return True

    def _entry(self, session_id: str, state: dict[str, Any]) -> HttpSession:
        session = ClientSession(
            session_id,
            era=Era.HANDSHAKE,
            initialized=True,
            protocol_version=str(state.get("v")),
            client_info=state.get("i"),
            capabilities=state.get("c") or {},
        )
        entry = HttpSession(session)
        self._forget_old()
        self._live[session_id] = entry
        return entry

    def _forget_old(self) -> None:
        now = time.monotonic()
        if len(self._live) < MAX_SESSIONS:
            return
        for session_id, entry in sorted(self._live.items(), key=lambda item: item[1].session.last_active):
            if len(self._live) < MAX_SESSIONS // 2 and now - entry.session.last_active < IDLE_S:
                break
            del self._live[session_id]

    def _open(self, session_id: str) -> dict[str, Any] | None:
        """The state sealed in `session_id`, if a key opens it and it has not expired."""
        if not session_id.startswith(SEAL_PREFIX):
            return None
        text = session_id[len(SEAL_PREFIX) :]
        try:
            sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            return None
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        for cipher in self._ciphers:
            try:
                state: Any = jsonrpc.value(cipher.decrypt(nonce, body, SEAL_CONTEXT))
            except (InvalidTag, ValueError):
                continue
            if not isinstance(state, dict):
                return None
            issued = state.get("t")
            if not isinstance(issued, int) or not -CLOCK_SKEW_S <= self._clock() - issued <= self._ttl_s:
                return None
            return dict(state)
        return None
