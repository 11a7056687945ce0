"""Thin servicers: proto -> domain -> pipeline -> proto.

The one abort point: a domain error becomes its gRPC status here, and nowhere
else. Anything unexpected is logged and answered INTERNAL without details.
"""

from __future__ import annotations

import functools
import logging

import grpc

from decision import convert, errors
from decision.auth import current_app
from decision.logfmt import decision_id_var
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.tls import peer_identity
from decision.tracing import span

log = logging.getLogger("nba.service")

_STATUS = {code: getattr(grpc.StatusCode, code.value) for code in errors.Code}
_RPC_ATTRS = {m: {"rpc.system": "grpc", "rpc.service": "nba.v1.DecisionService", "rpc.method": m}
              for m in ("Decide", "Reward")}


class Malformed:
    """Stands in for a request whose bytes do not parse as its message type.

    grpc answers a deserializer exception with UNKNOWN; a caller's garbage is
    INVALID_ARGUMENT, so the deserializer returns this and the servicer
    wrapper aborts with the right status.
    """

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _safe_deserializer(message_class):
    parse = message_class.FromString
    name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes):
        try:
            return parse(data)
        except Exception:  # DecodeError, bad UTF-8, recursion limit of nested groups
            return Malformed(name)

    return deserialize


def add_to_server(server: grpc.aio.Server, *servicers) -> None:
    """Register servicers like the generated `add_*_to_server`, with
    deserializers that never raise (see Malformed)."""
    for servicer in servicers:
        service = pb.DESCRIPTOR.services_by_name[servicer.SERVICE_NAME]
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, m.name),
                request_deserializer=_safe_deserializer(getattr(pb, m.input_type.name)),
                response_serializer=getattr(pb, m.output_type.name).SerializeToString,
            )
            for m in service.methods
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
        server.add_registered_method_handlers(service.full_name, handlers)


def _abort_on_error(rpc):
    @functools.wraps(rpc)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request: not a valid {request.type_name} message")
        try:
            return await rpc(self, request, context)
        except errors.NbaError as e:
            await context.abort(_STATUS[e.code], str(e))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", rpc.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (logged)")

    return wrapper


class DecisionServicer(pb_grpc.DecisionServiceServicer):
    SERVICE_NAME = "DecisionService"

    def __init__(self, app) -> None:
        self.app = app

    @_abort_on_error
    async def Decide(self, request: pb.DecideRequest, context) -> pb.DecideResponse:
        with span("nba.v1.DecisionService/Decide", _RPC_ATTRS["Decide"]):
            req = convert.decide_request(request)
            decision = await self.app.decider.decide(req, context.time_remaining())
            decision_id_var.set(decision.decision_id)
            return convert.decide_response(decision, req.explain)

    @_abort_on_error
    async def Reward(self, request: pb.RewardRequest, context) -> pb.RewardAck:
        with span("nba.v1.DecisionService/Reward", _RPC_ATTRS["Reward"]):
            event = convert.reward_event(request)
            ack = await self.app.rewards.accept(self.app.holder.catalog, event)
            return convert.reward_ack(ack)


class AdminServicer(pb_grpc.AdminServiceServicer):
    SERVICE_NAME = "AdminService"

    def __init__(self, app) -> None:
        self.app = app

    @_abort_on_error
    async def ReloadCatalog(self, request: pb.ReloadCatalogRequest, context) -> pb.ReloadCatalogResponse:
        result = await self.app.reload_catalog()
        return pb.ReloadCatalogResponse(reloaded=result.reloaded, catalog_version=result.version,
                                        errors=list(result.errors))

    # --- privacy (decision/forget.py) ---
    @_abort_on_error
    async def Forget(self, request: pb.ForgetRequest, context) -> pb.ForgetResponse:
        order = convert.forget_request(request)
        result = await self.app.forgetter.forget(order, caller=current_app() or peer_identity(context))
        return convert.forget_response(result)
