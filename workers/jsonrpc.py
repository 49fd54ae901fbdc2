"""JSON-RPC 2.0 as the relay reads it: the envelope decoded, everything inside kept as raw bytes.

`decode` turns one line (or HTTP body) into an `Envelope` whose `id`, `params`, `result` and
`error` are `msgspec.Raw`: the bytes as they came, found by one C-speed scan and never built
into Python objects. `encode` writes a message from raw parts the same way. Only what a hop must
read (a method name, a tool name, an id to match) is decoded, by the code that needs it.

The error codes MCP uses are defined here, once.
"""

from __future__ import annotations

from typing import Any

import msgspec

Raw = msgspec.Raw
ABSENT = msgspec.Raw(b"")  # a member that was not in the message
UNSET = msgspec.UNSET  # an `id` that was not in the message: a notification
RequestId = int | str  # what MCP allows as a request id

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020  # 2026-07-28 over HTTP: a header disagrees with the body
MISSING_CLIENT_CAPABILITY = -32021  # 2026-07-28: the request did not declare what the tool needs
UNSUPPORTED_PROTOCOL_VERSION = -32022
REQUEST_CANCELLED = -32800  # handshake-era Streamable HTTP ends a cancelled request's stream with it


class Envelope(msgspec.Struct):
    """One JSON-RPC message; a member's `ABSENT` value means the message did not have it."""

    jsonrpc: str = ""
    id: RequestId | msgspec.UnsetType | None = UNSET
    method: str = ""
    params: Raw = ABSENT
    result: Raw = ABSENT
    error: Raw = ABSENT

    @property
    def is_request(self) -> bool:
        return bool(self.method) and self.id is not UNSET

    @property
    def is_notification(self) -> bool:
        return bool(self.method) and self.id is UNSET


class InvalidMessage(ValueError):
    """A line that is not a JSON-RPC message: `code` says which JSON-RPC error it earns."""

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


class ErrorObject(msgspec.Struct):
    code: int
    message: str = ""
    data: Any = None


_envelope = msgspec.json.Decoder(Envelope)
_members = msgspec.json.Decoder(dict[str, Raw])
_error_object = msgspec.json.Decoder(ErrorObject)
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decode(data: bytes) -> Envelope:
    """The envelope of one message.

    Raises:
        InvalidMessage: not JSON (-32700), or JSON that is not one JSON-RPC message (-32600).
    """
    try:
        envelope = _envelope.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidMessage(INVALID_REQUEST, _invalid_reason(data, exc), _id_of(data)) from None
    except msgspec.DecodeError as exc:
        raise InvalidMessage(PARSE_ERROR, f"Parse error: {exc}") from None
    request_id = None if envelope.id is UNSET else envelope.id
    if envelope.jsonrpc != "2.0":
        raise InvalidMessage(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', request_id)
    if envelope.method:
        if envelope.id is None:
            raise InvalidMessage(INVALID_REQUEST, "Invalid Request: id must be a string or a number")
        if envelope.params and bytes(memoryview(envelope.params)[:1]) != b"{":
            raise InvalidMessage(INVALID_PARAMS, "Invalid params: params must be an object", request_id)
    elif envelope.id is UNSET or not (envelope.result or envelope.error):
        raise InvalidMessage(
            INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response"
        )
    return envelope


def _invalid_reason(data: bytes, exc: msgspec.ValidationError) -> str:
    stripped = data.lstrip()
    if stripped[:1] == b"[":
        return "Invalid Request: batches are not supported; send one message per line"
    return f"Invalid Request: {exc}"


def _id_of(data: bytes) -> RequestId | None:
    """The id of a message whose envelope did not validate, if it has a usable one."""
    try:
        found = _any.decode(data)
    except msgspec.DecodeError:
        return None
    request_id = found.get("id") if isinstance(found, dict) else None
    return request_id if isinstance(request_id, int | str) and not isinstance(request_id, bool) else None


def members(raw: Raw | bytes) -> dict[str, Raw]:
    """An object's members, each kept raw (`params` split into `name`, `arguments`, `_meta`, ...).

    Raises:
        ValueError: `raw` is not a JSON object.
    """
    if not raw:
        return {}
    try:
        return _members.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"expected an object: {exc}") from None


def value(raw: Raw | bytes) -> Any:
    """A raw member decoded to Python data (for the small things a hop must read)."""
    return _any.decode(raw)


def dumps(obj: Any) -> bytes:
    """JSON for Python data; `Raw` values anywhere inside are written as they are."""
    return _encoder.encode(obj)


def error_object(raw: Raw | bytes) -> ErrorObject:
    try:
        return _error_object.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorObject(INTERNAL_ERROR, "malformed error object", None)


# Messages are put together with `bytes.join`: as quick as `%` for a small message, and an order
# of magnitude quicker for a large one (`%` grows its output as it goes; join copies each part once).


def request(request_id: RequestId, method: str, params: Raw | bytes | None) -> bytes:
    rid = _encoder.encode(request_id)
    if params:
        return b"".join(
            (
                b'{"jsonrpc":"2.0","id":',
                rid,
                b',"method":',
                _encoder.encode(method),
                b',"params":',
                params,
                b"}",
            )
        )
    return b"".join((b'{"jsonrpc":"2.0","id":', rid, b',"method":', _encoder.encode(method), b"}"))


def notification(method: str, params: Raw | bytes | None) -> bytes:
    if params:
        return b"".join((b'{"jsonrpc":"2.0","method":', _encoder.encode(method), b',"params":', params, b"}"))
    return b"".join((b'{"jsonrpc":"2.0","method":', _encoder.encode(method), b"}"))


def encode_id(request_id: RequestId | None) -> bytes:
    return b"null" if request_id is None else _encoder.encode(request_id)


def result(request_id: RequestId, result_json: Raw | bytes) -> bytes:
    return b"".join(
        (b'{"jsonrpc":"2.0","id":', _encoder.encode(request_id), b',"result":', result_json, b"}")
    )


def error(request_id: RequestId | None, code: int, message: str, data: Any = None) -> bytes:
    obj: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        obj["data"] = data
    return b'{"jsonrpc":"2.0","id":%b,"error":%b}' % (encode_id(request_id), _encoder.encode(obj))


def error_raw(request_id: RequestId | None, error_json: Raw | bytes) -> bytes:
    return b"".join((b'{"jsonrpc":"2.0","id":', encode_id(request_id), b',"error":', error_json, b"}"))


def replace_members(raw: Raw | bytes | None, changes: dict[str, Any]) -> bytes:
    """`raw` (an object, or nothing) with some members replaced, added (a value) or removed (None).

    Values are Python data or `Raw`; the members left alone are copied as bytes.
    """
    return with_members(members(raw) if raw else {}, changes)


def with_members(current: dict[str, Raw], changes: dict[str, Any]) -> bytes:
    """An object of already-split members (see `members`), some replaced, added or removed."""
    updated = dict(current)
    for key, new in changes.items():
        if new is None:
            updated.pop(key, None)
        else:
            updated[key] = new if isinstance(new, Raw) else Raw(_encoder.encode(new))
    return _encoder.encode(updated)
