"""Typed path and query parameters: each bound is declared once, here, and is both what the
OpenAPI document says and what the request is checked against (400 FDI.3002 naming it).

Ids are what openfdi hands out (32 hex, or a hyphenated UUID for instances), but a path is only
held to the characters an id can have: an unknown id is a 404, while a NUL (which PostgreSQL
cannot store or compare), a space or a 5,000-character segment is refused before any look-up.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

# Letters, digits, '-' and '_': every id openfdi issues, and the SDK's (URL-quoted) ids.
ID_PATTERN = r"^[0-9A-Za-z_-]+$"
# fdi-api.md A: project_id and instance_id "Min 1 Max 64" (the older page; the newer gives none).
ID_MAX_LENGTH = 64
# A query string value: anything but NUL, which no metadata database stores or compares.
TEXT_PATTERN = r"^[^\x00]*$"
TEXT_MAX_LENGTH = 255
# A SQL BIGINT: a larger number cannot be compared with a stored one (SQLite raises).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ProjectId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="project")
]
InstanceId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="instance")
]
ObjectId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]

Text = Annotated[str | None, Query(max_length=TEXT_MAX_LENGTH, pattern=TEXT_PATTERN)]
# Any integer: paging clamps offset and limit (fdi-api.md F), so a huge one is an empty page.
Int = Annotated[int | None, Query()]
PageNumber = Annotated[int | None, Query(description="1-based page number")]
# A time outside a BIGINT is no time: refused rather than compared.
Millis = Annotated[int | None, Query(ge=INT64_MIN, le=INT64_MAX, description="epoch ms, UTC")]

# Sent by the official SDK (so never refused as unknown), accepted and not used by openfdi.
Ignored = Annotated[
    str | None,
    Query(max_length=TEXT_MAX_LENGTH, pattern=TEXT_PATTERN, description="accepted, not used"),
]
