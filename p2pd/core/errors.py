# -*- test-case-name: tests.unit.test_asking,tests.unit.test_answering -*-
"""
Why a request failed: the SPP error codes, and the errors every layer
raises with them.
"""

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.python.failure import Failure


class ErrorCode(IntEnum):
    """
    Why a request (or, with request id 0, the whole connection) failed.
    """

    BAD_REQUEST = 1
    NOT_FOUND = 2
    FORBIDDEN = 3
    BUSY = 4
    UNSUPPORTED_VERSION = 5
    CHANGED = 6
    UNAVAILABLE = 7
    TIMEOUT = 8
    INTERNAL = 9
    CANCELLED = 10


class SPPError(Exception):
    """
    A request failed with an SPP error code (L{ErrorCode}).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"error {self.code}"
        return f"{name}: {self.message}"


def errorCode(reason: "Failure") -> int | None:
    """
    The SPP error code a failure carries, or None if it is not an L{SPPError}.
    """
    value = reason.value
    return value.code if isinstance(value, SPPError) else None


class SelfConnection(Exception):
    """
    A node connected to itself: a URL named this very node.
    """
