"""monitoring/: the Prometheus rules pass promtool, and every metric the rules and the Grafana dashboard query is
served by /metrics of a running Switchboard (each way the docs run it) once it has answered some traffic."""

import json
import re
import shutil
import subprocess
from pathlib import Path

from django.conf import settings

from tests.conftest import _required_in_ci
from tests.e2e.processes import Deployment, route

MONITORING = Path(settings.BASE_DIR) / "monitoring"
RULES = MONITORING / "prometheus-rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC = re.compile(r"\bswitchboard_[a-z_]+\b")
# The series a histogram or counter family is exposed as, besides its own name.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("", "_created"), "gauge": ("",)}


def queried_metrics() -> set[str]:
    expressions = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    return set(METRIC.findall(RULES.read_text())) | {name for expr in expressions for name in METRIC.findall(expr)}


def served_metrics(text: str) -> set[str]:
    served = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        served |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return served


def test_the_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        _required_in_ci("promtool (apt-get install prometheus)")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_and_the_dashboard_query_is_served(deployment: Deployment):
    key = deployment.key("route,usage,read")
    chosen = route(deployment, key)
    assert chosen.status == 200, chosen
    primary = chosen.json()["model"]["key"]
    assert route(deployment, key, {"category": "general", "complexity": "medium", "exclude": [primary]}).status == 200
    assert route(deployment, key, {"category": "no-such-category"}).status == 400
    report = deployment.http(key).post("/api/v1/usage", json_body={"decision_id": chosen.json()["decision_id"], "input_tokens": 10,
                                                                   "output_tokens": 5})
    assert report.status == 201, report

    scrape = deployment.http().get("/metrics")

    assert scrape.status == 200, scrape
    missing = queried_metrics() - served_metrics(scrape.text)
    assert not missing, f"queried by monitoring/ but not served by /metrics: {sorted(missing)}"
