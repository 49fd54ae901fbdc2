"""Who may use what on the HTTP front: bearer tokens and their scopes.

Every token has a name (for the audit trail and the logs; the token itself is never written
anywhere) and a set of scopes:

| scope | grants |
|---|---|
| `mcp` | `/mcp`: MCP itself |
| `metrics` | `/metrics` |
| `admin:read` | `GET /api/v1/...`: the tree, providers, logs, audit, metrics summary |
| `admin` | all of `admin:read`, `metrics`, and `POST /api/v1/...`: start, stop, restart |

Tokens come from `$HANGAR_TOKENS` (comma-separated; scopes `mcp` and `metrics`, as before
scopes existed), `$HANGAR_ADMIN_TOKENS` (scope `admin`), and the tokens file, one token a line
with its scopes and a name after it: `TOKEN [SCOPE,SCOPE...] [NAME]` (no scopes: `mcp,metrics`).

A token may be bound to a profile (`hangar.profiles`: what its client sees and may call):
`TOKEN:PROFILE` in `$HANGAR_TOKENS`, and in the file a field after the token that names a
configured profile, or `profile=NAME` (`TOKEN ops`, `TOKEN mcp profile=ops agent-7`). A token
without one sees everything.
A token's default name is `token:` and the first 8 hex digits of its SHA-256, stable and
harmless to log. With no tokens at all, nothing is checked (loopback only, unless
`--allow-unauthenticated`), and requests are made by `anonymous`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from hangar.config import HttpSettings
from hangar.errors import ConfigError

ENV_TOKENS = "HANGAR_TOKENS"
ENV_ADMIN_TOKENS = "HANGAR_ADMIN_TOKENS"
ANONYMOUS = "anonymous"


class Scope(enum.StrEnum):
    MCP = "mcp"
    METRICS = "metrics"
    ADMIN_READ = "admin:read"
    ADMIN = "admin"


IMPLIED = {Scope.ADMIN: frozenset({Scope.ADMIN, Scope.ADMIN_READ, Scope.METRICS})}
DEFAULT_SCOPES = frozenset({Scope.MCP, Scope.METRICS})  # a token given without scopes


PROFILE_FIELD = "profile="  # a tokens-file field naming the token's profile


@dataclass(frozen=True)
class Token:
    value: bytes
    name: str
    scopes: frozenset[Scope]
    profile: str | None = None  # what its client sees; None: everything

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


def token(
    value: str, scopes: frozenset[Scope] = DEFAULT_SCOPES, name: str | None = None, profile: str | None = None
) -> Token:
    granted: set[Scope] = set()
    for scope in scopes:
        granted |= IMPLIED.get(scope, frozenset({scope}))
    fingerprint = hashlib.sha256(value.encode()).hexdigest()[:8]
    return Token(value.encode(), name or f"token:{fingerprint}", frozenset(granted), profile)


def _known_profile(profile: str, profiles: Collection[str], where: str) -> str:
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none configured"
        raise ConfigError(f"unknown profile {profile!r} for a token", path=where, hint=f"profiles: {known}")
    return profile


def _is_scopes(text: str) -> bool:
    return all(item.strip() in Scope._value2member_map_ for item in text.split(","))


def parse_scopes(text: str, where: str) -> frozenset[Scope]:
    scopes = set()
    for item in text.split(","):
        try:
            scopes.add(Scope(item.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ConfigError(
                f"unknown token scope {item.strip()!r}", path=where, hint=f"scopes: {known}"
            ) from None
    return frozenset(scopes)


def load_tokens(
    settings: HttpSettings, environ: Mapping[str, str] | None = None, profiles: Collection[str] = ()
) -> list[Token]:
    """Tokens from $HANGAR_TOKENS, $HANGAR_ADMIN_TOKENS and the tokens file.

    Args:
        profiles: the names of the configured profiles, which tokens may be bound to.

    Raises:
        ConfigError: the tokens file cannot be read, names an unknown scope, or a token an unknown
            profile.
    """
    env = os.environ if environ is None else environ
    tokens = []
    for item in env.get(ENV_TOKENS, "").split(","):
        value, colon, profile = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if colon:
            _known_profile(profile, profiles, f"${ENV_TOKENS}")
        if value:
            tokens.append(token(value, profile=profile or None))
    tokens += [
        token(t.strip(), frozenset({Scope.ADMIN}))
        for t in env.get(ENV_ADMIN_TOKENS, "").split(",")
        if t.strip()
    ]
    if settings.tokens_file:
        try:
            lines = Path(settings.tokens_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read tokens file: {exc.strerror}", path=settings.tokens_file) from exc
        for number, line in enumerate(lines, 1):
            fields = line.split("#", 1)[0].split() if not line.lstrip().startswith("#") else []
            if not fields:
                continue
            where = f"{settings.tokens_file}:{number}"
            bound: str | None = None
            rest = []
            for field in fields[1:]:
                if field.startswith(PROFILE_FIELD):
                    bound = _known_profile(field[len(PROFILE_FIELD) :], profiles, where)
                elif field in profiles and not _is_scopes(field):
                    bound = field
                else:
                    rest.append(field)
            scopes = parse_scopes(rest[0], where) if rest else DEFAULT_SCOPES
            tokens.append(token(fields[0], scopes, rest[1] if len(rest) > 1 else None, bound))
    return tokens


def find(tokens: list[Token], given: bytes | None) -> Token | None:
    """The token `given` is, compared in constant time against every one (no early exit)."""
    if given is None:
        return None
    found = None
    for known in tokens:
        if hmac.compare_digest(given, known.value) and found is None:
            found = known
    return found


def scope_for(path: str, method: str) -> Scope | None:
    """The scope a request needs; None: open to all (health probes, the dashboard's page)."""
    if path == "/mcp" or path.startswith("/mcp/"):
        return Scope.MCP
    if path == "/metrics":
        return Scope.METRICS
    if path == "/api/v1/openapi.json":
        return None
    if path.startswith("/api/"):
        return Scope.ADMIN_READ if method in ("GET", "HEAD") else Scope.ADMIN
    return None  # /health/*, /ui (a page without data: the data comes from /api/v1), 404s
