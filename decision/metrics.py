"""Service metrics (OpenTelemetry instruments), exposed for Prometheus on
`/metrics` and optionally pushed with OTLP.

Label values are catalog ids, stage names and rule names: bounded by the
catalog, never a person.

    nba_decisions_total{placement, arm, fallback, degraded}
    nba_decide_duration_seconds{placement}         end-to-end pipeline latency
    nba_stage_duration_seconds{stage}               per pipeline stage, sampled:
                                                    1 decision in STAGE_SAMPLE
    nba_removals_total{stage, offer, rule}          candidates removed, by rule
    nba_reservation_refusals_total{offer}           refused at commit (concurrent race)
    nba_redis_errors_total{op, kind}                errors and timeouts of Redis calls
    nba_rewards_total{placement, event_type, outcome}
    nba_reward_join_lag_seconds{placement}          reward time - decision time
    nba_spool_entries_total{kind}                   written to the local spool
    nba_model_version_info{placement, arm, version} 1 for the model in use
    nba_model_load_errors_total{placement, arm}     snapshots refused by this replica
    nba_gc_pauses_total{generation}                 garbage collector passes (decision/heap.py)
    nba_gc_pause_seconds_total{generation}          time the process stood still for them
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

log = logging.getLogger("nba.metrics")

_meter = metrics.get_meter("nba.decision")
meter = _meter  # for instruments defined next to what they measure (decision/heap.py)

# A decision records few SDK measurements (each costs ~5 us with its
# attributes); the hot counters below are plain dict increments that the SDK
# reads as observable counters when it collects.
STAGE_SAMPLE = 8


class HotCounter:
    """A monotonic counter for the hot path: `add` is a dict increment; the
    totals are reported through an observable counter at collection time."""

    def __init__(self, name: str, description: str, labels: tuple[str, ...]) -> None:
        self._labels = labels
        self._counts: defaultdict[tuple, int] = defaultdict(int)
        _meter.create_observable_counter(name, callbacks=[self._observe], description=description)

    def add(self, amount: int, key: tuple) -> None:
        self._counts[key] += amount

    def add_each(self, keys: Iterable[tuple]) -> None:
        """One for each key (a 200-candidate decision counts ~100 removals)."""
        counts = self._counts
        for key in keys:
            counts[key] += 1

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        for key, total in list(self._counts.items()):
            yield Observation(total, dict(zip(self._labels, key)))


DECISIONS = HotCounter("nba_decisions", "decisions made", ("placement", "arm", "fallback", "degraded"))
# Bucket bounds, in seconds. The SDK's default bounds (0, 5, 10, 25 ... 10,000)
# are made for milliseconds: a Decide of 2 ms and one of 2 s would share a
# bucket and no quantile could be read from /metrics.
DECIDE_BUCKETS_S = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0)
STAGE_BUCKETS_S = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1)
REWARD_LAG_BUCKETS_S = (1, 10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800, 604800)

DECIDE_DURATION = _meter.create_histogram("nba_decide_duration", unit="s", description="decide pipeline latency",
                                          explicit_bucket_boundaries_advisory=DECIDE_BUCKETS_S)
STAGE_DURATION = _meter.create_histogram("nba_stage_duration", unit="s", description="latency per pipeline stage",
                                         explicit_bucket_boundaries_advisory=STAGE_BUCKETS_S)
REMOVALS = HotCounter("nba_removals", "candidates removed by a rule", ("stage", "offer", "rule"))
RESERVATION_REFUSALS = _meter.create_counter("nba_reservation_refusals", description="chosen items refused at commit")
COMMITS_AFTER_ANSWER = _meter.create_counter(
    "nba_commits_after_answer",
    description="reservations of items answered under the person's lease, by outcome: recorded, "
                "lease_expired / over_limit (counted all the same), unknown (spooled)")
REDIS_ERRORS = _meter.create_counter("nba_redis_errors", description="Redis errors and timeouts")
REWARDS = _meter.create_counter("nba_rewards", description="reward events")
REWARD_LAG = _meter.create_histogram("nba_reward_join_lag", unit="s", description="reward time minus decision time",
                                     explicit_bucket_boundaries_advisory=REWARD_LAG_BUCKETS_S)
SPOOLED = _meter.create_counter("nba_spool_entries", description="entries written to the local spool")
LOG_ROWS_LOST = _meter.create_counter("nba_decision_log_rows_lost",
                                      description="decision log rows neither Redis nor the spool took")
MODEL_LOAD_ERRORS = _meter.create_counter("nba_model_load_errors", description="model snapshots refused")

_model_sources: list[Callable[[], Iterable[tuple[str, str, str]]]] = []


def observe_models(source: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
    """Register a callable yielding (placement, arm, version) of the models in use."""
    _model_sources.append(source)


def _models(options: CallbackOptions) -> Iterable[Observation]:
    for source in list(_model_sources):
        try:
            for placement, arm, version in source():
                yield Observation(1, {"placement": placement, "arm": arm, "version": version})
        except Exception:  # a metrics scrape must never fail the service
            log.debug("model source failed", exc_info=True)


_meter.create_observable_gauge("nba_model_version_info", callbacks=[_models], description="model version in use")


def serve_prometheus(port: int, host: str = "127.0.0.1") -> None:
    """Install the SDK meter provider with a Prometheus reader and serve
    /metrics on host:port (a daemon thread of prometheus_client)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server

    readers = [PrometheusMetricReader()]
    otlp = _otlp_reader()
    if otlp is not None:
        readers.append(otlp)
    metrics.set_meter_provider(MeterProvider(resource=Resource.create({"service.name": "nba-decision"}),
                                             metric_readers=readers))
    start_http_server(port, addr=host)


def _otlp_reader():
    import os

    if not os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError:
        log.warning("OTLP endpoint set but the [otlp] extra is not installed: metrics go to /metrics only")
        return None
    return PeriodicExportingMetricReader(OTLPMetricExporter())
