"""What every remote transport shares: the request headers with the bearer token, and TLS."""

from __future__ import annotations

import os
import ssl

from workers.spec import ProviderSpec
from workers.transport import TransportError


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
