"""Django's development server in the checkout `make run` set up: `manage.py runserver`, started from a new
terminal with nothing exported, serves the API and the admin over plain HTTP as `make run` does (the `.env`
that `make run` wrote holds the settings of a development checkout), not redirects to HTTPS."""

import signal

from tests.e2e.processes import Http, Service, env_i, free_port, wait_for_url

ROUTE = {"category": "general", "complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}


def test_runserver_in_the_make_run_checkout_serves_plain_http(quick_start):
    port = free_port()
    script = f"exec .venv/bin/python manage.py runserver --noreload 127.0.0.1:{port}"
    server = Service("runserver", env_i(quick_start.env(), script), quick_start.root, quick_start.logs / "runserver.log")
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(base_url, "/api/v1/health", 60, alive=server.check_alive)
        key = quick_start.key("route,usage,read")

        routed = Http(base_url, bearer=key).request("POST", "/api/v1/route", json_body=ROUTE)
        login = Http(base_url).get("/admin/login/")
    finally:
        server.popen.send_signal(signal.SIGTERM)
        server.popen.wait(timeout=15)
        server.kill_leftovers()

    assert routed.status == 200, (routed, server.tail())
    assert routed.json()["outcome"] == "primary"
    assert login.status == 200, login
