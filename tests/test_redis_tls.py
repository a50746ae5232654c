"""The counters over TLS (`rediss://`), as an ACL user whose name and password are in REDIS_URL, on a single Redis and
on a Redis Cluster whose nodes speak only TLS to clients and to each other: decisions are counted, their reports
settle them, and the drain writes the ledger."""

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from router import counters
from tests.calls import audit, post, quotas_used, route
from tests.conftest import _required_in_ci
from tests.redis_servers import RedisServer, free_port, wait_until

PASSWORD = "a-password-of-this-test"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key, in one directory; the certificate is its own CA."""
    if not shutil.which("openssl"):
        _required_in_ci("openssl")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(directory / "key.pem"),
                    "-out", str(directory / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return directory


def tls_options(certificate: Path, tls_port: int) -> list[str]:
    return ["--tls-port", str(tls_port), "--tls-cert-file", str(certificate / "cert.pem"), "--tls-key-file", str(certificate / "key.pem"),
            "--tls-ca-cert-file", str(certificate / "cert.pem"), "--tls-auth-clients", "no"]


def add_counters_user(port: int) -> None:
    """An ACL user who may do only what the counters do (set up over the node's plain port, which REDIS_URL never names)."""
    redis.Redis(port=port).acl_setuser("counters", enabled=True, passwords=[f"+{PASSWORD}"], keys=["switchboard-test-*"],
                                       channels=["*"], commands=["+@all", "-@dangerous", "+info", "+cluster"])


def counters_url(certificate: Path, tls_port: int) -> str:
    return f"rediss://counters:{PASSWORD}@127.0.0.1:{tls_port}/0?ssl_ca_certs={certificate / 'cert.pem'}"


@pytest.fixture(scope="module")
def single_tls_redis(tmp_path_factory, certificate):
    tls_port = free_port()
    server = RedisServer(tmp_path_factory.mktemp("tls-single"), *tls_options(certificate, tls_port)).start()
    add_counters_user(server.port)
    yield counters_url(certificate, tls_port)
    server.kill()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certificate):
    """Three primaries whose cluster bus and clients' connections are TLS."""
    directory = tmp_path_factory.mktemp("tls-cluster")
    tls_ports = [free_port() for _ in range(3)]
    nodes = [RedisServer(directory / f"node-{i}", "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                         "--cluster-config-file", "nodes.conf", "--tls-cluster", "yes", *tls_options(certificate, port))
             for i, port in enumerate(tls_ports)]
    for node in nodes:
        node.start()
    subprocess.run(["redis-cli", "--tls", "--cacert", str(certificate / "cert.pem"), "--cluster", "create",
                    *[f"127.0.0.1:{port}" for port in tls_ports], "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
    wait_until(lambda: all(redis.Redis(port=node.port).cluster("info")["cluster_state"] == "ok" for node in nodes), 60,
               "the cluster to settle")
    for node in nodes:
        add_counters_user(node.port)
    yield counters_url(certificate, tls_ports[0])
    for node in nodes:
        node.kill()


@pytest.mark.parametrize("deployment", ["single_tls_redis", "tls_cluster"])
def test_decisions_are_counted_and_written_over_tls_as_the_user_in_the_url(api, general_with_requests_quota, settings, request, deployment):
    settings.REDIS_URL = request.getfixturevalue(deployment)
    settings.ROUTER_REDIS_PREFIX = "switchboard-test-tls:"

    answers = [route(api, category="general") for _ in range(2)]

    assert all(answer["outcome"] == "primary" for answer in answers)
    assert post(api, "/api/v1/usage", decision_id=answers[0]["decision_id"], input_tokens=10, output_tokens=5).status_code == 201
    assert quotas_used(api)["requests-minute"] == 2
    assert {decision["decision_id"] for decision in audit(api)} == {answer["decision_id"] for answer in answers}
    backend = counters.redis_counters()
    assert backend.name == "redis"
    assert isinstance(backend.client, redis.RedisCluster) == (deployment == "tls_cluster")
