"""Our canonical form against the official SDK's Signer, on awkward paths, queries and bodies."""

from __future__ import annotations

import hashlib

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from openfdi.wire import signing

AK, SK = "TESTAK00000000000001", "testSecretKey000000000000000000000000001"

CASES = [
    ("GET", "/v2/p/fdi/instances/i/tasks", [("limit", 10), ("offset", 0)], b""),
    ("GET", "/v2/p/fdi/instances/i/tasks", [("name", "a b+c/ü~*")], b""),
    ("POST", "/v2/p/fdi/instances/i/batch-operation/tasks", [], b'{"action_id": "start"}'),
    ("PUT", "/v2/p/fdi/instances/i/tasks/x%2Fy", [], '{"k": "ünïcode"}'.encode()),
    ("DELETE", "/v2/p/fdi/instances/i/datasources/abc/", [("z", ""), ("a", "1")], b""),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), CASES)
def test_signature_matches_the_official_sdk(method, path, query, body) -> None:
    headers = {
        "Content-Type": "application/json;charset=utf-8",
        "User-Agent": "huaweicloud-usdk-python/3.0",
        "X-Project-Id": "a4a5d4098fb4474fa22cd05f897d6b99",
        "X-Sdk-Date": "20261123T182012Z",
    }
    request = SdkRequest(
        method=method,
        schema="http",
        host="127.0.0.1:8080",
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(BasicCredentials(ak=AK, sk=SK)).sign(request)
    auth = signing.parse_authorization(request.header_params["Authorization"])
    assert auth is not None
    assert auth.access_key == AK

    lower = {k.lower(): str(v) for k, v in request.header_params.items()}
    canonical = signing.canonical_request(
        method, path, [(k, str(v)) for k, v in query], lower, auth.signed_headers, body
    )
    ours = signing.signature(SK, signing.string_to_sign(canonical, headers["X-Sdk-Date"]))
    assert ours == auth.signature


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer abc",
        "SDK-HMAC-SHA256 Access=AK",
        "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host",
        "SDK-HMAC-SM3 Access=AK, SignedHeaders=host, Signature=00",
    ],
)
def test_malformed_authorization_is_rejected(value: str) -> None:
    assert signing.parse_authorization(value) is None


def test_canonical_uri_always_ends_with_a_slash() -> None:
    assert signing.canonical_uri("/v2/a b") == "/v2/a%20b/"
    assert signing.canonical_uri("/v2/x/") == "/v2/x/"


def test_sdk_date_is_parsed_strictly() -> None:
    parsed = signing.parse_date("20261123T182012Z")
    assert parsed is not None
    assert parsed.isoformat() == "2026-11-23T18:20:12+00:00"
    for bad in (
        "",
        "20261123T182012",
        "2026-11-23T18:20:12Z",
        "20261323T182012Z",
        "2026112T1820123Z",
    ):
        assert signing.parse_date(bad) is None, bad


def test_a_verifier_hashes_the_body_whatever_is_declared() -> None:
    body = b'{"action_id": "stop"}'
    actual = hashlib.sha256(body).hexdigest()
    header = signing.CONTENT_HASH_HEADER
    verify = signing.verified_payload_hash
    assert verify(body, None, allow_unsigned=False) == actual
    assert verify(body, actual, allow_unsigned=False) == actual
    other = hashlib.sha256(b'{"action_id": "start"}').hexdigest()
    for declared in (other, actual.upper(), "", "x"):
        expected = actual if declared == "" else None  # an empty header is no declaration
        assert verify(body, declared, allow_unsigned=True) == expected, declared
    unsigned = signing.UNSIGNED_PAYLOAD
    assert verify(body, unsigned, allow_unsigned=False) is None
    assert verify(body, unsigned, allow_unsigned=True) == signing.UNSIGNED_PAYLOAD
    # No body, nothing to bind: the SDK signs the empty hash whatever it declared.
    assert verify(b"", other, allow_unsigned=False) == signing.EMPTY_HASH
    # The signer's side is unchanged: it trusts what it declared itself.
    assert signing.payload_hash(body, {header: other}) == other
