"""A real service: the App on a local port, talking to the real test Redis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from decision.clock import ManualClock
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.profiles_file import read_profiles
from decision.server import App, Settings
from decision.store.redis_store import ProfileWriter
from tests.helpers import EXAMPLES


@dataclass
class Service:
    app: App
    channel: grpc.aio.Channel
    stub: pb_grpc.DecisionServiceStub
    admin: pb_grpc.AdminServiceStub
    health: health_pb2_grpc.HealthStub
    clock: ManualClock
    catalog_path: Path

    async def load_profiles(self, path: Path = EXAMPLES / "profiles.jsonl") -> None:
        writer = ProfileWriter(self.app.redis)
        for doc in read_profiles(path, self.clock.now_ms()):
            await writer.write(doc)

    async def decide(self, placement: str, who: str, **kw) -> pb.DecideResponse:
        return await self.stub.Decide(decide_request(placement, who, **kw))


_KINDS = {"pid": pb.IDENTITY_TYPE_PROFILE, "cookie": pb.IDENTITY_TYPE_COOKIE, "device": pb.IDENTITY_TYPE_DEVICE,
          "crm": pb.IDENTITY_TYPE_CRM, "email": pb.IDENTITY_TYPE_HASHED_EMAIL, "session": pb.IDENTITY_TYPE_SESSION}


def identity(who: str) -> pb.Identity:
    kind, _, ident = who.partition(":")
    return pb.Identity(type=_KINDS[kind], id=ident)


def decide_request(placement: str, who: str, *, context: dict | None = None, also: tuple[str, ...] = (),
                   **kw) -> pb.DecideRequest:
    ctx = {}
    for k, v in (context or {}).items():
        if isinstance(v, bool):
            ctx[k] = pb.Value(bool_value=v)
        elif isinstance(v, (int, float)):
            ctx[k] = pb.Value(number_value=v)
        else:
            ctx[k] = pb.Value(string_value=v)
    return pb.DecideRequest(placement=placement, identity=identity(who), context=ctx,
                            extra_identities=[identity(a) for a in also], **kw)


async def start_service(redis_url: str, catalog: Path, clock: ManualClock, **settings) -> Service:
    app = await App(Settings(host="127.0.0.1", port=0, catalog=catalog, redis_url=redis_url, seed=7,
                             reload_poll_s=0.2, health_poll_s=0.2, **settings), clock=clock).start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return Service(app, channel, pb_grpc.DecisionServiceStub(channel), pb_grpc.AdminServiceStub(channel),
                   health_pb2_grpc.HealthStub(channel), clock, catalog)
