"""GET /api/v1/health: the probe, without authentication, names what each deployment runs on."""


def test_health_is_ok_and_names_what_it_runs_on(deployment):
    answer = deployment.health()

    assert answer.status == 200, answer
    body = answer.json()
    assert body["status"] == "ok", body
    assert body["database"] == {"ok": True, "vendor": deployment.database}
    if deployment.redis:
        assert body["redis"]["ok"] is True and body["redis"]["counters"] == "redis", body
        assert body["broker"] == {"ok": True, "transport": "redis"}
    else:
        assert body["redis"] == {"configured": False, "ok": None, "counters": "database"}
        assert body["broker"] == {"ok": True, "transport": "filesystem"}
    assert body["availability_refresh"] is not None
