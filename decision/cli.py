"""`nba`: the one command-line entry point.

    nba serve                      run the service (embedded Redis unless REDIS_URL)
    nba decide PLACEMENT --profile pid:sarah [--explain]
    nba reward DECISION_ID click
    nba catalog check FILE
    nba profiles load FILE.jsonl
    nba logs decisions|rewards
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path

from decision.store.embedded import DEFAULT_DATA_DIR

DEFAULT_TARGET = os.environ.get("NBA_TARGET", "127.0.0.1:50051")
IDENTITY_FLAGS = ("profile", "cookie", "device", "crm", "email", "session")


def _run(coro) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# --- serve -----------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from decision import errors
    from decision.server import Settings, serve

    settings = Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), allow_as_of=args.allow_as_of,
                        seed=args.seed)
    if args.catalog:
        settings.catalog = Path(args.catalog)
    try:
        _run(serve(settings))
    except errors.CatalogError as e:
        print("nba: the catalog has errors; not starting:", file=sys.stderr)
        for err in e.errors:
            print("  " + err, file=sys.stderr)
        return 2
    return 0


# --- decide / reward (gRPC clients) ----------------------------------------

def _context_value(raw: str):
    from decision.nba.v1 import decision_pb2 as pb

    if raw in ("true", "false"):
        return pb.Value(bool_value=raw == "true")
    try:
        return pb.Value(int_value=int(raw))
    except ValueError:
        pass
    try:
        return pb.Value(number_value=float(raw))
    except ValueError:
        pass
    if "," in raw:
        return pb.Value(list_value=pb.StringList(values=raw.split(",")))
    return pb.Value(string_value=raw)


def _identity(spec: str):
    """`pid:42`, `cookie:abc` ... -> Identity message."""
    from decision.nba.v1 import decision_pb2 as pb

    kinds = {"pid": pb.IDENTITY_TYPE_PROFILE, "profile": pb.IDENTITY_TYPE_PROFILE, "cookie": pb.IDENTITY_TYPE_COOKIE,
             "device": pb.IDENTITY_TYPE_DEVICE, "crm": pb.IDENTITY_TYPE_CRM, "email": pb.IDENTITY_TYPE_HASHED_EMAIL,
             "session": pb.IDENTITY_TYPE_SESSION}
    kind, _, ident = spec.partition(":")
    if kind not in kinds or not ident:
        raise SystemExit(f"nba: identity {spec!r}: expected <type>:<id> with type one of {', '.join(kinds)}")
    return pb.Identity(type=kinds[kind], id=ident)


def _grpc_error(e) -> int:
    print(f"nba: {e.code().name}: {e.details()}", file=sys.stderr)
    return 1


def cmd_decide(args: argparse.Namespace) -> int:
    import grpc

    from decision.nba.v1 import decision_pb2 as pb
    from decision.nba.v1 import decision_pb2_grpc as pb_grpc

    context = {}
    for kv in args.context or []:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"nba: --context {kv!r}: expected key=value")
        context[k] = _context_value(v)
    req = pb.DecideRequest(
        placement=args.placement,
        identity=_identity(args.who),
        extra_identities=[_identity(x) for x in args.also or []],
        context=context,
        channels=args.channel or [],
        count=args.count,
        explain=args.explain,
        dry_run=args.dry_run,
        request_id=args.request_id or "",
    )
    with grpc.insecure_channel(args.target) as channel:
        try:
            resp = pb_grpc.DecisionServiceStub(channel).Decide(req, timeout=args.timeout)
        except grpc.RpcError as e:
            return _grpc_error(e)
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(resp, preserving_proto_field_name=True), indent=2))
        return 0
    print(render_decision(resp))
    return 0


def render_decision(resp) -> str:
    from decision.nba.v1 import decision_pb2 as pb

    lines = []
    head = f"decision {resp.decision_id or '(dry run, not logged)'}  arm={resp.arm}  policy={resp.policy}"
    head += f"  model={resp.model_version}" + ("  FALLBACK" if resp.fallback else "")
    lines.append(head)
    if not resp.items:
        lines.append("  (no offer)")
    for it in resp.items:
        lines.append(f"  #{it.rank} {it.offer_id:<24} {it.content_id:<28} {it.channel:<11} p={it.probability:.3f} "
                     f"score={it.score:.3f}")
    if resp.notes:
        lines.append("")
        lines.extend(f"  {n}" for n in resp.notes)
    if resp.explanations:
        outcome = {pb.OUTCOME_REMOVED: "removed", pb.OUTCOME_CHOSEN: "CHOSEN", pb.OUTCOME_NOT_CHOSEN: "not chosen",
                   pb.OUTCOME_RESERVATION_REFUSED: "refused"}
        rows = [("offer", "content", "channel", "outcome", "stage", "rule / why")]
        for e in resp.explanations:
            why = e.rule + (f" - {e.detail}" if e.detail else "")
            rows.append((e.offer_id, e.content_id, e.channel, outcome.get(e.outcome, "?"), e.stage, why))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines.append("")
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    return "\n".join(lines)


def cmd_reward(args: argparse.Namespace) -> int:
    import grpc

    from decision.nba.v1 import decision_pb2 as pb
    from decision.nba.v1 import decision_pb2_grpc as pb_grpc

    req = pb.RewardRequest(decision_id=args.decision_id, offer_id=args.offer or "", event_type=args.event_type,
                           event_id=args.event_id or uuid.uuid4().hex)
    if args.value is not None:
        req.value = args.value
    with grpc.insecure_channel(args.target) as channel:
        try:
            ack = pb_grpc.DecisionServiceStub(channel).Reward(req, timeout=args.timeout)
        except grpc.RpcError as e:
            return _grpc_error(e)
    print(f"reward {ack.reward:g} recorded for decision {ack.decision_id} (event {ack.event_id})"
          + (" - duplicate, counted once" if ack.duplicate else ""))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                             timeout=args.timeout)
        except grpc.RpcError as e:
            return _grpc_error(e)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(status)
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


# --- catalog ----------------------------------------------------------------

def cmd_catalog_check(args: argparse.Namespace) -> int:
    from decision.catalog import check_catalog
    from decision.server import CATALOG_CHECKS

    problems = check_catalog(args.file, **CATALOG_CHECKS)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(problems)} error(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


# --- commands that talk to Redis directly ----------------------------------

@contextlib.asynccontextmanager
async def _redis(args: argparse.Namespace):
    """REDIS_URL if given; otherwise the embedded server of the data dir
    (joined if `nba serve` runs, started for this command if not)."""
    from decision.store.embedded import EmbeddedRedis
    from decision.store.redis_store import connect

    url = args.redis_url or os.environ.get("REDIS_URL")
    embedded = None
    if not url:
        embedded = await asyncio.to_thread(EmbeddedRedis(Path(args.data_dir)).start)
        url = embedded.url
    client = connect(url)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def cmd_profiles_load(args: argparse.Namespace) -> int:
    from decision.clock import SystemClock
    from decision.profiles_file import ProfileFileError, read_profiles
    from decision.store.redis_store import ProfileWriter

    async def run() -> int:
        now = SystemClock().now_ms()
        try:
            docs = list(read_profiles(Path(args.file), now))
        except (ProfileFileError, OSError) as e:
            print(f"nba: {e}", file=sys.stderr)
            return 1
        async with _redis(args) as redis:
            writer = ProfileWriter(redis)
            for doc in docs:
                await writer.write(doc)
        print(f"loaded {len(docs)} profile(s) from {args.file}")
        return 0

    return _run(run())


def cmd_logs(args: argparse.Namespace) -> int:
    from decision.logs import Logs

    async def run() -> int:
        async with _redis(args) as redis:
            logs = Logs(redis)
            rows = await (logs.read_decisions(args.n) if args.stream == "decisions" else logs.read_rewards(args.n))
        for r in reversed(rows):
            print(r.to_json() if args.json else _summary(r))
        return 0

    return _run(run())


def _summary(r) -> str:
    from decision.records import DecisionRecord

    if isinstance(r, DecisionRecord):
        items = ", ".join(f"#{i.rank} {r.actions[i.action].offer_id}@{r.actions[i.action].channel} p={i.probability:.3f}"
                          for i in r.items) or "fallback"
        return (f"{r.decision_id} {r.placement:<16} arm={r.arm:<10} policy={r.policy:<16} "
                f"actions={len(r.actions):<3} {items}")
    return (f"{r.decision_id} {r.placement:<16} arm={r.arm:<10} {r.offer_id:<20} {r.event_type:<10} "
            f"reward={r.reward:g} event={r.event_id}")


# --- parser ------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nba", description="Next-best-action decisioning service")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC service")
    s.add_argument("--host", default=os.environ.get("NBA_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("NBA_PORT", "50051")))
    s.add_argument("--catalog", help="catalog YAML (default: NBA_CATALOG or examples/catalog.yaml)")
    s.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="embedded Redis data directory")
    s.add_argument("--allow-as-of", action="store_true", help="simulation only: honour DecideRequest.as_of")
    s.add_argument("--seed", type=int, help="seed the policy RNG (reproducible decisions)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("decide", help="ask a running service for a decision")
    d.add_argument("placement")
    d.add_argument("who", metavar="IDENTITY", help="pid:<id>, cookie:<id>, device:<id>, crm:<id>, email:<sha256>, session:<id>")
    d.add_argument("--also", action="append", metavar="IDENTITY", help="another identity seen on this visit")
    d.add_argument("--context", "-c", action="append", metavar="KEY=VALUE")
    d.add_argument("--channel", action="append")
    d.add_argument("--count", type=int, default=1)
    d.add_argument("--explain", action="store_true")
    d.add_argument("--dry-run", action="store_true")
    d.add_argument("--request-id")
    d.add_argument("--json", action="store_true")
    d.add_argument("--target", default=DEFAULT_TARGET)
    d.add_argument("--timeout", type=float, default=5.0)
    d.set_defaults(func=cmd_decide)

    r = sub.add_parser("reward", help="report an outcome of a decision")
    r.add_argument("decision_id")
    r.add_argument("event_type", help="impression, click, accept, decline, convert, ...")
    r.add_argument("--offer")
    r.add_argument("--value", type=float)
    r.add_argument("--event-id")
    r.add_argument("--target", default=DEFAULT_TARGET)
    r.add_argument("--timeout", type=float, default=5.0)
    r.set_defaults(func=cmd_reward)

    h = sub.add_parser("health", help="check a running service's gRPC health (exit 0 when SERVING)")
    h.add_argument("--target", default=DEFAULT_TARGET)
    h.add_argument("--service", default="")
    h.add_argument("--timeout", type=float, default=2.0)
    h.set_defaults(func=cmd_health)

    c = sub.add_parser("catalog", help="catalog tools")
    csub = c.add_subparsers(dest="catalog_command", required=True)
    cc = csub.add_parser("check", help="validate a catalog file")
    cc.add_argument("file")
    cc.set_defaults(func=cmd_catalog_check)

    redis_args = argparse.ArgumentParser(add_help=False)
    redis_args.add_argument("--redis-url", help="default: REDIS_URL, else the embedded server of --data-dir")
    redis_args.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))

    pr = sub.add_parser("profiles", help="profile tools")
    psub = pr.add_subparsers(dest="profiles_command", required=True)
    pl = psub.add_parser("load", parents=[redis_args], help="load profiles and events from JSONL")
    pl.add_argument("file")
    pl.set_defaults(func=cmd_profiles_load)

    lg = sub.add_parser("logs", parents=[redis_args], help="show the newest decision or reward log rows")
    lg.add_argument("stream", choices=("decisions", "rewards"))
    lg.add_argument("-n", type=int, default=20)
    lg.add_argument("--json", action="store_true")
    lg.set_defaults(func=cmd_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
