"""Traces, metrics and structured logs of a real service."""

from __future__ import annotations

import json
import logging
import re
import urllib.request

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decision.bench.procs import free_port
from decision.clock import ManualClock
from decision.logfmt import JsonFormatter
from decision.metrics import DECIDE_BUCKETS_S, STAGE_BUCKETS_S, STAGE_SAMPLE
from decision.tracing import configure_tracing, span
from tests.e2e.conftest import start_service
from tests.helpers import EXAMPLES

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracing():
    configure_tracing(exporter=EXPORTER)


async def test_one_span_per_rpc_with_a_child_per_stage_and_redis_call(service):
    EXPORTER.clear()
    await service.decide("home_hero", "pid:tom", context={"page": "home"})
    spans = EXPORTER.get_finished_spans()
    names = [s.name for s in spans]
    (rpc,) = [s for s in spans if s.name == "nba.v1.DecisionService/Decide"]
    assert rpc.attributes["rpc.system"] == "grpc" and rpc.attributes["rpc.method"] == "Decide"
    for stage in ("identity", "candidates", "eligibility", "consent", "pressure", "policy", "commit"):
        assert f"nba.stage.{stage}" in names
    redis_spans = [s for s in spans if s.name.startswith("redis ")]
    assert {s.attributes["db.operation"] for s in redis_spans} >= {"fetch_profile", "reserve"}
    # The log writer runs in the background and may already have flushed this decision's row
    # (its own trace, checked below); every other span belongs to the request's trace.
    writes = {s.context.trace_id for s in spans if s.name == "nba.decision_log.write"}
    assert all(s.context.trace_id in writes or s.context.trace_id == rpc.context.trace_id for s in spans)
    # The log row is written after the answer, in a trace of its own that links to the request's.
    await service.app.decider.log_writer.drain()
    (write,) = [s for s in EXPORTER.get_finished_spans() if s.name == "nba.decision_log.write"]
    assert write.parent is None and write.context.trace_id != rpc.context.trace_id
    (link,) = write.links  # to the request's commit stage
    assert link.context.trace_id == rpc.context.trace_id
    assert link.context.span_id in {s.context.span_id for s in spans if s.name == "nba.stage.commit"}
    (log_call,) = [s for s in EXPORTER.get_finished_spans() if s.name == "redis log_decision"]
    assert log_call.parent.span_id == write.context.span_id
    spans = EXPORTER.get_finished_spans()
    # no personal identifier anywhere in names or attributes
    text = json.dumps([[s.name, dict(s.attributes or {})] for s in spans])
    assert "tom" not in text and "pid:" not in text


async def test_prometheus_endpoint_exposes_decisions_stages_and_models(redis, redis_url, tmp_path):
    import shutil

    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    port = free_port()
    svc = await start_service(redis_url, catalog, ManualClock(ms=1_795_017_600_000), metrics_port=port)
    try:
        await svc.load_profiles()
        for _ in range(STAGE_SAMPLE):  # stage latencies are sampled: one decision in STAGE_SAMPLE
            await svc.decide("home_hero", "pid:tom")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        await svc.channel.close()
        await svc.app.stop()
    assert 'nba_decisions_total{' in body and 'placement="home_hero"' in body
    assert "nba_stage_duration" in body and 'stage="eligibility"' in body
    assert "nba_removals_total" in body
    # tom's single picks without a budget were answered under his lease
    assert re.search(r'nba_commits_after_answer_total\{[^}]*outcome="recorded"', body)
    assert "nba_model_version_info" in body and 'arm="champion"' in body
    assert "tom" not in body
    # latency histograms in buckets a Decide's milliseconds can be read from (the SDK's default bounds
    # start at 5 s), every decision in one of them
    decide = {float(le): float(n) for le, n in re.findall(
        r'nba_decide_duration_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)', body) if le != "+Inf"}
    assert sorted(decide) == list(DECIDE_BUCKETS_S)
    assert decide[1.0] == STAGE_SAMPLE  # each decision was counted, in a bucket below a second
    stages = {float(le) for le in re.findall(r'nba_stage_duration_seconds_bucket\{[^}]*le="([^"]+)"', body)
              if le != "+Inf"}
    assert stages == set(STAGE_BUCKETS_S)


def test_json_log_lines_carry_trace_and_decision_ids():
    logger = logging.getLogger("nba.test")
    with span("test-span"):
        record = logger.makeRecord("nba.test", logging.WARNING, __file__, 1, "decision degraded", (), None,
                                   extra={"decision_id": "01ABC"})
        line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "decision degraded" and entry["decision_id"] == "01ABC"
    assert len(entry["trace_id"]) == 32 and entry["level"] == "warning"
