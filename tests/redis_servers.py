"""A redis-server of a test's own, to stop, kill and restart without touching the machine's Redis."""

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import _required_in_ci


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_it_answers(port: int, what: str) -> None:
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.025)
    raise RuntimeError(f"{what} did not start")


class RedisServer:
    """redis-server on a free port with its data in `directory`; `options` are redis-server's own flags."""

    def __init__(self, directory: Path, *options: str) -> None:
        if not shutil.which("redis-server"):
            _required_in_ci("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
                        "--save", "", *options]
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        _wait_until_it_answers(self.port, "redis-server")
        return self

    def shutdown(self) -> None:
        """Stop as an operator would (SHUTDOWN: an appendonly Redis keeps everything)."""
        redis.Redis(port=self.port).shutdown()
        self.process.wait(timeout=10)

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.shutdown()
        self.start()


class SentinelServer:
    """A Redis Sentinel (redis-server --sentinel) on a free port, watching the primary at `primary_port` as `master`."""

    def __init__(self, directory: Path, master: str, primary_port: int) -> None:
        if not shutil.which("redis-server"):
            _required_in_ci("redis-server")
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.master = master
        self.config = directory / "sentinel.conf"  # Sentinel rewrites its file as it learns: it must be its own
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {master} 500\n"
            f"sentinel failover-timeout {master} 5000\n"
            f"sentinel parallel-syncs {master} 1\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> "SentinelServer":
        self.process = subprocess.Popen(["redis-server", str(self.config), "--sentinel"], stdout=subprocess.DEVNULL)
        _wait_until_it_answers(self.port, "redis-server --sentinel")
        return self

    def primary_port(self) -> int | None:
        """The port of the primary this Sentinel names now."""
        address = redis.Redis(port=self.port).sentinel_get_master_addr_by_name(self.master)
        return int(address[1]) if address else None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
