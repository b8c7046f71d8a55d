"""SDK-HMAC-SHA256 request signing, exactly as `huaweicloudsdkcore.signer.Signer` computes it.

Pure functions shared by the server (verifying) and the client (signing), so the two can never
disagree about the canonical form.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
CONTENT_HASH_HEADER = "x-sdk-content-sha256"
# A signature that leaves out either header could be replayed at any time or to any host.
REQUIRED_SIGNED_HEADERS = frozenset({"host", "x-sdk-date"})
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


def parse_date(value: str) -> datetime | None:
    """An `X-Sdk-Date` value (DATE_FORMAT, UTC) as an aware datetime; None if malformed.

    A fixed-width match instead of `strptime`, which costs several times more on every request.
    """
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:  # month 13, February 30, hour 24, ...
        return None


def canonical_uri(path: str) -> str:
    """Percent-decode, encode each segment with safe='~', and always end with '/'."""
    encoded = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    pairs = sorted(params)
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def payload_hash(body: bytes, headers: Mapping[str, str]) -> str:
    """The last line of the canonical request, as the SDK's signer writes it.

    The signer trusts a declared `X-Sdk-Content-Sha256` (it wrote it itself); a verifier must
    not: see `verified_payload_hash`.
    """
    if not body:
        return EMPTY_HASH
    declared = headers.get(CONTENT_HASH_HEADER)
    if declared:
        return declared
    return hashlib.sha256(body).hexdigest()


def verified_payload_hash(body: bytes, declared: str | None, *, allow_unsigned: bool) -> str | None:
    """`payload_hash` as a verifier may use it, or None if the `declared` X-Sdk-Content-Sha256
    must be refused.

    A declared hex digest that is not the body's would let a captured request carry another
    body under the same signature (the header need not even be signed). `UNSIGNED-PAYLOAD` (what
    the SDK declares for a non-JSON body) leaves the body unbound, so it passes only where
    `allow_unsigned` says so.
    """
    if not body:
        return EMPTY_HASH
    actual = hashlib.sha256(body).hexdigest()
    if not declared:
        return actual
    if declared == UNSIGNED_PAYLOAD:
        return declared if allow_unsigned else None
    return actual if hmac.compare_digest(declared.encode(), actual.encode()) else None


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
    *,
    payload: str | None = None,
) -> str:
    """`headers` must be keyed by lowercase name; `payload` (the body's hash line) defaults to
    `payload_hash` of the body, as the signer computes it."""
    header_lines = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_lines,
            ";".join(signed_headers),
            payload if payload is not None else payload_hash(body, headers),
        )
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Authorization:
    access_key: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> Authorization | None:
    """Parse `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`; None if malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    try:
        return Authorization(
            access_key=fields["Access"],
            signed_headers=[h for h in fields["SignedHeaders"].split(";") if h],
            signature=fields["Signature"],
        )
    except KeyError:
        return None


def authorization_header(access_key: str, signed_headers: list[str], sig: str) -> str:
    joined = ";".join(signed_headers)
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={joined}, Signature={sig}"
