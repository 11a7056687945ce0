"""grpc.aio server: wiring, health, reflection, catalog hot reload, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bandits.registry import KINDS, validate_params
from decision import errors, heap, metrics
from decision.auth import AuthInterceptor, TokenBook
from decision.catalog import Catalog, load_catalog
from decision.clock import Clock, SystemClock
from decision.forget import Forgetter, is_forgotten
from decision.logs import LogConfig, Logs
from decision.nba.v1 import decision_pb2 as pb
from decision.pipeline import CatalogHolder, Decider
from decision.policies import PolicyBook
from decision.privacy import Pseudonymizer
from decision.records import DecisionRecord
from decision.rewards import Rewards
from decision.spool import Spool
from decision.store.pressure_store import RESERVE
from decision.rules import compile_rule
from decision.service import AdminServicer, DecisionServicer, add_to_server
from decision.store import keys
from decision.store.embedded import DEFAULT_DATA_DIR, EmbeddedRedis
from decision.store.redis_store import RedisProfileStore, connect
from decision.store.resp import hot_client
from decision import tracing
from decision.tls import ServerTls, add_port

log = logging.getLogger("nba.server")

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["DecisionService"].full_name,
    pb.DESCRIPTOR.services_by_name["AdminService"].full_name,
)
REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_MESSAGE_BYTES = 1 << 20


def default_catalog_path() -> Path:
    env = os.environ.get("NBA_CATALOG")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT / "examples" / "catalog.yaml", Path.cwd() / "examples" / "catalog.yaml"):
        if candidate.exists():
            return candidate
    return Path("examples/catalog.yaml")


# Everything a catalog is checked against at load: rules compile, policy
# kinds and their parameters are known to the bandits library.
CATALOG_CHECKS = dict(compile_rule=compile_rule, policy_kinds=KINDS, validate_policy=validate_params)


def load(path: Path) -> Catalog:
    return load_catalog(path, **CATALOG_CHECKS)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    catalog: Path = field(default_factory=default_catalog_path)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL") or None)
    data_dir: Path = DEFAULT_DATA_DIR
    allow_as_of: bool = False
    grace_s: float = 10.0
    # After NOT_SERVING, keep answering this long before refusing new calls,
    # so load balancers and health-watching clients move away first (grpc
    # core answers calls that arrive during the stop itself with CANCELLED,
    # grpc/grpc#41785).
    drain_s: float = 1.0
    reload_poll_s: float = 2.0
    health_poll_s: float = 1.0
    seed: int | None = None
    log_config: LogConfig = field(default_factory=LogConfig)
    # Redis calls of one Decide get at most this long (and at most half the
    # caller's remaining deadline); past it the decision degrades.
    redis_budget_s: float = 0.05
    # Prometheus /metrics port; 0 disables the endpoint.
    metrics_port: int = 0
    # Where decisions and rewards wait while Redis is unreachable.
    spool_dir: Path | None = None
    # --- security (docs/SECURITY.md): both off by default (plain local mode)
    tls: ServerTls | None = None
    tokens: TokenBook | None = None
    # The request path's Redis client: the pipelining hiredis one
    # (decision/store/resp.py) for unix:// and redis:// URLs, else redis-py.
    fast_redis: bool = True


class Health(health.aio.HealthServicer):
    """The standard health service, whose Watch streams end when the server
    stops: otherwise every watching load balancer holds the shutdown for the
    whole grace period."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = asyncio.Event()

    async def Watch(self, request, context) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({watch, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            closing.cancel()

    def close_watches(self) -> None:
        self._closing.set()


async def cancel_and_wait(tasks: list[asyncio.Task], timeout_s: float) -> list[asyncio.Task]:
    """Cancel the tasks and wait until they end, cancelling again those that
    go on: a cancel can get lost (Python 3.11's asyncio.wait_for, under every
    redis-py command, returns normally when the cancel lands just as its
    inner call completes: CPython gh-86296). Returns those still running after
    `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {t for t in tasks if not t.done()}
    for t in pending:
        if not t.cancelling():  # one already cancelled gets a moment for its cleanup first
            t.cancel()
    while pending and loop.time() < deadline:
        _, pending = await asyncio.wait(pending, timeout=min(0.1, max(0.0, deadline - loop.time())))
        for t in pending:
            t.cancel()
    return list(pending)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    reloaded: bool
    version: str
    errors: tuple[str, ...] = ()


class App:
    """Everything one service process holds, started and stopped in order."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.embedded: EmbeddedRedis | None = None
        self.server: grpc.aio.Server | None = None
        self.health = Health()
        self.port: int = 0
        self._tasks: list[asyncio.Task] = []
        self._catalog_mtime = 0.0
        self._stopping = asyncio.Event()

    async def start(self) -> "App":
        s = self.settings
        catalog = load(s.catalog)  # refuse to start on a broken catalog: the error names file/line/field
        self._catalog_mtime = s.catalog.stat().st_mtime
        url = s.redis_url
        if url is None:
            self.embedded = await asyncio.to_thread(EmbeddedRedis(s.data_dir).start)
            url = self.embedded.url
            log.info("embedded Redis-compatible server on %s (data dir %s)", url, s.data_dir)
        self.redis = connect(url)
        # Decide and Reward: 2-4 round trips each, on the cheaper client
        self.hot = hot_client(url, self.redis, enabled=s.fast_redis)
        tracing.refresh()
        await self._wait_for_redis()
        await self.redis.set(keys.CATALOG_VERSION, catalog.version)
        self.spool = Spool(s.spool_dir or (s.data_dir / "spool"))
        rng = np.random.default_rng(s.seed)
        self.holder = CatalogHolder(catalog, PolicyBook.from_catalog(catalog, seed=s.seed or 0))
        self.logs = Logs(self.redis, s.log_config)
        hot_logs = Logs(self.hot, s.log_config)
        self.decider = Decider(
            redis=self.hot,
            store=RedisProfileStore(self.hot),
            logs=hot_logs,
            holder=self.holder,
            clock=self.clock,
            pseudonymizer=await Pseudonymizer.from_env_or_redis(self.redis),
            rng=rng,
            allow_as_of=s.allow_as_of,
            spool=self.spool,
            redis_budget_s=s.redis_budget_s,
        )
        await self.decider.tables.publish(catalog)  # feature table: decision records v2 reference it
        self.rewards = Rewards(self.hot, hot_logs, self.clock, self.spool, log_writer=self.decider.log_writer)
        # --- learning loop (decision/models.py): serve the learner's snapshots from the first request on
        from decision.models import ModelWatcher

        self.models = ModelWatcher(self.redis, lambda: self.holder, seed=s.seed or 0)
        await self.models.load()
        # --- end learning loop
        self.forgetter = Forgetter(self.redis, self.decider.pseudonymizer, self.clock, s.log_config)
        metrics.observe_models(self._models_in_use)
        if s.metrics_port:
            try:
                metrics.serve_prometheus(s.metrics_port, s.host)
            except OSError as e:  # e.g. a second replica on one host: serve without metrics
                log.warning("metrics endpoint not started on port %d: %s", s.metrics_port, e)

        # --- security: token auth interceptor (before anything parses the request)
        interceptors = [AuthInterceptor(s.tokens)] if s.tokens is not None else []
        if s.tokens is not None and s.tls is None:
            log.warning("token auth without TLS: tokens cross the network in clear text (fine behind a "
                        "TLS-terminating proxy on the same host, nowhere else)")
        log.info("security: %s, %s", "plaintext (no TLS)" if s.tls is None else
                 "mutual TLS" if s.tls.client_ca else "TLS",
                 "token auth off" if s.tokens is None else f"token auth for {len(s.tokens.apps)} application(s)")
        server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1),
        ])
        add_to_server(server, DecisionServicer(self), AdminServicer(self))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        self.port = add_port(server, f"{s.host}:{s.port}", s.tls)
        if self.port == 0:
            raise errors.Unavailable(f"cannot listen on {s.host}:{s.port}")
        heap.watch()
        heap.settle("start")  # before the first request: what the service keeps is frozen, not walked again
        await server.start()
        self.server = server
        await self._set_serving(True)
        self._tasks = [
            asyncio.create_task(self._watch_catalog()),
            asyncio.create_task(self._watch_health()),
            asyncio.create_task(self._trim_logs()),
            asyncio.create_task(self.models.run()),  # learning loop: hot-swaps new model versions
        ]
        log.info("serving on %s:%d with catalog %s (version %s)", s.host, self.port, s.catalog, catalog.version)
        return self

    async def _wait_for_redis(self, attempts: int = 50) -> None:
        for attempt in range(attempts):
            try:
                await self.redis.ping()
                return
            except Exception as e:  # noqa: BLE001 - retried, then re-raised
                if attempt == attempts - 1:
                    raise
                log.warning("redis not reachable yet (%s); retrying", e)
                await asyncio.sleep(0.2)

    def _models_in_use(self):
        for (placement, arm), policy in self.holder.book.policies.items():
            yield placement, arm, policy.version

    async def _replay_decision(self, record: DecisionRecord, person_key: str, served: list[tuple[str, int]]) -> bool:
        # Idempotent: a decision whose key exists was written with its row already.
        if await self.redis.exists(keys.decision(record.decision_id)):
            return False
        if await is_forgotten(self.redis, record.person):  # privacy: forgotten after it was spooled
            return False
        await self.logs.write_decision(record, person_key, served)
        return True

    async def _replay_exposure(self, person: str, script_keys: list[str], args: list) -> None:
        if await is_forgotten(self.redis, person):
            return
        await RESERVE(self.redis, script_keys, args)  # "served" mode: adds them, idempotent

    async def replay_spool(self) -> int:
        """Apply what was spooled while Redis was away; safe to call any time."""
        catalog = self.holder.catalog
        return await self.spool.replay(self._replay_decision, lambda e: self.rewards.replay(catalog, e),
                                       self._replay_exposure)

    async def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("",) + SERVICE_NAMES:
            await self.health.set(name, status)

    async def reload_catalog(self) -> ReloadResult:
        path = self.settings.catalog
        try:
            self._catalog_mtime = path.stat().st_mtime
            catalog = await asyncio.to_thread(load, path)
        except errors.CatalogError as e:
            log.error("catalog reload refused, keeping version %s: %s", self.holder.catalog.version, e)
            return ReloadResult(False, self.holder.catalog.version, tuple(e.errors))
        except OSError as e:
            return ReloadResult(False, self.holder.catalog.version, (f"{path}: {e.strerror}",))
        if catalog.version == self.holder.catalog.version:
            return ReloadResult(False, catalog.version)
        book = PolicyBook.from_catalog(catalog, seed=self.settings.seed or 0, previous=self.holder.book)
        # --- feature table (decision/feature_tables.py): written before the first record references it;
        # if Redis is away now, the pipeline writes it before it logs the next decision
        try:
            await self.decider.tables.publish(catalog)
        except Exception as e:  # noqa: BLE001
            log.warning("feature table of catalog %s not written yet (%s); the next decision writes it",
                        catalog.version, e)
        # --- end feature table
        self.models.adopt(book, catalog)  # learning loop: keep snapshots and apprentice baselines in force
        # One assignment: requests in flight keep the holder they read.
        self.holder = self.decider.holder = CatalogHolder(catalog, book)
        heap.settle(f"catalog {catalog.version}")  # the old catalog collected, the new one frozen
        await self.redis.set(keys.CATALOG_VERSION, catalog.version)
        log.info("catalog reloaded: version %s", catalog.version)
        return ReloadResult(True, catalog.version)

    async def _watch_catalog(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_poll_s)
            try:
                mtime = self.settings.catalog.stat().st_mtime
            except OSError:
                continue
            if mtime != self._catalog_mtime:
                await self.reload_catalog()

    async def _watch_health(self) -> None:
        """Health follows Redis; when it comes back, the spool is replayed."""
        healthy = True
        while True:
            await asyncio.sleep(self.settings.health_poll_s)
            try:
                await asyncio.wait_for(self.redis.ping(), timeout=self.settings.health_poll_s)
                ok = True
            except Exception:
                ok = False
            if ok != healthy and not self._stopping.is_set():
                healthy = ok
                log.warning("redis %s: health %s", "reachable" if ok else "unreachable",
                            "SERVING" if ok else "NOT_SERVING")
                await self._set_serving(ok)
            if ok:
                try:
                    await self.replay_spool()
                except Exception:  # noqa: BLE001 - the store went away again; retried next round
                    log.warning("spool replay interrupted; will retry", exc_info=True)

    async def _trim_logs(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.logs.trim_by_age(self.clock.now_ms())
            except Exception:
                log.warning("log trimming failed; will retry", exc_info=True)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING first, in-flight requests finish, then close."""
        self._stopping.set()
        await self._set_serving(False)
        for t in self._tasks:
            t.cancel()
        if self.server is not None and self.settings.drain_s > 0:
            await asyncio.sleep(self.settings.drain_s)
        # The background tasks end before the clients they use are closed; a task that outlived its
        # cancel would poll on (reconnecting) and hold asyncio.run, so the process, at its end.
        left = await cancel_and_wait(self._tasks, self.settings.grace_s)
        if left:
            log.warning("background tasks still running at stop: %s", ", ".join(repr(t.get_coro()) for t in left))
        self.health.close_watches()
        if self.server is not None:
            await self.server.stop(self.settings.grace_s)
        if hasattr(self, "decider"):  # the last answers' commits and rows, before Redis is closed
            await self.decider.drain_commits(self.settings.grace_s)
            try:
                await asyncio.wait_for(self.decider.log_writer.drain(), timeout=self.settings.grace_s)
            except Exception:  # noqa: BLE001
                log.warning("decision log: %d rows not written at stop", self.decider.log_writer.pending())
        if hasattr(self, "spool"):
            try:  # last chance to hand spooled rows to Redis; they stay on disk otherwise
                await asyncio.wait_for(self.replay_spool(), timeout=self.settings.grace_s)
            except Exception:  # noqa: BLE001
                log.warning("spool kept on disk for the next start (%d entries)", self.spool.pending())
        if hasattr(self, "redis"):
            if self.hot is not self.redis:
                await self.hot.aclose()
            await self.redis.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    async def wait(self) -> None:
        await self._stopping.wait()


async def serve(settings: Settings) -> None:
    app = await App(settings).start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # SIGHUP: re-read the catalog now (it is also re-read when the file changes).
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload_catalog()))
    print(f"nba: serving on {settings.host}:{app.port} (catalog {settings.catalog}, "
          f"redis {'embedded in ' + str(settings.data_dir) if app.embedded else 'REDIS_URL'})", flush=True)
    await done.wait()
    log.info("shutting down")
    await app.stop()
