"""TF Serving-style errors: one exception type carrying a canonical status code.

Every layer raises :class:`ServingError` with a message written for the person
who sent the request; only ``api`` turns the code into an HTTP status.

    raise NotFound("Could not find any versions of model digits")
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """The canonical (absl/gRPC) status codes TF Serving reports."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class ServingError(Exception):
    """An error with a canonical code and a client-facing message."""

    code = Code.UNKNOWN

    def __init__(self, message: str, code: Code | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}: {self.message!r})"


class InvalidArgument(ServingError):
    code = Code.INVALID_ARGUMENT


class NotFound(ServingError):
    code = Code.NOT_FOUND


class FailedPrecondition(ServingError):
    code = Code.FAILED_PRECONDITION


class Unavailable(ServingError):
    code = Code.UNAVAILABLE


class Internal(ServingError):
    code = Code.INTERNAL


class Unimplemented(ServingError):
    code = Code.UNIMPLEMENTED


class ResourceExhausted(ServingError):
    code = Code.RESOURCE_EXHAUSTED
