"""Redis deployments of one's own, started from redis-server on free ports in a directory, to measure, stop, kill and
restart without touching the machine's Redis: one redis-server, a primary with its replicas behind three Sentinels,
and a cluster of three primaries each with a replica. `make bench` measures the counters on them; the tests
(tests/redis_servers.py) take them through outages, failovers and resharding."""

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


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
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
                        "--save", "", "--repl-diskless-sync-delay", "0", *options]
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


class SentinelGroup:
    """A primary, its `replicas` (all appendonly) and three Sentinels watching them as `master`."""

    def __init__(self, directory: Path, master: str = "switchboard-test", replicas: int = 1) -> None:
        self.master = master
        self.primary = RedisServer(directory, "--appendonly", "yes", "--dbfilename", "primary.rdb", "--appendfilename", "primary.aof")
        self.replicas = [RedisServer(directory, "--appendonly", "yes", "--dbfilename", f"replica-{i}.rdb",
                                     "--appendfilename", f"replica-{i}.aof", "--replicaof", "127.0.0.1", str(self.primary.port))
                         for i in range(replicas)]
        self.replica = self.replicas[0]
        self.sentinels = [SentinelServer(directory / f"sentinel-{i}", master, self.primary.port) for i in range(3)]

    def start(self) -> "SentinelGroup":
        for server in (self.primary, *self.replicas, *self.sentinels):
            server.start()
        for replica in self.replicas:
            wait_until(lambda replica=replica: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up", 30,
                       "the replica to follow its primary")
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    def primary_client(self) -> redis.Redis:
        """A client of the primary the Sentinels name now."""
        return redis.Sentinel(self.addresses).master_for(self.master)

    def kill(self) -> None:
        for server in (*self.sentinels, *self.replicas, self.primary):
            server.kill()


class ClusterServers:
    """A Redis Cluster of three primaries, each with a replica (appendonly); a replica takes over a primary a second
    or two after it stops answering."""

    def __init__(self, directory: Path) -> None:
        # The cluster bus on a free port of its own: the default, the node's port + 10000, may be taken or past 65535.
        self.nodes = [RedisServer(directory / f"node-{i}", "--appendonly", "yes", "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
                                  "--cluster-replica-validity-factor", "0") for i in range(6)]
        self.url = self.nodes[0].url

    def start(self) -> "ClusterServers":
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{node.port}" for node in self.nodes],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, stdout=subprocess.DEVNULL)
        wait_until(self.settled, 60, "the cluster to settle")
        return self

    def settled(self) -> bool:
        """Every node answers with the cluster whole, and knows of three primaries with a replica in step each."""
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            if client.cluster("info")["cluster_state"] != "ok" or len(client.cluster("nodes")) != 6:
                return False
            replication = client.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url)

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now."""
        return [node for node in self.nodes if redis.Redis(port=node.port).info("replication")["role"] == "master"]

    def primary_of_slot(self, slot: int, asking: list[RedisServer] | None = None) -> RedisServer | None:
        """The primary holding `slot` now, as the first node of `asking` (default: every node) that answers says;
        None while no primary of it answers."""
        for node in asking or self.nodes:
            try:
                layout = redis.Redis(port=node.port, decode_responses=True).cluster("shards")
            except redis.ConnectionError:
                continue
            for shard in layout:
                bounds = shard["slots"]  # start, end, start, end...
                if any(bounds[i] <= slot <= bounds[i + 1] for i in range(0, len(bounds), 2)):
                    for member in shard["nodes"]:
                        if member["role"] == "master" and member["health"] == "online":
                            return next(server for server in self.nodes if server.port == int(member["port"]))
            return None
        return None

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
