"""On a Redis Cluster the counters keep every key of an installation in one slot, and follow that slot when the
cluster moves it to another primary or promotes a replica in place of a primary that died, with no restart."""

import redis

from router import counters
from tests.calls import post, quotas_used, route
from tests.redis_servers import ClusterServers, wait_until


def report(api, decision_id: str) -> int:
    return post(api, "/api/v1/usage", decision_id=decision_id, input_tokens=10, output_tokens=5).status_code


def node_id(port: int) -> str:
    return redis.Redis(port=port).cluster("myid").decode()


def move_slot(cluster: ClusterServers, slot: int, target_port: int) -> None:
    """What `redis-cli --cluster reshard` does for one slot: mark it moving, migrate its keys, give it to the target."""
    source = cluster.primary_of_slot(slot)
    source_client, target_client = redis.Redis(port=source.port), redis.Redis(port=target_port)
    target_client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", node_id(source.port))
    source_client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", node_id(target_port))
    while keys := source_client.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        source_client.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for node in cluster.nodes:
        if redis.Redis(port=node.port).info("replication")["role"] == "master":
            redis.Redis(port=node.port).execute_command("CLUSTER SETSLOT", slot, "NODE", node_id(target_port))


def test_every_key_of_an_installation_is_in_one_slot_of_the_cluster(api, general_with_requests_quota, redis_on_cluster):
    decisions = [route(api, category="general")["decision_id"] for _ in range(3)]
    assert [report(api, decision_id) for decision_id in decisions] == [201, 201, 201]
    counters.redis_counters().drain()

    assert isinstance(counters.redis_counters().client, redis.RedisCluster)
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
    keys = list(redis_on_cluster.scan_iter(match=f"{counters.redis_counters().prefix}*"))
    assert len(keys) > 5
    assert len({redis_on_cluster.keyslot(key) for key in keys}) == 1
    assert quotas_used(api)["requests-minute"] == 3
    assert [row["decision_id"] for row in api.get("/api/v1/decisions").json()["results"]] == decisions[::-1]


def test_the_counters_follow_their_slot_moved_to_another_primary(api, general_with_requests_quota, redis_on_cluster, cluster_servers):
    before = [route(api, category="general") for _ in range(3)]
    slot = redis_on_cluster.keyslot(counters.redis_counters().ready_key)
    source = cluster_servers.primary_of_slot(slot)
    target = next(node for node in cluster_servers.nodes if node is not source
                  and redis.Redis(port=node.port).info("replication")["role"] == "master")

    move_slot(cluster_servers, slot, target.port)
    after = [route(api, category="general") for _ in range(3)]

    assert all(answer["outcome"] == "primary" for answer in [*before, *after])
    assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
    assert quotas_used(api)["requests-minute"] == 6
    assert cluster_servers.primary_of_slot(slot) is target
    assert report(api, after[-1]["decision_id"]) == 201


def test_the_counters_follow_a_replica_promoted_in_place_of_a_primary_killed(api, general_with_requests_quota, tmp_path, settings, monkeypatch):
    cluster = ClusterServers(tmp_path).start()
    try:
        settings.REDIS_URL = cluster.url
        clock = [0.0]
        monkeypatch.setattr(counters.outage, "clock", lambda: clock[0])
        before = [route(api, category="general") for _ in range(3)]
        slot = redis.RedisCluster.from_url(cluster.url).keyslot(counters.redis_counters().ready_key)
        primary = cluster.primary_of_slot(slot)
        assert redis.Redis(port=primary.port).wait(1, 5000) == 1  # its replica holds everything

        primary.kill()
        survivors = [node for node in cluster.nodes if node is not primary]
        wait_until(lambda: cluster.primary_of_slot(slot, asking=survivors) not in (None, primary), 60, "the cluster to promote the replica")
        # As with Sentinel: the first call may meet the dead primary and count on the database, where the window
        # holding the loss reads as full: a refusal, never an overshoot.
        during = post(api, "/api/v1/route", category="general")
        clock[0] += counters.RETRY_SECONDS + 1
        after = [route(api, category="general") for _ in range(3)]

        assert all(answer["outcome"] == "primary" for answer in [*before, *after])
        assert during.status_code in (200, 429)
        assert api.get("/api/v1/health").json()["redis"]["counters"] == "redis"
        assert quotas_used(api)["requests-minute"] == 6 + (during.status_code == 200)
    finally:
        cluster.kill()


def test_with_min_replicas_a_decision_is_answered_once_the_replica_of_its_slot_holds_it(api, general_with_requests_quota, redis_on_cluster, settings):
    settings.REDIS_MIN_REPLICAS = 1

    answer = route(api, category="general")

    assert answer["outcome"] == "primary"
    assert report(api, answer["decision_id"]) == 201
    assert quotas_used(api)["requests-minute"] == 1


def test_the_user_and_password_in_the_url_reach_every_node_of_the_cluster(api, general_with_requests_quota, redis_on_cluster, cluster_servers,
                                                                           settings):
    password = "a-password-of-this-test"
    for node in cluster_servers.nodes:  # an ACL user who may do only what the counters do, on every node
        redis.Redis(port=node.port).acl_setuser("counters", enabled=True, passwords=[f"+{password}"], keys=["switchboard-test-*"],
                                                  channels=["*"], commands=["+@all", "-@dangerous", "+info", "+cluster"])
    settings.REDIS_URL = f"redis://counters:{password}@127.0.0.1:{cluster_servers.nodes[0].port}/0"

    answers = [route(api, category="general") for _ in range(2)]

    assert all(answer["outcome"] == "primary" for answer in answers)
    assert report(api, answers[0]["decision_id"]) == 201
    assert quotas_used(api)["requests-minute"] == 2
    assert counters.redis_counters().client.get_connection_kwargs()["username"] == "counters"
