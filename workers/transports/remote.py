"""What every remote transport shares: the request headers with the bearer token, TLS, and the
answers that are the same for each (`RemoteEnd`)."""

from __future__ import annotations

import os
import ssl

from workers.spec import ProviderSpec
from workers.transport import GarbageLog, TransportError


class RemoteEnd:
    """A provider reached over the network: no stderr, no limits of hangar's, an end that is a lost
    connection. `lost_reason` says why it was lost."""

    _url: str
    _garbage: GarbageLog

    def lost_reason(self) -> str:
        raise NotImplementedError

    def stderr_tail(self) -> list[str]:
        return []

    def report_garbage(self, line: bytes, reason: str) -> None:
        self._garbage.report(line, reason)

    def exit_detail(self, returncode: int, killed_for: str | None = None) -> str:
        if killed_for is not None:
            return f"{killed_for}; disconnected"
        return f"connection to {self._url} lost: {self.lost_reason()}"

    def over_limit(self) -> str | None:
        return None  # its engine or its host enforces limits


def request_headers(spec: ProviderSpec) -> dict[str, str]:
    """The provider's `headers`, plus `Authorization: Bearer` from `bearer_token_env` (read now).

    Raises:
        TransportError: the bearer token's variable is not set.
    """
    headers = dict(spec.headers)
    if spec.bearer_token_env:
        token = os.environ.get(spec.bearer_token_env)
        if not token:
            raise TransportError(f"${spec.bearer_token_env} (the bearer token) is not set")
        headers["Authorization"] = f"Bearer {token}"
    return headers


def tls_context(spec: ProviderSpec) -> ssl.SSLContext:
    """Verified TLS (against `ca_file`, else the system's CAs) unless `verify_tls: false`."""
    context = ssl.create_default_context(cafile=spec.ca_file)
    if not spec.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
