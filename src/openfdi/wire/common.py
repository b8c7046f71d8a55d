"""Shared wire shapes: the error body and list envelopes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from openfdi.wire import text


class WireModel(BaseModel):
    """Requests ignore unknown fields (clients of other ROMA versions send more), and refuse text
    no metadata database can store (`openfdi.wire.text`), naming the field."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        problem = text.problem(value, info.field_name or "body")
        if problem:
            raise ValueError(problem)
        return value


class ErrorResponse(BaseModel):
    error_code: str
    error_msg: str
    request_id: str | None = None
