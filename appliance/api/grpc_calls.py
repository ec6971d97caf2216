"""What every gRPC service of the appliance does around a call: its deadline, and how a failed one ends.

    deadline = client_deadline(context)          # time.monotonic() at the client's deadline, or None
    check_deadline(deadline)                      # DEADLINE_EXCEEDED when it has passed: nothing runs
    except Exception as e:
        error = serving_error(e, "grpc_predict")  # a bug: logged, INTERNAL with nothing of it for the client
        abort(context, error)                     # the gRPC status of the code's name, TF Serving's message cut

TF Serving's PredictionService and the Open Inference Protocol's service end their calls alike.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import NoReturn

import grpc

from ..errors import Code, ServingError
from .responses import INTERNAL_ERROR

log = logging.getLogger(__name__)

STATUS = {code: grpc.StatusCode[code.name] for code in Code}
MESSAGE_LIMIT = 1024  # TF Serving's ToGRPCStatus cuts longer messages there


def client_deadline(context: grpc.ServicerContext) -> float | None:
    """The client's deadline as a time.monotonic() time; None without one (gRPC says 2**63 s away then)."""
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining < threading.TIMEOUT_MAX else None


def check_deadline(deadline: float | None) -> None:
    """DEADLINE_EXCEEDED once ``deadline`` has passed: the call waited for a server thread past it, the client
    has given up, so nothing runs."""
    if deadline is not None and deadline <= time.monotonic():
        raise ServingError("Deadline exceeded before the request was taken up", Code.DEADLINE_EXCEEDED)


def serving_error(error: Exception, api: str) -> ServingError:
    """``error`` as the client hears of it: a ServingError as it is, a bug as INTERNAL (its traceback logged)."""
    if isinstance(error, ServingError):
        return error
    log.error("unexpected error in gRPC %s", api, exc_info=error)
    return ServingError(INTERNAL_ERROR, Code.INTERNAL)


def status_details(message: str) -> str:
    if len(message) > MESSAGE_LIMIT:
        return message[:MESSAGE_LIMIT] + "...TRUNCATED"
    return message


def abort(context: grpc.ServicerContext, error: ServingError) -> NoReturn:
    """End the call with ``error``'s status and message (raises, as ``context.abort`` does)."""
    context.abort(STATUS[error.code], status_details(error.message))
    raise AssertionError("context.abort raises")  # for type checkers: grpc's stubs say it returns
