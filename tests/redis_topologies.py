"""Private Redis Cluster and Sentinel sets on loopback free ports, for the failover tests.

Each is made of real `redis-server` processes (harness/redis_server.py's `RedisServer`, one
per node, with extra options), tuned to fail over within a few seconds: a cluster node
timeout of 1 s, a sentinel down-after of 500 ms.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from harness.redis_server import RedisServer
from harness.server import free_port
from harness.system_tools import require_tool

CLUSTER_NODE_TIMEOUT_MS = 1000
SENTINEL_DOWN_AFTER_MS = 500
SENTINEL_FAILOVER_TIMEOUT_MS = 3000
SERVICE = "housing"
READY_SECONDS = 30.0


def _wait(check: Callable[[], bool], what: str, timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout} s")


class Cluster:
    """Three masters, each with one replica."""

    def __init__(self, directory: Path) -> None:
        self.nodes = []
        for i in range(6):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            self.nodes.append(RedisServer(node_dir))

    def _start_node(self, node: RedisServer) -> None:
        """Start a node on free ports, choosing again if another process took one first."""
        for attempt in range(3):
            node.extra_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node.directory / "nodes.conf"),
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                # A replica fails over however long ago it last heard its master: on a busy
                # machine a link may lag past the default 10 node timeouts and the replica
                # would then refuse, leaving its slots unserved.
                "--cluster-replica-validity-factor", "0",
                # Its own free port: the default (port + 10000) may be past 65535.
                "--cluster-port", str(free_port()),
            ]  # fmt: skip
            try:
                node.start()
                return
            except TimeoutError:
                if attempt == 2:
                    raise
                node.kill()
                node.port = free_port()

    @property
    def url(self) -> str:
        """Any live node's: the client learns the others from it."""
        return self.live_node().url

    def start(self) -> None:
        for node in self.nodes:
            self._start_node(node)
        cli = require_tool("redis-cli", "for the Redis Cluster tests")
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait(lambda: self.healthy() and self._replicas_linked(), "cluster ok, replicas in sync")

    def _replicas_linked(self) -> bool:
        """Every replica's link to its master is up (its first sync is over)."""
        replicas = 0
        for node in self.nodes:
            with node.client() as client:
                info = client.info("replication")
            if info["role"] == "slave":
                replicas += 1
                if info.get("master_link_status") != "up":
                    return False
        return replicas == 3

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, with three masters answering."""
        live = [node for node in self.nodes if node.running]
        for node in live:
            with node.client() as client:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
        return len(self.masters()) == 3

    def masters(self) -> list[RedisServer]:
        found = []
        for node in self.nodes:
            if node.running:
                with node.client() as client:
                    if client.info("replication")["role"] == "master":
                        found.append(node)
        return found

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.live_node().port)

    def live_node(self) -> RedisServer:
        return next(node for node in self.nodes if node.running)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2) watching them."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer(directory / "master")
        self.replica = RedisServer(directory / "replica")
        self.sentinels = [RedisServer(directory / f"sentinel{i}") for i in range(3)]
        for server in [self.master, self.replica, *self.sentinels]:
            server.directory.mkdir()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.master.start()
        self.replica.extra_args = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        for sentinel in self.sentinels:
            config = sentinel.directory / "sentinel.conf"
            config.write_text(
                f"port {sentinel.port}\nbind 127.0.0.1\ndir {sentinel.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {SENTINEL_FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel.config_file = config
            sentinel.start()
        _wait(self._replicating, "replica in sync and sentinels agreeing")

    def _replicating(self) -> bool:
        with self.master.client() as client:
            if client.info("replication").get("connected_slaves", 0) < 1:
                return False
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(SERVICE)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
        return True

    def current_master_port(self) -> int:
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.kill()


@contextlib.contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    cluster = Cluster(directory)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def running_sentinels(directory: Path) -> Iterator[SentinelSet]:
    sentinels = SentinelSet(directory)
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()
