"""What the fuzz suite found, kept as tests (docs/FUZZ.md, "Findings").

Each finding is kept as a regression test naming the file and the input:
those at the edge were fixed in decision/convert.py and decision/service.py,
the extreme feature values in bandits/vw.py.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from bandits.policy import Action, Context
from bandits.vw import VWPolicy
from decision.store import keys
from tests.e2e.conftest import decide_request


async def _code(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


# --- fixed at the edge ----------------------------------------------------------

async def test_garbage_bytes_are_invalid_argument_not_unknown(service):
    """Was UNKNOWN ("Unexpected DecodeError"): grpc's answer to a deserializer
    exception. service.add_to_server's deserializers never raise."""
    for method in ("/nba.v1.DecisionService/Decide", "/nba.v1.DecisionService/Reward",
                   "/nba.v1.AdminService/Forget", "/nba.v1.AdminService/ReloadCatalog"):
        call = service.channel.unary_unary(method)
        bad_utf8 = () if method.endswith("ReloadCatalog") else (b"\x0a\x03\xff\xfe\xfd",)  # field 1 is a string
        for data in (b"\xff\xff\xff", b"\x22" * 50, *bad_utf8):
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(data)
            assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, data)
            assert e.value.details().startswith("request: not a valid nba.v1.")


@pytest.mark.parametrize("value", [1e39, 1e308, 3.5e38, 1e16, 4.3786900597380253e-167, 1e-200, -1e-40])
async def test_context_numbers_out_of_the_model_range_are_refused(service, value):
    """Were INTERNAL: 1e39 is infinite as a 32-bit float, and Vowpal Wabbit's
    text parser reads 1e-127..1e-218 as infinity; either made every
    probability NaN."""
    req = decide_request("home_hero", "pid:sarah", context={"x": value}, dry_run=True)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await service.stub.Decide(req)
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("context[x]: must be 0 or of magnitude")


@pytest.mark.parametrize("value", [0.0, 1e-30, -1e-30, 1e15, -1e15, 0.5])
async def test_context_numbers_in_range_are_decided(service, value):
    resp = await service.stub.Decide(decide_request("home_hero", "pid:sarah", context={"x": value}, dry_run=True))
    assert all(math.isfinite(i.probability) for i in resp.items)


async def test_too_many_channels_are_refused(service):
    req = decide_request("home_hero", "pid:sarah", channels=["web"] * 33)
    assert await _code(service.stub.Decide(req)) is grpc.StatusCode.INVALID_ARGUMENT


# --- found in code owned elsewhere -------------------------------------------------

def _home_hero_actions() -> list[Action]:
    return [Action(id=f"a{i}", features={"offer": {"id": f"o{i}", "value": 10.0 * i}, "channel": {"id": "web"}})
            for i in range(1, 5)]


@pytest.mark.parametrize("value", [4e-167, 1e-200, 1e39])
def test_vw_policy_ranks_with_extreme_feature_values(value):
    """Found by fuzzing: VW read 1e-127..1e-218 as inf and 1e38+ overflowed
    float32, giving a NaN PMF. bandits/vw.py now flushes and clips."""
    policy = VWPolicy("champion", {"exploration": "squarecb"}, seed=7)
    ranking = policy.rank(Context({"user": {"x": value}, "context": {"page": "home"}}), _home_hero_actions())
    assert np.isfinite(ranking.probabilities).all()


@pytest.mark.parametrize("text", ["1e-200", "4e-167"])
async def test_an_extreme_profile_attribute_does_not_break_the_decision(service, text):
    """The same reached from Redis: an upstream attribute a:<name> = "1e-200"."""
    await service.app.redis.hset(keys.profile("pid:sarah"), "a:score_raw", text)
    codes = set()
    for _ in range(10):  # several, so that the VW arm is drawn
        codes.add(await _code(service.stub.Decide(decide_request("home_hero", "pid:sarah", dry_run=True))))
    assert codes == {grpc.StatusCode.OK}, codes
