"""Shared wire shapes: the error body and list envelopes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Requests ignore unknown fields (clients of other ROMA versions send more)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ErrorResponse(BaseModel):
    error_code: str
    error_msg: str
    request_id: str | None = None
