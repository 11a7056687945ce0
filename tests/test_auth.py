"""Security end to end: token auth with scopes, TLS, mutual TLS; real gRPC.

Test certificates are made here with the `openssl` command (a throwaway CA,
a server certificate for localhost/127.0.0.1, a client certificate, and a
rogue CA with its own client certificate); the tests that need them are
skipped, with a reason, where `openssl` is not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from decision import auth, cli
from decision.auth import TokenBook, TokenConfigError
from decision.clock import ManualClock
from decision.nba.v1 import decision_pb2 as pb
from decision.nba.v1 import decision_pb2_grpc as pb_grpc
from decision.store import keys
from decision.tls import ClientTls, ServerTls, TlsConfigError, aio_channel
from tests.e2e.conftest import decide_request, start_service
from tests.helpers import EXAMPLES

WEB = "web-token-0123456789abcdef"
COLLECTOR = "collector-token-0123456789"
OPS = "ops-token-0123456789abcdef0"
TOKENS_YAML = f"""
web:
  token_sha256: {hashlib.sha256(WEB.encode()).hexdigest()}
  scopes: [decide]
collector:
  token_sha256: {hashlib.sha256(COLLECTOR.encode()).hexdigest()}
  scopes: [reward]
ops:
  token: {OPS}
  scopes: [decide, reward, admin]
