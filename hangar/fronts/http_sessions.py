"""Handshake-era sessions over Streamable HTTP, with ids that carry what the session negotiated.

`initialize` creates a session; its `Mcp-Session-Id` is the negotiated protocol version and the
client's info and capabilities, sealed with a key the root holds for the life of the instance
(HMAC-SHA256). A restarted router therefore takes up any session it has never seen from the id
alone, and the client carries on; what a session changes later (its log level, resource
subscriptions, its open streams) lives in the router and starts over after a restart. An id
that does not verify, or a session that was deleted, is answered 404, as the spec says, so the
client initializes again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field
from typing import Any

from hangar.fronts.streams import EventStore, Stream
from hangar.session import ClientSession
from workers import jsonrpc
from workers.protocol import Era

ENV_SESSION_KEY = "HANGAR_SESSION_KEY"
MAC_BYTES = 16
MAX_SESSIONS = 10_000  # in memory at once; the least recently used go first
IDLE_S = 3600.0  # a session unused this long is forgotten (its id still resumes it)


@dataclass(eq=False)
class HttpSession:
    session: ClientSession
    store: EventStore = field(default_factory=EventStore)
    standalone: Stream | None = None  # the GET stream, while one is open


class Sessions:
    def __init__(self, key: bytes | None = None) -> None:
        env_key = os.environ.get(ENV_SESSION_KEY)
        self._key = key or (bytes.fromhex(env_key) if env_key else os.urandom(32))
        self._live: dict[str, HttpSession] = {}
        self._deleted: set[str] = set()

    def create(self, protocol_version: str, params: dict[str, Any]) -> tuple[str, HttpSession]:
        state: dict[str, Any] = {
            "v": protocol_version,
            "c": params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {},
            "i": params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else None,
            "n": base64.urlsafe_b64encode(os.urandom(9)).decode(),
        }
        payload = base64.urlsafe_b64encode(jsonrpc.dumps(state)).decode().rstrip("=")
        session_id = f"{payload}.{self._mac(payload)}"
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
        payload, _, mac = session_id.rpartition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            state: Any = jsonrpc.value(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except Exception:
            return None
        return self._entry(session_id, state) if isinstance(state, dict) else None

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

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
