"""Who may call the gRPC API: the bearer token in ``authorization`` metadata, as REST asks for its header.

    interceptor = token_interceptor(access)       # None when the policy asks no token of anyone
    server = grpc.server(executor, interceptors=[interceptor])

With a token for every request (``--host`` beyond loopback, or ``--token``), every call needs the metadata
``authorization: Bearer <token>`` (UNAUTHENTICATED otherwise, with REST's 401 text), except the health service:
load balancers and orchestrators probe it without credentials, and it tells nothing but up or down. With
``--require_token_for_control`` only the control calls that change what is served (ModelService's
HandleReloadConfigRequest, the Open Inference Protocol's RepositoryModelLoad and RepositoryModelUnload) need it, as
only the control API's changes do over REST.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

import grpc

from .security import TOKEN_MISSING, AccessPolicy

#: Methods anyone may call: the standard health service.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
#: Methods that change what is served: they need the control token (``--require_token_for_control``).
CONTROL_METHODS = frozenset(
    {
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
        "/inference.GRPCInferenceService/RepositoryModelLoad",
        "/inference.GRPCInferenceService/RepositoryModelUnload",
    }
)


def token_interceptor(access: AccessPolicy) -> grpc.ServerInterceptor | None:
    """The interceptor enforcing ``access``'s tokens on gRPC calls, or None when it asks none."""
    if access.token is None and access.control_token is None:
        return None
    return _TokenRequired(access.token, access.control_token)


def has_token(metadata: Sequence[tuple[str, str | bytes]] | None, token: str) -> bool:
    """Whether ``metadata`` carries ``authorization: Bearer <token>`` (compared in constant time)."""
    expected = f"Bearer {token}".encode()
    found = False
    for key, value in metadata or ():
        if key == "authorization":
            sent = value if isinstance(value, bytes) else value.encode()
            found |= hmac.compare_digest(sent, expected)  # every value compared: the time says nothing
    return found


class _TokenRequired(grpc.ServerInterceptor):
    def __init__(self, token: str | None, control_token: str | None):
        self._token = token
        self._control_token = control_token

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        token = self._token or (self._control_token if method in CONTROL_METHODS else None)
        if method in OPEN_METHODS or token is None or has_token(handler_call_details.invocation_metadata, token):
            return continuation(handler_call_details)
        return _refusal(continuation(handler_call_details))


def _refuse(request_or_requests, context: grpc.ServicerContext):
    context.abort(grpc.StatusCode.UNAUTHENTICATED, TOKEN_MISSING)


def _refusal(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that answers UNAUTHENTICATED.

    An unknown method is refused as well (not UNIMPLEMENTED): without the token nothing is told, not even which
    methods exist.
    """
    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(_refuse)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse)
    return grpc.unary_stream_rpc_method_handler(_refuse)
