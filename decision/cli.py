"""`nba`: the one command-line entry point.

    nba serve                      run the service (embedded Redis unless REDIS_URL)
    nba decide PLACEMENT --profile pid:sarah [--explain]
    nba reward DECISION_ID click
    nba catalog check FILE
    nba profiles load FILE.jsonl
    nba logs decisions|rewards
    nba forget crm:C-1001 --reason DSR-42   forget a person (admin; audited)
    nba token new web --scopes decide,reward   a bearer token for `serve --tokens`
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

    if args.workers < 1:
        print(f"nba: --workers: at least 1 (got {args.workers})", file=sys.stderr)
        return 2
    if args.workers > 1:
        from decision.supervisor import run as run_workers

        return run_workers(args.argv, workers=args.workers, host=args.host, port=args.port,
                           metrics_port=args.metrics_port, data_dir=Path(args.data_dir),
                           redis_url=os.environ.get("REDIS_URL") or None)
    settings = Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), allow_as_of=args.allow_as_of,
                        seed=args.seed, metrics_port=args.metrics_port, redis_budget_s=args.redis_budget_ms / 1000)
    if args.otlp_endpoint:
        from decision.tracing import configure_tracing

        configure_tracing(otlp_endpoint=args.otlp_endpoint)
    if args.catalog:
        settings.catalog = Path(args.catalog)
    if args.worker is not None:  # one of `nba serve --workers N` (decision/supervisor.py)
        from decision.supervisor import die_with_parent

        die_with_parent()
        if args.worker > 0:  # a spool file is one process's; worker 0 keeps the data dir's own
            settings.spool_dir = Path(args.data_dir) / f"spool-worker-{args.worker}"
    status = _apply_security(args, settings)  # security: TLS, tokens, log retention
    if status:
        return status
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
    with _client_channel(args) as channel:
        try:
            resp = pb_grpc.DecisionServiceStub(channel).Decide(req, timeout=args.timeout, metadata=_metadata(args))
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
    with _client_channel(args) as channel:
        try:
            ack = pb_grpc.DecisionServiceStub(channel).Reward(req, timeout=args.timeout, metadata=_metadata(args))
        except grpc.RpcError as e:
            return _grpc_error(e)
    print(f"reward {ack.reward:g} recorded for decision {ack.decision_id} (event {ack.event_id})"
          + (" - duplicate, counted once" if ack.duplicate else ""))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _client_channel(args) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                             timeout=args.timeout)
        except grpc.RpcError as e:
            return _grpc_error(e)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(status)
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


# --- security: TLS, tokens, forget (docs/SECURITY.md) --------------------------

def _apply_security(args: argparse.Namespace, settings) -> int:
    """TLS, token auth and log retention of `nba serve`; 2 on a bad setting."""
    from dataclasses import replace

    from decision.auth import TokenBook, TokenConfigError
    from decision.catalog import parse_duration
    from decision.tls import ServerTls, TlsConfigError

    try:
        settings.tls = ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca)
        if settings.tls is not None:
            settings.tls.credentials()  # read the files now: a clear error before anything starts
        settings.tokens = TokenBook.from_sources(args.tokens)
        if args.log_retention:
            settings.log_config = replace(settings.log_config,
                                          retention_ms=parse_duration(args.log_retention) * 1000)
    except (TokenConfigError, TlsConfigError, ValueError) as e:
        print(f"nba: {e}", file=sys.stderr)
        return 2
    return 0


def _client_channel(args: argparse.Namespace):
    from decision.tls import ClientTls, channel

    return channel(args.target, ClientTls.from_args(args))


def _metadata(args: argparse.Namespace):
    from decision.tls import token_metadata

    return token_metadata(getattr(args, "token", None) or os.environ.get("NBA_TOKEN"))


def _client_security_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("security (see docs/SECURITY.md)")
    g.add_argument("--token", help="bearer token of the calling application (default: NBA_TOKEN)")
    g.add_argument("--tls", action="store_true", help="use TLS, trusting the system's root certificates")
    g.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA (default: NBA_TLS_CA)")
    g.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS (NBA_CLIENT_TLS_CERT)")
    g.add_argument("--tls-key", metavar="PEM", help="its private key (NBA_CLIENT_TLS_KEY)")
    g.add_argument("--tls-server-name", help="name to check in the server certificate (default: the target host)")


def _forget_summary(resp) -> str:
    return (f"forgot {resp.identities} identities of person {resp.pseudonym}: {resp.keys_deleted} keys, "
            f"{resp.decisions} pending decisions, {resp.decision_log_rows} decision and {resp.reward_log_rows} "
            f"reward log rows deleted (audit {resp.audit_id})")


def cmd_forget(args: argparse.Namespace) -> int:
    from decision.nba.v1 import decision_pb2 as pb

    if not args.reason:
        print("nba: --reason is required (ticket, legal basis: it goes into the audit log; not the person's id)",
              file=sys.stderr)
        return 2
    req = pb.ForgetRequest(identity=_identity(args.who), reason=args.reason, scan_keyspace=args.scan)
    if args.direct:
        return _forget_direct(args, req)
    import grpc

    from decision.nba.v1 import decision_pb2_grpc as pb_grpc

    with _client_channel(args) as channel:
        try:
            resp = pb_grpc.AdminServiceStub(channel).Forget(req, timeout=args.timeout, metadata=_metadata(args))
        except grpc.RpcError as e:
            return _grpc_error(e)
    print(_forget_summary(resp))
    return 0


def _forget_direct(args: argparse.Namespace, req) -> int:
    """Without a running service: straight to Redis, audited as the OS user."""
    import getpass

    from decision import convert, errors
    from decision.clock import SystemClock
    from decision.forget import Forgetter
    from decision.privacy import Pseudonymizer

    async def run() -> int:
        try:
            order = convert.forget_request(req)
        except errors.NbaError as e:
            print(f"nba: {e}", file=sys.stderr)
            return 2
        async with _redis(args) as redis:
            forgetter = Forgetter(redis, await Pseudonymizer.from_env_or_redis(redis), SystemClock())
            try:
                result = await forgetter.forget(order, caller=f"cli:{getpass.getuser()}")
            except errors.NbaError as e:
                print(f"nba: {e}", file=sys.stderr)
                return 1
        print(_forget_summary(convert.forget_response(result)))
        return 0

    return _run(run())


def cmd_token_new(args: argparse.Namespace) -> int:
    from decision.auth import SCOPES, new_token, token_digest

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        print(f"nba: --scopes: one or more of {', '.join(SCOPES)} (got {args.scopes!r})", file=sys.stderr)
        return 2
    token = new_token()
    print(f"# token for {args.app} (shown once; give it to the application, e.g. as NBA_TOKEN):", file=sys.stderr)
    print(f"#   {token}", file=sys.stderr)
    print(f"{args.app}:\n  token_sha256: {token_digest(token)}\n  scopes: [{', '.join(scopes)}]")
    return 0


def cmd_token_hash(args: argparse.Namespace) -> int:
    from decision.auth import token_digest

    token = sys.stdin.readline().strip()
    if not token:
        print("nba: give the token on standard input", file=sys.stderr)
        return 2
    print(token_digest(token))
    return 0


def _security_commands(sub, redis_args: argparse.ArgumentParser) -> None:
    f = sub.add_parser("forget", parents=[redis_args],
                       help="forget a person: keys, links, pending joins, log rows; audited")
    f.add_argument("who", metavar="IDENTITY", help="any identity of the person: pid:<id>, crm:<id>, cookie:<id>, ...")
    f.add_argument("--reason", help="why (ticket, legal basis); required, kept in the audit log")
    f.add_argument("--scan", action="store_true",
                   help="also SCAN the keyspace for links and pending decisions (slow; see docs/SECURITY.md)")
    f.add_argument("--direct", action="store_true", help="no running service: work on Redis directly")
    f.add_argument("--target", default=DEFAULT_TARGET)
    f.add_argument("--timeout", type=float, default=600.0)
    _client_security_args(f)
    f.set_defaults(func=cmd_forget)

    t = sub.add_parser("token", help="bearer tokens for `nba serve --tokens`")
    tsub = t.add_subparsers(dest="token_command", required=True)
    tn = tsub.add_parser("new", help="make a token; prints its tokens-file entry (the token itself on stderr)")
    tn.add_argument("app", help="the calling application's name")
    tn.add_argument("--scopes", required=True, help="comma-separated: decide, reward, admin")
    tn.set_defaults(func=cmd_token_new)
    th = tsub.add_parser("hash", help="SHA-256 of a token read from stdin (for token_sha256)")
    th.set_defaults(func=cmd_token_hash)


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


# --- experimenters: export, ope, report, promote (docs/EXPERIMENTS.md) ------

def cmd_export(args: argparse.Namespace) -> int:
    from decision.export import cmd_export as run

    return run(args)


def cmd_ope(args: argparse.Namespace) -> int:
    from decision.experiments.ope import cmd_ope as run

    return run(args)


def cmd_report(args: argparse.Namespace) -> int:
    from decision.report import cmd_report as run

    return run(args)


def cmd_promote(args: argparse.Namespace) -> int:
    from decision.promote import cmd_promote as run

    return run(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from decision.simulate import cmd_simulate as run

    return run(args)


# --- bench ---------------------------------------------------------------------

def cmd_bench(args: argparse.Namespace) -> int:
    if args.compare:
        from decision.bench.compare import run as compare

        return compare(*map(Path, args.compare))
    from decision.bench.run import main as bench_main
    from decision.bench.run import parse_phases

    try:
        if args.phases is not None:
            args.phases = parse_phases(args.phases)
        for option in ("workers", "candidates", "profile_sizes"):
            setattr(args, option, _counts(option, getattr(args, option)))
        for option in ("rate", "soak_minutes"):
            setattr(args, option, _positive(option, getattr(args, option)))
        args.learner_decisions = _counts("learner_decisions", args.learner_decisions, one=True)
    except ValueError as e:
        print(f"nba bench: {e}", file=sys.stderr)
        return 2
    return bench_main(args)


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _counts(dest: str, text: str | None, one: bool = False):
    """`1,2,4` -> (1, 2, 4); every number a whole number >= 1 (one only with `one`)."""
    if text is None:
        return None
    parts = [text] if one else text.split(",")
    try:
        values = tuple(int(x.replace("_", "")) for x in parts)
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        what = "a whole number of at least 1" if one else "whole numbers of at least 1, separated by commas"
        raise ValueError(f"{_option(dest)}: expected {what} (got {text!r})")
    return values[0] if one else values


def _positive(dest: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{_option(dest)}: expected a number above 0 (got {text!r})")
    return value


# --- parser ------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nba", description="Next-best-action decisioning service")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="json: one object per line with trace and decision ids (or NBA_LOG_FORMAT)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC service")
    s.add_argument("--host", default=os.environ.get("NBA_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("NBA_PORT", "50051")))
    s.add_argument("--catalog", help="catalog YAML (default: NBA_CATALOG or examples/catalog.yaml)")
    s.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="embedded Redis data directory")
    s.add_argument("--allow-as-of", action="store_true", help="simulation only: honour DecideRequest.as_of")
    s.add_argument("--seed", type=int, help="seed the policy RNG (reproducible decisions)")
    s.add_argument("--metrics-port", type=int, default=int(os.environ.get("NBA_METRICS_PORT", "9464")),
                   help="Prometheus /metrics port (0: off)")
    s.add_argument("--redis-budget-ms", type=float, default=50.0,
                   help="time budget of a Decide's Redis calls before it degrades to the fallback")
    s.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
                   help="send traces (and metrics) with OTLP/gRPC; needs the [otlp] extra")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N service processes on the same port (SO_REUSEPORT), one core each; worker i serves "
                        "metrics on the metrics port + i (decision/supervisor.py)")
    s.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # its index, set by the supervisor
    sec = s.add_argument_group("security (see docs/SECURITY.md; all off by default)")
    sec.add_argument("--tls-cert", metavar="PEM", default=os.environ.get("NBA_TLS_CERT"),
                     help="server certificate chain: serve TLS only (NBA_TLS_CERT)")
    sec.add_argument("--tls-key", metavar="PEM", default=os.environ.get("NBA_TLS_KEY"),
                     help="its private key (NBA_TLS_KEY)")
    sec.add_argument("--tls-client-ca", metavar="PEM", default=os.environ.get("NBA_TLS_CLIENT_CA"),
                     help="require client certificates signed by this CA: mutual TLS (NBA_TLS_CLIENT_CA)")
    sec.add_argument("--tokens", metavar="FILE",
                     help="bearer tokens and scopes per application (or NBA_TOKENS_FILE, or NBA_TOKENS text)")
    sec.add_argument("--log-retention", metavar="DURATION", default=os.environ.get("NBA_LOG_RETENTION"),
                     help="delete log rows older than this, e.g. 30d (default 30d; NBA_LOG_RETENTION)")
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
    _client_security_args(d)
    d.set_defaults(func=cmd_decide)

    r = sub.add_parser("reward", help="report an outcome of a decision")
    r.add_argument("decision_id")
    r.add_argument("event_type", help="impression, click, accept, decline, convert, ...")
    r.add_argument("--offer")
    r.add_argument("--value", type=float)
    r.add_argument("--event-id")
    r.add_argument("--target", default=DEFAULT_TARGET)
    r.add_argument("--timeout", type=float, default=5.0)
    _client_security_args(r)
    r.set_defaults(func=cmd_reward)

    h = sub.add_parser("health", help="check a running service's gRPC health (exit 0 when SERVING)")
    h.add_argument("--target", default=DEFAULT_TARGET)
    h.add_argument("--service", default="")
    h.add_argument("--timeout", type=float, default=2.0)
    _client_security_args(h)
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
    _security_commands(sub, redis_args)

    # experimenters: every command reads only the logs (+ the catalog file)
    xa = argparse.ArgumentParser(add_help=False, parents=[redis_args])
    xa.add_argument("--placement", required=True)
    xa.add_argument("--since", help="ISO date/time, inclusive, of the decision (UTC unless stated)")
    xa.add_argument("--until", help="ISO date/time, exclusive")
    xa.add_argument("--catalog", help="catalog YAML: reward range, offer values and priorities, arms "
                                      "(default: NBA_CATALOG or examples/catalog.yaml)")
    xa.add_argument("--as-of", help="close join windows as of this time (default: the later of now and the "
                                    "newest log time)")

    ex = sub.add_parser("export", parents=[xa], help="export joined decisions + rewards: dsjson, csv, parquet")
    ex.add_argument("--arm", help="only this arm's decisions")
    ex.add_argument("--format", choices=("dsjson", "csv", "parquet"), required=True)
    ex.add_argument("--out", required=True, metavar="FILE")
    ex.add_argument("--include-person", action="store_true",
                    help="only meaningful if raw ids were logged, which they are not: the log holds keyed "
                         "pseudonyms, exported by default")
    ex.set_defaults(func=cmd_export)

    op = sub.add_parser("ope", parents=[xa], help="off-policy evaluation (IPS, SNIPS, DR with 95%% CIs)")
    op.add_argument("--arm", help="evaluate on this arm's logs only (default: every arm's)")
    op.add_argument("--policy", action="append", metavar="SPEC",
                    help="uniform | fixed_priority | arm:<name> | model:<file> | snapshot:<version> "
                         "(repeatable; default: uniform, fixed_priority and every arm)")
    op.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    op.add_argument("--seed", type=int, default=0, help="bootstrap and cross-fitting seed")
    op.add_argument("--no-dr", action="store_true", help="skip DR's reward model")
    op.add_argument("--json", action="store_true")
    op.set_defaults(func=cmd_ope)

    rp = sub.add_parser("report", parents=[xa], help="HTML report with plots (+ CSV) of a placement")
    rp.add_argument("--out", required=True, metavar="DIR")
    rp.add_argument("--holdout", help="the holdout arm (default: the placement's uniform arm)")
    rp.add_argument("--bucket", help="time bucket of the plots: 15m, 1h, 1d ... (default: about 24 buckets)")
    rp.add_argument("--bootstrap", type=int, default=1000)
    rp.set_defaults(func=cmd_report)

    pm = sub.add_parser("promote", parents=[xa], help="promote a challenger arm when the evidence says so")
    pm.add_argument("--challenger", required=True, metavar="ARM")
    pm.add_argument("--champion", metavar="ARM", help="default: the arm named champion, else the largest share")
    pm.add_argument("--on", dest="logs_arm", metavar="ARM",
                    help="evaluate on this arm's logs (default: the placement's uniform holdout arm)")
    pm.add_argument("--challenger-model", metavar="FILE", help="the challenger's saved policy (VW arms)")
    pm.add_argument("--champion-model", metavar="FILE", help="the champion's saved policy (VW arms)")
    pm.add_argument("--estimator", choices=("ips", "snips", "dr"), default="dr")
    pm.add_argument("--min-rows", type=int, default=500)
    pm.add_argument("--dry-run", action="store_true", help="show the evidence, record nothing")
    pm.add_argument("--json", action="store_true")
    pm.set_defaults(func=cmd_promote)

    sm = sub.add_parser("simulate", help="a simulated population drives the real service and learner "
                                         "(docs/EXPERIMENTS.md)")
    sm.add_argument("--size", choices=("small", "medium", "large"), default="medium")
    sm.add_argument("--persons", type=int)
    sm.add_argument("--train", type=int, help="decisions while learning")
    sm.add_argument("--rounds", type=int, help="learner runs during training")
    sm.add_argument("--eval", type=int, help="decisions with the model frozen (the OPE check)")
    sm.add_argument("--eval-persons", type=int, help="the fresh cohort of the evaluation (default: 2 x --eval)")
    sm.add_argument("--fatigue", type=float, help="rate factor per ignored exposure in the last 7 days")
    sm.add_argument("--late-share", type=float, help="share of clicks arriving after the join window")
    sm.add_argument("--seed", type=int)
    sm.add_argument("--out", metavar="DIR", help="write plots (HTML) and numbers (CSV)")
    sm.add_argument("--redis-url", help="an EMPTY Redis to use (default: a private embedded server)")
    sm.set_defaults(func=cmd_simulate)
    # --- learning loop: nba learn, nba models (decision/learning/cli.py)
    from decision.learning.cli import add_parsers as add_learning_parsers

    add_learning_parsers(sub, redis_args)
    # --- end learning loop

    b = sub.add_parser("bench", help="Decide latency and throughput against the floor (docs/BENCHMARKS.md)")
    b.add_argument("--profile", choices=("smoke", "small", "full", "soak"), default="small",
                   help="smoke: seconds, every phase tiny (CI); small: minutes; full: long; soak: Decide's maximum, "
                        "then 10 minutes at half of it with the service's RSS sampled")
    b.add_argument("--out", help="JSON results (default: bench-results/<timestamp>.json)")
    b.add_argument("--plots", metavar="DIR", help="also write SVG charts of the results here (decision/bench/plot.py)")
    b.add_argument("--compare", nargs=2, metavar=("OLD.json", "NEW.json"),
                   help="measure nothing: print two results' figures, ratios and verdicts side by side")
    b.add_argument("--catalog", help="catalog YAML (default: NBA_CATALOG or examples/catalog.yaml)")
    b.add_argument("--placement", help="placement to decide for (default: the catalog's first)")
    b.add_argument("--population", type=int, help="synthetic profiles to load (default: the profile's)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--clients", type=int, help="load generator processes (default: one per spare core)")
    b.add_argument("--channels", type=int, default=1, help="gRPC connections per load generator process")
    b.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    b.add_argument("--work-dir", help="keep the Redis data and server logs here (default: a temp dir, removed)")
    b.add_argument("--phases", metavar="LIST",
                   help="comma-separated, run in this order: echo, decide, half, reward, soak, candidates, profiles, "
                        "scaling, learner; or all (default: the profile's; all but soak in small)")
    b.add_argument("--rate", metavar="RPS", help="the one rate of the soak and the candidates and profiles sweeps "
                                                 "(default: half of Decide's maximum)")
    b.add_argument("--candidates", metavar="LIST", help="candidate counts of the candidates sweep (default 10,20,200)")
    b.add_argument("--profile-sizes", metavar="LIST",
                   help="populations of the profiles sweep (default 1000,10000,100000; full adds 1000000)")
    b.add_argument("--workers", metavar="LIST",
                   help="service process counts of the scaling phase (default 1,2,4... up to the cores)")
    b.add_argument("--learner-decisions", metavar="N", help="decisions of the learner benchmark (default 20000)")
    b.add_argument("--soak-minutes", metavar="MIN", help="length of the memory soak; adds the soak phase")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `serve --workers N` starts N of itself
    from decision.logfmt import configure_logging

    configure_logging(os.environ.get("NBA_LOG_FORMAT", args.log_format), logging.DEBUG if args.verbose else logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