"""


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# --- the tokens file ---------------------------------------------------------------

def test_tokens_file_maps_applications_to_scopes(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS_YAML)
    path.chmod(0o600)
    book = TokenBook.load(path)
    assert book.apps == ("web", "collector", "ops")
    assert book.authenticate(WEB).scopes == {"decide"}
    assert book.authenticate(OPS).app == "ops"
    assert book.authenticate("nope") is None and book.authenticate(WEB + " ") is None
    # the same as JSON, in NBA_TOKENS, under an optional `apps:` key
    text = json.dumps({"apps": {"web": {"token_sha256": auth.token_digest(WEB), "scopes": "decide,reward"}}})
    book = TokenBook.from_sources(None, {"NBA_TOKENS": text})
    assert book.authenticate(WEB).scopes == {"decide", "reward"}
    assert TokenBook.from_sources(None, {}) is None  # nothing given: auth off
    assert TokenBook.from_sources(None, {"NBA_TOKENS_FILE": str(path), "NBA_TOKENS": text}).apps[0] == "web"


@pytest.mark.parametrize("text, message", [
    ("web: {token: short-secret, scopes: [decide]}", "at least 16 characters"),
    ("web: {token_sha256: abc, scopes: [decide]}", "64 hex characters"),
    ("web: {token: long-enough-secret-1, scopes: [decide, root]}", "unknown scope(s) root"),
    ("web: {token: long-enough-secret-1, scopes: []}", "non-empty list"),
    ("web: {token: long-enough-secret-1, token_sha256: " + "0" * 64 + ", scopes: [decide]}", "exactly one"),
    ("web: {token: long-enough-secret-1, scopes: [decide], extra: 1}", "unknown key(s) extra"),
    ("a: {token: long-enough-secret-1, scopes: [decide]}\nb: {token: long-enough-secret-1, scopes: [reward]}",
     "share one token"),
    ("- just a list", "expected a mapping"),
    ("web: {token: 'long-enough-secret-1\n", "not valid YAML"),
    ("{}", "no application"),
])
def test_a_bad_tokens_file_is_refused_without_showing_a_token(text, message):
    with pytest.raises(TokenConfigError) as e:
        TokenBook.from_text(text, "tokens.yaml")
    assert message in str(e.value)
    for secret in ("short-secret", "long-enough-secret-1"):
        assert secret not in str(e.value)


def test_every_digest_is_compared_in_constant_time(monkeypatch):
    """No early exit: the time does not tell whether or which app matched."""
    book = TokenBook.from_text(TOKENS_YAML, "t")
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for token in (WEB, OPS, "wrong"):
        calls.clear()
        book.authenticate(token)
        assert len(calls) == 3


def test_methods_nobody_listed_need_admin():
    assert auth.required_scope("/nba.v1.DecisionService/Decide") == "decide"
    assert auth.required_scope("/nba.v1.AdminService/Forget") == "admin"
    assert auth.required_scope("/nba.v1.AdminService/SomethingNew") == "admin"
    assert auth.required_scope("/grpc.health.v1.Health/Check") is None
    assert auth.required_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None


# --- token auth over gRPC ---------------------------------------------------------

async def _service(redis_url, tmp_path, **settings):
    catalog = tmp_path / "catalog.yaml"
    shutil.copy(EXAMPLES / "catalog.yaml", catalog)
    svc = await start_service(redis_url, catalog, ManualClock(ms=1_795_017_600_000), spool_dir=tmp_path / "spool",
                              **settings)
    await svc.load_profiles()
    return svc


@pytest_asyncio.fixture
async def secured(redis, redis_url, tmp_path):
    svc = await _service(redis_url, tmp_path, tokens=TokenBook.from_text(TOKENS_YAML, "test"))
    try:
        yield svc
    finally:
        await svc.channel.close()
        await svc.app.stop()


async def _status(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_calls_without_a_valid_token_are_unauthenticated(secured):
    decide = decide_request("home_hero", "pid:tom", dry_run=True)
    forget = pb.ForgetRequest(person_key="pid:tom", reason="DSR")
    for metadata in (None, bearer("wrong-token"), (("authorization", "Basic d2ViOg=="),), bearer(""),
                     (("authorization", WEB),)):
        assert await _status(secured.stub.Decide(decide, metadata=metadata)) is grpc.StatusCode.UNAUTHENTICATED
        assert await _status(secured.stub.Reward(pb.RewardRequest(), metadata=metadata)) \
            is grpc.StatusCode.UNAUTHENTICATED
        assert await _status(secured.admin.ReloadCatalog(pb.ReloadCatalogRequest(), metadata=metadata)) \
            is grpc.StatusCode.UNAUTHENTICATED
        assert await _status(secured.admin.Forget(forget, metadata=metadata)) is grpc.StatusCode.UNAUTHENTICATED
    assert await secured.app.redis.exists(keys.profile("pid:tom"))
    # an unauthenticated payload is not even parsed: garbage gets the same answer
    raw = secured.channel.unary_unary("/nba.v1.DecisionService/Decide")
    assert await _status(raw(b"\xff\xff")) is grpc.StatusCode.UNAUTHENTICATED


async def test_scopes_decide_what_each_application_may_call(secured):
    decide = decide_request("home_hero", "pid:tom")
    resp = await secured.stub.Decide(decide, metadata=bearer(WEB))
    assert resp.decision_id
    reward = pb.RewardRequest(decision_id=resp.decision_id, event_type="click", event_id="e1")
    assert await _status(secured.stub.Reward(reward, metadata=bearer(WEB))) is grpc.StatusCode.PERMISSION_DENIED
    assert await _status(secured.stub.Reward(reward, metadata=bearer(COLLECTOR))) is grpc.StatusCode.OK
    assert await _status(secured.stub.Decide(decide, metadata=bearer(COLLECTOR))) \
        is grpc.StatusCode.PERMISSION_DENIED
    for token in (WEB, COLLECTOR):
        assert await _status(secured.admin.ReloadCatalog(pb.ReloadCatalogRequest(), metadata=bearer(token))) \
            is grpc.StatusCode.PERMISSION_DENIED
    assert await _status(secured.admin.ReloadCatalog(pb.ReloadCatalogRequest(), metadata=bearer(OPS))) \
        is grpc.StatusCode.OK
    # the scheme is case-insensitive (RFC 6750)
    assert await _status(secured.stub.Decide(decide, metadata=(("authorization", f"bearer {WEB}"),))) \
        is grpc.StatusCode.OK
    # a method no one listed needs admin; with it, it is simply unknown
    unknown = secured.channel.unary_unary("/nba.v1.AdminService/DropEverything")
    assert await _status(unknown(b"", metadata=bearer(WEB))) is grpc.StatusCode.PERMISSION_DENIED
    assert await _status(unknown(b"", metadata=bearer(OPS))) is grpc.StatusCode.UNIMPLEMENTED


async def test_forget_is_audited_with_the_calling_application(secured):
    forget = pb.ForgetRequest(person_key="pid:tom", reason="DSR-77")
    assert await _status(secured.admin.Forget(forget, metadata=bearer(WEB))) is grpc.StatusCode.PERMISSION_DENIED
    resp = await secured.admin.Forget(forget, metadata=bearer(OPS))
    ((_, fields),) = await secured.app.redis.xrange(keys.AUDIT_STREAM)
    entry = json.loads(fields["r"])
    assert entry["app"] == "ops" and entry["reason"] == "DSR-77" and entry["pseudonym"] == resp.pseudonym


async def test_health_and_reflection_stay_open(secured):
    health = health_pb2_grpc.HealthStub(secured.channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
    answers = [a async for a in reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert "nba.v1.AdminService" in names


async def test_tokens_never_reach_the_logs(secured, caplog):
    caplog.set_level(logging.DEBUG)
    await _status(secured.stub.Decide(decide_request("home_hero", "pid:tom"), metadata=bearer("guess-" + WEB)))
    await _status(secured.admin.Forget(pb.ForgetRequest(person_key="pid:x", reason="r"), metadata=bearer(WEB)))
    await secured.admin.Forget(pb.ForgetRequest(person_key="pid:x", reason="r"), metadata=bearer(OPS))
    text = caplog.text
    assert "refused a call to /nba.v1.DecisionService/Decide: unknown token" in text
    assert "scope admin missing" in text
    for secret in (WEB, OPS, COLLECTOR):
        assert secret not in text


async def test_a_flood_of_bad_tokens_logs_one_line(secured, caplog):
    caplog.set_level(logging.WARNING, logger="nba.auth")
    for _ in range(20):
        await _status(secured.stub.Decide(decide_request("home_hero", "pid:tom"), metadata=bearer("bad")))
    assert len([r for r in caplog.records if "unknown token" in r.getMessage()]) == 1


# --- TLS and mutual TLS ------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(dir_: Path, name: str, ca: str, cn: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=dir_)
    (dir_ / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=dir_)


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: TLS test certificates cannot be made")
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=nba test {ca}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=d)
    _issue(d, "server", "ca", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                           "extendedKeyUsage=serverAuth\n")
    _issue(d, "client", "ca", "call-center-tool", "extendedKeyUsage=clientAuth\n")
    _issue(d, "rogue", "rogue-ca", "intruder", "extendedKeyUsage=clientAuth\n")
    return d


async def _call_over(target: str, tls: ClientTls, metadata=None) -> grpc.StatusCode:
    channel = aio_channel(target, tls)
    try:
        stub = pb_grpc.DecisionServiceStub(channel)
        return await _status(stub.Decide(decide_request("home_hero", "pid:tom", dry_run=True), metadata=metadata,
                                         timeout=5))
    finally:
        await channel.close()


async def test_tls_serves_only_encrypted_connections(redis, redis_url, tmp_path, certs):
    svc = await _service(redis_url, tmp_path, tls=ServerTls(certs / "server.pem", certs / "server.key"))
    target = f"127.0.0.1:{svc.app.port}"
    try:
        assert await _call_over(target, ClientTls(ca=certs / "ca.pem")) is grpc.StatusCode.OK
        assert await _call_over(f"localhost:{svc.app.port}", ClientTls(ca=certs / "ca.pem")) is grpc.StatusCode.OK
        # plaintext, or a client that does not trust the server's CA: no connection
        assert await _call_over(target, ClientTls()) is grpc.StatusCode.UNAVAILABLE
        assert await _call_over(target, ClientTls(ca=certs / "rogue-ca.pem")) is grpc.StatusCode.UNAVAILABLE
        # the certificate is for localhost, not for another name
        assert await _call_over(target, ClientTls(ca=certs / "ca.pem", server_name="nba.example.com")) \
            is grpc.StatusCode.UNAVAILABLE
    finally:
        await svc.channel.close()
        await svc.app.stop()


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(redis, redis_url, tmp_path, certs):
    tls = ServerTls(certs / "server.pem", certs / "server.key", client_ca=certs / "ca.pem")
    svc = await _service(redis_url, tmp_path, tls=tls)
    target = f"127.0.0.1:{svc.app.port}"
    ca = certs / "ca.pem"
    try:
        assert await _call_over(target, ClientTls(ca=ca, cert=certs / "client.pem", key=certs / "client.key")) \
            is grpc.StatusCode.OK
        assert await _call_over(target, ClientTls(ca=ca)) is grpc.StatusCode.UNAVAILABLE
        assert await _call_over(target, ClientTls(ca=ca, cert=certs / "rogue.pem", key=certs / "rogue.key")) \
            is grpc.StatusCode.UNAVAILABLE
        # without tokens, the audit names the client certificate
        channel = aio_channel(target, ClientTls(ca=ca, cert=certs / "client.pem", key=certs / "client.key"))
        await pb_grpc.AdminServiceStub(channel).Forget(pb.ForgetRequest(person_key="pid:tom", reason="DSR"))
        await channel.close()
        ((_, fields),) = await svc.app.redis.xrange(keys.AUDIT_STREAM)
        assert json.loads(fields["r"])["app"] == "cert:call-center-tool"
    finally:
        await svc.channel.close()
        await svc.app.stop()


async def test_tls_and_tokens_together_from_the_cli(redis, redis_url, tmp_path, certs, capsys, monkeypatch):
    tls = ServerTls(certs / "server.pem", certs / "server.key")
    svc = await _service(redis_url, tmp_path, tls=tls, tokens=TokenBook.from_text(TOKENS_YAML, "test"))
    target = f"localhost:{svc.app.port}"
    common = ["--target", target, "--tls-ca", str(certs / "ca.pem")]
    try:
        code = await asyncio.to_thread(cli.main, ["decide", "home_hero", "pid:tom", "--dry-run", *common,
                                                  "--token", WEB])
        assert code == 0, capsys.readouterr().err
        code = await asyncio.to_thread(cli.main, ["decide", "home_hero", "pid:tom", *common])
        assert code == 1 and "UNAUTHENTICATED" in capsys.readouterr().err
        monkeypatch.setenv("NBA_TOKEN", WEB)
        code = await asyncio.to_thread(cli.main, ["forget", "pid:tom", "--reason", "DSR", *common])
        assert code == 1 and "PERMISSION_DENIED" in capsys.readouterr().err
        monkeypatch.setenv("NBA_TLS_CA", str(certs / "ca.pem"))
        code = await asyncio.to_thread(cli.main, ["health", "--target", target])  # open, TLS from the env
        assert code == 0 and "SERVING" in capsys.readouterr().out
    finally:
        await svc.channel.close()
        await svc.app.stop()


def test_tls_settings_are_checked_before_starting(tmp_path, certs):
    with pytest.raises(TlsConfigError, match="go together"):
        ServerTls.from_args(str(certs / "server.pem"), None, None)
    with pytest.raises(TlsConfigError, match="needs --tls-cert"):
        ServerTls.from_args(None, None, str(certs / "ca.pem"))
    with pytest.raises(TlsConfigError, match="not a PEM file"):
        ServerTls(certs / "server.pem", certs / "server.pem").credentials()  # a certificate is not a key
    with pytest.raises(TlsConfigError, match="does not belong"):
        ServerTls(certs / "server.pem", certs / "client.key").credentials()
    with pytest.raises(TlsConfigError, match="No such file"):
        ServerTls(tmp_path / "missing.pem", certs / "server.key").credentials()
    assert ServerTls.from_args(None, None, None) is None


def test_nba_serve_refuses_a_bad_tokens_file(tmp_path, capsys):
    path = tmp_path / "tokens.yaml"
    path.write_text("web: {token: tiny-secret, scopes: [decide]}\n")
    assert cli.main(["serve", "--tokens", str(path), "--port", "0", "--metrics-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "at least 16 characters" in err and "tiny-secret" not in err


def test_nba_token_new_makes_a_working_entry(capsys):
    assert cli.main(["token", "new", "web", "--scopes", "decide,reward"]) == 0
    captured = capsys.readouterr()
    token = captured.err.strip().splitlines()[-1].strip("# ").strip()
    book = TokenBook.from_text(captured.out, "stdout")
    assert book.authenticate(token).scopes == {"decide", "reward"}
    assert token not in captured.out
    assert cli.main(["token", "new", "web", "--scopes", "root"]) == 2
