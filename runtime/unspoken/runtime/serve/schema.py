"""Request and response bodies of the HTTP service (pydantic models; they also make the OpenAPI schema).

The models check JSON shape and types (strict: a number is not a string); whether a text is usable (empty,
whitespace only, too long for the backbone) is the runtime's call, answered as the same 422 error body.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr


class ScoreRequest(BaseModel):
    """One content judged against one or more criteria."""

    model_config = ConfigDict(extra="forbid")

    content: StrictStr = Field(description="the text to judge")
    criteria: list[StrictStr] = Field(min_length=1, description="criteria in plain English, scored in this order")
    truncate: StrictBool = Field(
        default=False,
        description="cut content too long for the backbone to the longest beginning that fits (the answer says "
        '"truncated": true); without it an over-long prompt is answered 422 naming the field',
    )


class BatchRequest(BaseModel):
    """Many items in one request, admitted to the queue all or none."""

    model_config = ConfigDict(extra="forbid")

    items: list[ScoreRequest] = Field(min_length=1, description="items, answered in this order")


class Timing(BaseModel):
    """Where the time went, in milliseconds."""

    queue: float = Field(description="waiting for a batch (the longest wait among the request's items)")
    inference: float = Field(description="scoring the batch(es) that held the request's items")
    total: float = Field(description="from the request's arrival to its answer")


class ItemResult(BaseModel):
    probabilities: list[float] = Field(description="calibrated probability per criterion, in request order")
    criteria: list[str]
    truncated: bool = Field(description="whether the content was cut to fit")


class ScoreResponse(ItemResult):
    bundle: str = Field(description="sha256 of the bundle's manifest.json: which model and head answered")
    timing_ms: Timing


class BatchResponse(BaseModel):
    results: list[ItemResult]
    bundle: str = Field(description="sha256 of the bundle's manifest.json")
    timing_ms: Timing


class ErrorDetail(BaseModel):
    type: str = Field(description="invalid_input, body_too_large, unsupported_media_type, overloaded, not_ready, "
                      "not_found, http_error or internal")
    message: str
    field: str | None = Field(default=None, description="the offending field, e.g. items[2].criteria[0]")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str = Field(description="ok, ready, loading or failed")
    bundle: str | None = None
    error: str | None = None
