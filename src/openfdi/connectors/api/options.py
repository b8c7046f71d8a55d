"""What an API data source and its task ends say, parsed and vetted without I/O (layer: connectors).

Two inputs, both refused key by key with `InvalidContentError(field=...)` so create and update
answer 400 naming the bad key (docs/http-api.md has the full reference):

- the data source `content`: `url`, `api_method`, `api_auth_detail` (`ApiContent`);
- a task end's `message` object: the request, paging, time window and field mapping of a source
  (`SourceOptions`), or the request shape of a target (`TargetOptions`).

Imports no HTTP library: the spec's `check_options` runs this at create time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from openfdi.connectors._messages import Field, OptionsError, parse_options
from openfdi.connectors.errors import InvalidContentError

__all__ = [
    "AUTH_METHODS",
    "ApiContent",
    "Auth",
    "Paging",
    "RetryPolicy",
    "SourceOptions",
    "TargetOptions",
    "Window",
    "check_options",
    "parse_content",
    "parse_source",
    "parse_target",
    "steps_of",
]

MASK = "******"
"""What the API answers for a secret; sent back on update it means "keep the stored one"."""

METHODS = ("GET", "POST", "PUT", "PATCH")
AUTH_METHODS = {
    "none": "none",
    "basicauth": "basic",
    "basic": "basic",
    "bearer": "bearer",
    "token": "bearer",
    "oauth2.0": "oauth2",
    "oauth2": "oauth2",
    "aksk": "aksk",
    "hmac": "aksk",
    "apikey": "apikey",
}
"""`api_auth_detail.auth_method` spellings (ROMA's and openfdi's) -> the kind used here."""

PAGING_TYPES = ("none", "page", "offset", "cursor", "link")
TIME_FORMATS = ("iso", "epoch_s", "epoch_ms")
_PATH = re.compile(r"^\$((\.[A-Za-z_][A-Za-z0-9_\-]*)|(\[\d+\])|(\['[^']*'\]))*$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\['([^']*)'\]")
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

SOURCE_KEYS = (
    "method", "path", "headers", "query", "body", "records", "paging", "window", "timeout_s",
    "retries", "retry_max_s", "max_response_bytes",
)  # fmt: skip
TARGET_KEYS = (
    "method", "path", "headers", "query", "mode", "root", "rows_per_request", "decimals",
    "timeout_s", "retries", "retry_max_s",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Auth:
    kind: str
    """none, basic, bearer, oauth2 or aksk."""
    values: Mapping[str, str] = field(default_factory=dict)

    def secrets(self) -> tuple[str, ...]:
        keys = ("password", "token", "client_secret", "sk", "key")
        return tuple(self.values[k] for k in keys if self.values.get(k))


@dataclass(frozen=True, slots=True)
class ApiContent:
    url: str
    method: str
    auth: Auth | None
    """None when the content carried the mask (a create/update check that keeps the stored
    secret): nothing to vet, and never used to connect."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 5
    """Tries after the first, at most, on 429, 408, 5xx and lost connections."""
    max_s: float = 60.0
    """Total time spent waiting between tries, at most: past it the last answer fails the run."""
    timeout_s: float = 30.0
    """Seconds one request may take to connect, to send, and between two bytes received."""


@dataclass(frozen=True, slots=True)
class Paging:
    type: str = "none"
    param: str = ""
    """The query (or body) parameter carrying the page number, offset or cursor."""
    start: int = 1
    """The first page's number (page paging)."""
    size_param: str | None = None
    size: int | None = None
    next_path: tuple[str | int, ...] | None = None
    """Where the next cursor (cursor) or the next page's URL (link) is in a response; a link
    paging without it follows the `Link: <...>; rel="next"` header."""
    total_path: tuple[str | int, ...] | None = None
    """Where the total number of records is: the read ends once it has that many."""
    max_pages: int | None = None
    in_body: bool = False


@dataclass(frozen=True, slots=True)
class Window:
    start_param: str
    end_param: str
    size_s: float
    format: str = "iso"
    """iso, epoch_s, epoch_ms, or a strftime pattern (times in UTC)."""
    lag_s: float = 0.0
    """The last window ends this long before now, for an API whose recent records still move."""
    start: datetime | None = None
    """The first run's start when the task's incremental.start does not give one."""
    in_body: bool = False


@dataclass(frozen=True, slots=True)
class SourceOptions:
    method: str | None
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: Any
    records: tuple[str | int, ...]
    fields: tuple[Field, ...]
    paging: Paging
    window: Window | None
    retry: RetryPolicy
    max_response_bytes: int


