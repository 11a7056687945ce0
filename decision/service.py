"""Thin servicers: proto -> domain -> pipeline -> proto.

The one abort point: a domain error becomes its gRPC status here, and nowhere
else. Anything unexpected is logged and answered INTERNAL without details.
"""

from __future__ import annotations

import functools
import logging

import grpc

from decision import convert, errors
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.tracing import span

log = logging.getLogger("nba.service")

_STATUS = {code: getattr(grpc.StatusCode, code.value) for code in errors.Code}


def _abort_on_error(rpc):
    @functools.wraps(rpc)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
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
    def __init__(self, app) -> None:
        self.app = app

    @_abort_on_error
    async def Decide(self, request: pb.DecideRequest, context) -> pb.DecideResponse:
        with span("nba.Decide"):
            req = convert.decide_request(request)
            decision = await self.app.decider.decide(req, context.time_remaining())
            return convert.decide_response(decision, req.explain)

    @_abort_on_error
    async def Reward(self, request: pb.RewardRequest, context) -> pb.RewardAck:
        with span("nba.Reward"):
            event = convert.reward_event(request)
            ack = await self.app.rewards.accept(self.app.holder.catalog, event)
            return convert.reward_ack(ack)


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, app) -> None:
        self.app = app

    @_abort_on_error
    async def ReloadCatalog(self, request: pb.ReloadCatalogRequest, context) -> pb.ReloadCatalogResponse:
        result = await self.app.reload_catalog()
        return pb.ReloadCatalogResponse(reloaded=result.reloaded, catalog_version=result.version,
                                        errors=list(result.errors))
