"""One error root. Each error carries the gRPC status it maps to; the servicer
layer is the only place that turns it into `context.abort`."""

from __future__ import annotations

import enum


class Code(enum.Enum):
    # Values are grpc.StatusCode names; kept as strings so the domain does not
    # import grpc.
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class NbaError(Exception):
    code: Code = Code.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(NbaError):
    code = Code.INVALID_ARGUMENT


class NotFound(NbaError):
    code = Code.NOT_FOUND


class FailedPrecondition(NbaError):
    code = Code.FAILED_PRECONDITION


class Unavailable(NbaError):
    code = Code.UNAVAILABLE


class DeadlineExceeded(NbaError):
    code = Code.DEADLINE_EXCEEDED


class StoreUnavailable(NbaError):
    """Redis did not answer within the time budget (or the connection failed).
    The pipeline degrades on it; it reaches a caller only where nothing can
    be done without the store."""

    code = Code.UNAVAILABLE


class CatalogError(NbaError):
    """A catalog file that cannot be used. `errors` lists every problem found,
    each naming file, line and field."""

    code = Code.FAILED_PRECONDITION

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors) if errors else "invalid catalog")
        self.errors = list(errors)
