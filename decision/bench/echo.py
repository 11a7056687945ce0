"""Floor A: a bare gRPC echo server built the way the service is built.

Same stack as `nba serve`: grpc.aio on uvloop, the same server options, the
generated DecisionService registration (so the same method path, the same
protobuf deserialisation of a DecideRequest and serialisation of a
DecideResponse). Decide answers a fixed, realistic one-item response; nothing
else happens, so what it costs is what any Decide costs before the pipeline.

    python -m decision.bench.echo --port 0      # prints "port <n>", then serves until SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc

from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc

# Mirrors the options decision/server.py passes to grpc.aio.server(); kept in
# step by hand because importing the service here would defeat the point of a
# floor that works while the service does not.
MAX_MESSAGE_BYTES = 1 << 20
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 1),
)

# What a one-item answer of the service looks like on the wire (about 150 bytes).
FIXED_RESPONSE = pb.DecideResponse(
    decision_id="01JC8Z3W5M4Q7R9T2V6X8Y0A1B",
    items=[pb.DecisionItem(offer_id="premium_upgrade", content_id="premium_upgrade_hero_web", channel="web",
                           probability=0.8125, score=0.4217, rank=1, template="hero/premium_upgrade.html")],
    arm="champion",
    policy="vw_cb_explore",
    model_version="m-0001",
    fallback=False,
    request_id="bench-0000000",
    logged=True,
)


class EchoDecisionServicer(pb_grpc.DecisionServiceServicer):
    async def Decide(self, request: pb.DecideRequest, context) -> pb.DecideResponse:
        return FIXED_RESPONSE


async def start(host: str = "127.0.0.1", port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    pb_grpc.add_DecisionServiceServicer_to_server(EchoDecisionServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound


async def serve(host: str, port: int) -> None:
    server, bound = await start(host, port)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print(f"port {bound}", flush=True)
    await done.wait()
    await server.stop(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m decision.bench.echo", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the service falls back the same way (decision/cli.py)
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
