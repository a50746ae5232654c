"""Redis servers of a test's own (bench.redis_deployments): outside CI a test skips when redis-server or redis-cli
is missing, in CI it fails."""

import shutil
from pathlib import Path

from bench import redis_deployments
from bench.redis_deployments import free_port, wait_until
from tests.conftest import _required_in_ci

__all__ = ["ClusterServers", "RedisServer", "SentinelGroup", "free_port", "wait_until"]


def _require(*programs: str) -> None:
    for program in programs:
        if not shutil.which(program):
            _required_in_ci(program)


class RedisServer(redis_deployments.RedisServer):
    def __init__(self, directory: Path, *options: str) -> None:
        _require("redis-server")
        super().__init__(directory, *options)


class SentinelGroup(redis_deployments.SentinelGroup):
    def __init__(self, directory: Path, master: str = "switchboard-test", replicas: int = 1) -> None:
        _require("redis-server")
        super().__init__(directory, master, replicas)


class ClusterServers(redis_deployments.ClusterServers):
    def __init__(self, directory: Path) -> None:
        _require("redis-server", "redis-cli")
        super().__init__(directory)