@dataclass(frozen=True, slots=True)
class TargetOptions:
    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    per_row: bool
    root: str | None
    rows_per_request: int
    decimals_as_strings: bool
    fields: tuple[Field, ...] | None
    retry: RetryPolicy


def steps_of(path: str) -> tuple[str | int, ...]:
    """A JSON path's steps (keys and indexes), as `_messages` reads its field paths."""
    steps: list[str | int] = []
    for match in _STEP.finditer(path):
        key, index, quoted = match.groups()
        steps.append(key if key is not None else int(index) if index is not None else quoted)
    return tuple(steps)


def _http_url(value: Any, name: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidContentError(f"{name} must be an http:// or https:// URL", field=name)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise InvalidContentError(f"{name} has an invalid port", field=name) from None
    return text


def _auth(raw: Any) -> Auth | None:
    name = "api_auth_detail"
    if raw is None or raw == "":
        return Auth("none")
    if raw == MASK:
        return None
    if isinstance(raw, str):  # stored encrypted as JSON text; decrypted back to that text
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidContentError(f"{name} must be a JSON object", field=name) from None
    if not isinstance(raw, Mapping):
        raise InvalidContentError(f"{name} must be an object", field=name)
    method = str(raw.get("auth_method", "none")).strip().lower()
    kind = AUTH_METHODS.get(method)
    if kind is None:
        choices = ", ".join(sorted(AUTH_METHODS))
        raise InvalidContentError(
            f"{name}.auth_method must be one of {choices}", field=f"{name}.auth_method"
        )
    needed = {
        "none": (),
        "basic": ("user_name", "password"),
        "bearer": ("token",),
        "oauth2": ("token_url", "client_id", "client_secret"),
        "aksk": ("ak", "sk"),
        "apikey": ("key",),
    }[kind]
    values: dict[str, str] = {}
    for key, value in raw.items():
        if key != "auth_method" and value is not None:
            if not isinstance(value, str | int):
                raise InvalidContentError(f"{name}.{key} must be a string", field=f"{name}.{key}")
            values[str(key)] = str(value)
    for key in needed:
        if not values.get(key, "").strip():
            raise InvalidContentError(
                f"{name}.{key} is required for auth_method {method}", field=f"{name}.{key}"
            )
    if kind == "oauth2":
        _http_url(values["token_url"], f"{name}.token_url")
        if values.get("client_auth", "basic") not in ("basic", "body"):
            raise InvalidContentError(
                f"{name}.client_auth must be basic or body", field=f"{name}.client_auth"
            )
    if kind == "apikey":
        if values.get("in", "header") not in ("header", "query"):
            raise InvalidContentError(f"{name}.in must be header or query", field=f"{name}.in")
        if not _HEADER.match(values.get("name", "X-API-Key")):
            raise InvalidContentError(f"{name}.name is not a valid name", field=f"{name}.name")
    return Auth(kind, values)


def parse_content(content: Mapping[str, Any]) -> ApiContent:
    """The data source `content` of an API source or target."""
    url = _http_url(content.get("url"), "url")
    method = str(content.get("api_method") or "GET").strip().upper()
    if method not in METHODS:
        raise InvalidContentError(
            f"api_method must be one of {', '.join(METHODS)}", field="api_method"
        )
    return ApiContent(url, method, _auth(content.get("api_auth_detail")))


# --- task end options ---------------------------------------------------------------------------


def _where(key: str) -> str:
    return f"message.{key}"


def _int(options: Mapping[str, Any], key: str, least: int, default: int | None) -> int | None:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise OptionsError(f"{key} must be an integer of at least {least}", field=key)
    return value


def _number(options: Mapping[str, Any], key: str, least: float, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= least:
        raise OptionsError(f"{key} must be a number of at least {least:g}", field=key)
    return float(value)


def _name(options: Mapping[str, Any], key: str, *, required: bool, default: str = "") -> str:
    value = options.get(key)
    if value is None:
        if required:
            raise OptionsError(f"{key} is required", field=key)
        return default
    if not isinstance(value, str) or not value.strip():
        raise OptionsError(f"{key} must be a non-empty string", field=key)
    return value


def _json_path(options: Mapping[str, Any], key: str) -> tuple[str | int, ...] | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _PATH.match(value):
        raise OptionsError(f"{key} must be a JSON path like $.data.items", field=key)
    return steps_of(value)


def _strings(options: Mapping[str, Any], key: str, *, headers: bool = False) -> dict[str, str]:
    value = options.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OptionsError(f"{key} must be an object of names to strings", field=key)
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise OptionsError(f"{key}.{name} must be a string or a number", field=f"{key}.{name}")
        text = str(item)
        if headers and (not _HEADER.match(str(name)) or "\r" in text or "\n" in text):
            raise OptionsError(f"{key}.{name} is not a valid header", field=f"{key}.{name}")
        out[str(name)] = text
    return out


def _method(options: Mapping[str, Any], default: str | None) -> str | None:
    value = options.get("method")
    if value is None:
        return default
    method = str(value).strip().upper()
    if method not in METHODS:
        raise OptionsError(f"method must be one of {', '.join(METHODS)}", field="method")
    return method


def _path(options: Mapping[str, Any]) -> str:
    value = options.get("path", "")
    if not isinstance(value, str) or "://" in value or any(c in value for c in "\r\n #"):
        raise OptionsError("path must be a URL path added to the data source's url", field="path")
    return value


def _retry(options: Mapping[str, Any]) -> RetryPolicy:
    retries = _int(options, "retries", 0, 5)
    assert retries is not None
    return RetryPolicy(
        retries=retries,
        max_s=_number(options, "retry_max_s", 0, 60.0),
        timeout_s=_number(options, "timeout_s", 0.1, 30.0),
    )


def _placement(options: Mapping[str, Any]) -> bool:
    where = options.get("in", "query")
    if where not in ("query", "body"):
        raise OptionsError("in must be query or body", field="in")
    return bool(where == "body")


def _paging(raw: Any) -> Paging:
    if raw is None:
        return Paging()
    if not isinstance(raw, Mapping):
        raise OptionsError("paging must be an object", field="paging")
    known = {"type", "param", "start", "size_param", "size", "next_path", "total_path",
             "max_pages", "in"}  # fmt: skip
    _no_other_keys(raw, known)
    kind = raw.get("type", "none")
    if kind not in PAGING_TYPES:
        raise OptionsError(f"type must be one of {', '.join(PAGING_TYPES)}", field="type")
    defaults = {"page": "page", "offset": "offset", "cursor": "cursor"}
    param = _name(raw, "param", required=False, default=defaults.get(kind, ""))
    size_param = raw.get("size_param")
    if size_param is not None:
        size_param = _name(raw, "size_param", required=True)
    size = _int(raw, "size", 1, None)
    if (size is None) != (size_param is None) and kind != "link":
        raise OptionsError("size_param and size go together", field="size")
    if kind == "offset" and size is None:
        raise OptionsError("offset paging needs size_param and size", field="size")
    next_path = _json_path(raw, "next_path")
    if kind == "cursor" and next_path is None:
        raise OptionsError(
            "cursor paging needs next_path (where the next cursor is)", field="next_path"
        )
    start = _int(raw, "start", 0, 1)
    assert start is not None
    return Paging(
        type=kind,
        param=param,
        start=start,
        size_param=size_param,
        size=size,
        next_path=next_path,
        total_path=_json_path(raw, "total_path"),
        max_pages=_int(raw, "max_pages", 1, None),
        in_body=_placement(raw),
    )


def parse_time(text: Any, key: str) -> datetime:
    """An ISO-8601 time (a naive one is UTC) as an aware UTC datetime."""
    try:
        stamp = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise OptionsError(f"{key} must be an ISO-8601 time", field=key) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC)


def _window(raw: Any) -> Window | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise OptionsError("window must be an object", field="window")
    _no_other_keys(raw, {"start_param", "end_param", "size_s", "format", "lag_s", "start", "in"})
    fmt = raw.get("format", "iso")
    if not isinstance(fmt, str) or (fmt not in TIME_FORMATS and "%" not in fmt):
        raise OptionsError(
            f"format must be one of {', '.join(TIME_FORMATS)} or a strftime pattern",
            field="format",
        )
    start = raw.get("start")
    return Window(
        start_param=_name(raw, "start_param", required=True),
        end_param=_name(raw, "end_param", required=True),
        size_s=_number(raw, "size_s", 1, 86_400.0),
        format=fmt,
        lag_s=_number(raw, "lag_s", 0, 0.0),
        start=None if start is None else parse_time(start, "start"),
        in_body=_placement(raw),
    )


def _no_other_keys(raw: Mapping[str, Any], known: set[str] | tuple[str, ...]) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise OptionsError(f"{unknown[0]} is not a key here", field=unknown[0])


def _nested(prefix: str, parse: Any, raw: Any) -> Any:
    """`parse(raw)`, with the bad key named from `message.` down."""
    try:
        return parse(raw)
    except OptionsError as exc:
        where = f"{prefix}.{exc.field}" if exc.field else prefix
        raise OptionsError(exc.message, field=where) from None


def _fields(options: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[Field, ...] | None:
    """The shared `format`/`fields` keys of a message end (`_messages.parse_options`): an API
    speaks JSON only, and a field takes a `path` (an HTTP answer has no message metadata)."""
    if options.get("format", "json") != "json":
        raise OptionsError("an API end speaks json only", field="message.format")
    for key in ("delimiter", "template"):
        if key in options:
            raise OptionsError(f"{key} is not a key of an API end", field=f"message.{key}")
    parsed = parse_options(options, keys)
    for i, item in enumerate(parsed.fields):
        if item.meta is not None:
            where = f"message.fields[{i}].meta"
            raise OptionsError("an API field takes a path, not meta", field=where)
    return parsed.fields if options.get("fields") is not None else None


def parse_source(options: Mapping[str, Any] | None) -> SourceOptions:
    """A source end's `message` object; OptionsError naming the first bad key."""
    options = options or {}
    if not isinstance(options, Mapping):
        raise OptionsError("must be an object", field="message")
    fields = _fields(options, SOURCE_KEYS)
    body = options.get("body")
    if body is not None and not isinstance(body, Mapping):
        raise OptionsError("body must be a JSON object", field="message.body")
    simple = {
        "method": lambda o: _method(o, None),
        "path": _path,
        "headers": lambda o: _strings(o, "headers", headers=True),
        "query": lambda o: _strings(o, "query"),
        "retry": _retry,
        "max_response_bytes": lambda o: _int(o, "max_response_bytes", 1024, 64 * 1024 * 1024),
        "records": lambda o: _json_path(o, "records") or (),
    }
    got = {key: _nested("message", parse, options) for key, parse in simple.items()}
    return SourceOptions(
        method=got["method"],
        path=got["path"],
        headers=got["headers"],
        query=got["query"],
        body=body,
        records=got["records"],
        fields=fields or (),
        paging=_nested("message.paging", _paging, options.get("paging")),
        window=_nested("message.window", _window, options.get("window")),
        retry=got["retry"],
        max_response_bytes=got["max_response_bytes"],
    )


def parse_target(options: Mapping[str, Any] | None) -> TargetOptions:
    """A target end's `message` object; OptionsError naming the first bad key."""
    options = options or {}
    if not isinstance(options, Mapping):
        raise OptionsError("must be an object", field="message")
    fields = _fields(options, TARGET_KEYS)
    mode = options.get("mode", "batch")
    if mode not in ("batch", "row"):
        raise OptionsError("mode must be batch or row", field="message.mode")
    decimals = options.get("decimals", "number")
    if decimals not in ("number", "string"):
        raise OptionsError("decimals must be number or string", field="message.decimals")
    root = options.get("root")
    if root is not None and (not isinstance(root, str) or not root):
        raise OptionsError("root must be a key name", field="message.root")
    simple = {
        "method": lambda o: _method(o, "POST"),
        "path": _path,
        "headers": lambda o: _strings(o, "headers", headers=True),
        "query": lambda o: _strings(o, "query"),
        "retry": _retry,
        "rows": lambda o: _int(o, "rows_per_request", 1, 1000),
    }
    got = {key: _nested("message", parse, options) for key, parse in simple.items()}
    return TargetOptions(
        method=got["method"],
        path=got["path"],
        headers=got["headers"],
        query=got["query"],
        per_row=mode == "row",
        root=root,
        rows_per_request=got["rows"],
        decimals_as_strings=decimals == "string",
        fields=fields,
        retry=got["retry"],
    )


_TARGET_ONLY = frozenset(TARGET_KEYS) - frozenset(SOURCE_KEYS)


def check_options(options: Mapping[str, Any]) -> None:
    """Vet an API end's `message` object at create/update. The spec does not know the end's
    role: the object is read as a target's when it has a key only targets take, else as a
    source's (the run reads it again in its real role)."""
    is_target = isinstance(options, Mapping) and bool(_TARGET_ONLY & set(options))
    (parse_target if is_target else parse_source)(options)
