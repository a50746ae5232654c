"""The Redis deployments `make bench` measures the counters on: the standalone Redis of BENCH_REDIS_URL, and a
Sentinel deployment and a cluster started for the bench (bench.redis_deployments) in a temporary directory and
stopped after. Each gives the settings that point Switchboard at it and the primaries that do the counting."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

from bench.redis_deployments import ClusterServers, SentinelGroup

MODES = ("standalone", "sentinel", "cluster")
LABELS = {"standalone": "standalone", "sentinel": "Sentinel", "cluster": "cluster"}
NEEDED = {"standalone": (), "sentinel": ("redis-server",), "cluster": ("redis-server", "redis-cli")}


class Deployment:
    """Switchboard's settings for one deployment, and clients of its primaries: the servers whose CPU a request costs
    (on a cluster, one installation's keys all carry one hash tag, so one of them does the work)."""

    def __init__(self, mode: str, env: dict[str, str], primaries: list[redis.Redis], servers: str) -> None:
        self.env, self.primaries, self.servers = env, primaries, servers
        self.label = LABELS[mode]

    def describe(self) -> str:
        """Its servers and how they keep their data."""
        try:
            config = self.primaries[0].config_get("appendonly") | self.primaries[0].config_get("save")
        except redis.ResponseError:  # CONFIG renamed or not allowed
            return f"{self.servers}, persistence unknown"
        kept = "appendonly" if config["appendonly"] == "yes" else "snapshots" if config["save"] else "no persistence"
        return f"{self.servers}, {kept}"


def _settings(url: str, *, sentinels: str = "", master: str = "", cluster: str = "") -> dict[str, str]:
    # Every one of them, so that none is inherited from the bench's own environment.
    return {"REDIS_URL": url, "REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_MASTER": master, "REDIS_CLUSTER": cluster}


def missing_programs(mode: str) -> list[str]:
    """What starting `mode` needs and this machine lacks."""
    return [program for program in NEEDED[mode] if not shutil.which(program)]


def _sentinel(servers: SentinelGroup) -> Deployment:
    addresses = ",".join(f"{host}:{port}" for host, port in servers.addresses)
    return Deployment("sentinel", _settings(servers.primary.url, sentinels=addresses, master=servers.master),
                      [redis.Redis(port=servers.primary.port)], "a primary, its replica, 3 Sentinels")


def _cluster(servers: ClusterServers) -> Deployment:
    return Deployment("cluster", _settings(servers.url, cluster="1"), [redis.Redis(port=node.port) for node in servers.primaries()],
                      "3 primaries, a replica each")


@contextlib.contextmanager
def deployment(mode: str, standalone_url: str) -> Iterator[Deployment]:
    """The deployment of `mode`; a Sentinel deployment or a cluster is started for the block and stopped after."""
    if mode == "standalone":
        yield Deployment(mode, _settings(standalone_url), [redis.Redis.from_url(standalone_url)], "BENCH_REDIS_URL")
        return
    with tempfile.TemporaryDirectory(prefix=f"switchboard-bench-{mode}-") as directory:
        servers = SentinelGroup(Path(directory), master="switchboard-bench") if mode == "sentinel" else ClusterServers(Path(directory))
        try:
            servers.start()
            yield _sentinel(servers) if mode == "sentinel" else _cluster(servers)
        finally:
            servers.kill()
