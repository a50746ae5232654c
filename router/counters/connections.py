"""Redis connections for the counters: one bounded pool per process, and each thread's own connection from it.

The scripts run on a connection the calling thread keeps (taking one from the pool around every call
costs the hot path), and gives back to the pool when the thread ends: a server that starts a thread
per request (Django's development server) gives them back as fast as it takes them. When every
connection is in use, a caller waits up to ROUTER_REDIS_POOL_TIMEOUT seconds, then gets
`PoolExhausted`: a fault on this side, which never moves counting to the database.

On a Redis Cluster every key of one installation is in one hash slot (router.counters.redis), so the
thread keeps its connection to the primary holding that slot, and follows the slot when the cluster
moves it (resharding) or promotes a replica (ClusterConnections).
"""

import os
import threading
import time
import weakref

from redis import BlockingConnectionPool, Connection, Redis, RedisCluster
from redis.exceptions import AskError, ClusterDownError, ConnectionError, MovedError, TimeoutError, TryAgainError
from redis.sentinel import Sentinel, SentinelConnectionPoolProxy, SentinelManagedConnection, SentinelManagedSSLConnection

# What redis-py's BlockingConnectionPool says when its wait for a free connection ran out.
NO_CONNECTION_AVAILABLE = "No connection available."


class PoolExhausted(Exception):
    """Every connection of this process's pool stayed in use for the whole wait: not a Redis outage."""


class CountersPool(BlockingConnectionPool):
    def get_connection(self, *args, **kwargs) -> Connection:
        try:
            return super().get_connection(*args, **kwargs)
        except ConnectionError as exc:
            if str(exc) == NO_CONNECTION_AVAILABLE:
                raise PoolExhausted(f"All {self.max_connections} Redis connections of this process were busy for {self.timeout} s.") from exc
            raise


# How long a script waits, in steps, for the slot of its keys to finish moving to another primary (resharding).
SLOT_MOVING_STEPS = 20
SLOT_MOVING_STEP_SECONDS = 0.05


def is_cluster(url: str, setting: str) -> bool:
    """Whether `url` names a node of a Redis Cluster: REDIS_CLUSTER says so ("1" or "0"), or the server does (INFO cluster)."""
    if setting:
        return setting == "1"
    probe = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return probe.info("cluster").get("cluster_enabled") == 1
    finally:
        probe.close()


def client_for(url: str, *, max_connections: int, timeout: float, sentinels: list[tuple[str, int]] | None = None,
               sentinel_master: str = "", sentinel_password: str = "", cluster: bool = False,
               read_timeout: float = 0.5) -> Redis | RedisCluster:
    """A client with this process's bounded pool. With `sentinels`, each new connection asks them for the primary of
    `sentinel_master` (redis-py's Sentinel-managed connections): after a failover the next connection reaches the
    new primary, with no restart; the host in `url` is not used then. With `cluster`, a cluster client that finds
    every node from the one in `url`, with a bounded pool per node. `read_timeout` bounds the wait for any answer
    (longer than a WAIT's own timeout)."""
    options = {"max_connections": max_connections, "timeout": timeout, "socket_timeout": read_timeout, "socket_connect_timeout": 0.5,
               "health_check_interval": 30}
    if cluster:
        del options["health_check_interval"]  # not a cluster client's option: a connection is checked before each use
        return RedisCluster.from_url(url, connection_pool_class=CountersPool, **options)
    if not sentinels:
        return Redis(connection_pool=CountersPool.from_url(url, **options))
    managed = SentinelManagedSSLConnection if url.startswith("rediss://") else SentinelManagedConnection
    pool = CountersPool.from_url(url, connection_class=managed, **options)
    sentinel_options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "password": sentinel_password or None}
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_options)
    pool.connection_kwargs["connection_pool"] = SentinelConnectionPoolProxy(
        connection_pool=pool, is_master=True, check_connection=False, service_name=sentinel_master, sentinel_manager=manager)
    return Redis(connection_pool=pool)


class _Held:
    """The connection one thread holds, and the process it was taken in."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.pid = os.getpid()


class ThreadConnections:
    """Each thread's own connection from `pool`, checked as the pool checks one before lending it."""

    def __init__(self, pool: CountersPool) -> None:
        self.pool = pool
        self.local = threading.local()

    def get(self) -> Connection:
        held = getattr(self.local, "held", None)
        if held is None or held.pid != os.getpid():  # a process forked from this one takes its own
            held = _Held(self.pool.get_connection())
            # The thread's locals go when the thread ends, and with them this connection, back to the pool.
            weakref.finalize(held, self.pool.release, held.connection)
            self.local.held = held
        connection = held.connection
        connection.connect()
        try:
            if connection.can_read():  # a reply left unread, or a server that closed the connection
                raise ConnectionError("Connection has data")
        except (ConnectionError, TimeoutError, OSError):
            connection.disconnect()
            connection.connect()
        return connection

    def follow(self, exc: BaseException) -> bool:
        """A call on one server is never run again at once: the caller fails over (router.counters)."""
        return False


class ClusterConnections:
    """Each thread's own connection to the cluster's primary holding `slot`, where every key of one installation is.

    `follow` is told of every failed call: a slot that moved (MOVED) or is moving (ASK, TRYAGAIN while its keys
    migrate) is followed and the call may run again at once, as it changed nothing; a primary that cannot be reached
    makes the next call read the cluster's layout again, where a replica has taken its place.
    """

    def __init__(self, client: RedisCluster, slot: int) -> None:
        self.client = client
        self.slot = slot
        self.by_node: dict[str, ThreadConnections] = {}
        self.lock = threading.Lock()
        self.stale = False

    def get(self) -> Connection:
        if self.stale:
            self.stale = False
            self.client.nodes_manager.initialize()
        node = self.client.nodes_manager.get_node_from_slot(self.slot)
        connections = self.by_node.get(node.name)
        if connections is None:
            with self.lock:
                connections = self.by_node.setdefault(
                    node.name, ThreadConnections(self.client.get_redis_connection(node).connection_pool))
        try:
            return connections.get()
        except (ConnectionError, TimeoutError):
            self.stale = True
            raise

    def follow(self, exc: BaseException) -> bool:
        """After `exc` failed a call: True when it may run again at once."""
        if isinstance(exc, MovedError):
            self.client.nodes_manager.initialize()
            return True
        if isinstance(exc, AskError | TryAgainError):
            time.sleep(SLOT_MOVING_STEP_SECONDS)
            return True
        if isinstance(exc, ConnectionError | TimeoutError | ClusterDownError):
            self.stale = True
        return False
