"""deploy/grafana and deploy/prometheus, offline: the dashboards are well formed, every
metric they query is one the services export, every query parses (promtool), and the
Prometheus configurations load. tests/test_deploy_prometheus.py runs the queries for real.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from stack.process_group import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS = ROOT / "deploy" / "prometheus"
# The modules that define the services' metrics (importing one registers its metrics).
METRIC_MODULES = (
    "services.common.metrics",
    "services.edge.metrics",
    "services.stt.service",
    "services.turns.metrics",
    "services.llm.replies",
    "services.tts.speaker",
)


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(GRAFANA.glob("*.json"))]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold theirs
    return [p for p in found if p["type"] != "row"]


def queries(rate_interval: str = "1m") -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, PromQL as Prometheus receives it) of every target,
    with Grafana's variables replaced as Grafana would."""
    variables = {"$__rate_interval": rate_interval, "$__interval": "15s", "$__range": "1h"}
    found = []
    for dashboard in dashboards():
        for panel in panels(dashboard):
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in variables.items():
                    expr = expr.replace(variable, value)
                found.append((dashboard["title"], panel["title"], expr))
    return found


def exported_metric_names() -> set[str]:
    """The series names the services export, as Prometheus stores them."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("voice_agent_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: Debian `prometheus` (scripts/install-system.sh) installs it")
    return found


def test_dashboards_are_grafana_dashboards_with_queries() -> None:
    found = dashboards()
    assert {d["uid"] for d in found} == {"voice-agent-latency", "voice-agent-overview"}
    for dashboard in found:
        assert dashboard["schemaVersion"] >= 36 and dashboard["title"]
        (variable,) = dashboard["templating"]["list"]
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in panels(dashboard):
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_latency_dashboard_has_p50_p90_p99_of_each_step() -> None:
    latency = next(d for d in dashboards() if d["uid"] == "voice-agent-latency")
    steps = {
        "voice_agent_voice_to_voice_seconds",
        "voice_agent_end_of_turn_seconds",
        "voice_agent_stt_final_latency_seconds",
        "voice_agent_llm_first_token_seconds",
        "voice_agent_tts_first_audio_seconds",
        "voice_agent_bus_hop_seconds",
    }
    for step in steps:
        exprs = [t["expr"] for p in panels(latency) for t in p["targets"] if f"{step}_bucket" in t["expr"]]
        for quantile in ("0.5", "0.9", "0.99"):
            assert any(e.startswith(f"histogram_quantile({quantile},") for e in exprs), (step, quantile)


def test_overview_dashboard_shows_sessions_errors_and_queue_depth() -> None:
    overview = next(d for d in dashboards() if d["uid"] == "voice-agent-overview")
    exprs = [t["expr"] for p in panels(overview) for t in p["targets"]]
    for metric in (
        "voice_agent_active_sessions",
        "voice_agent_engine_errors_total",
        "voice_agent_queue_depth",
    ):
        assert any(metric in e for e in exprs), metric
    # both kinds of queue: the engines' own and the bus subscriptions'
    assert any('queue!~"bus:.*"' in e for e in exprs) and any('queue=~"bus:.*"' in e for e in exprs)


def test_every_queried_metric_is_exported_by_a_service() -> None:
    exported = exported_metric_names()
    assert "voice_agent_llm_first_token_seconds_bucket" in exported  # the modules were found
    for dashboard, panel, expr in queries():
        for name in re.findall(r"\bvoice_agent_\w+", expr):
            assert name in exported, f"{dashboard} / {panel}: {name} is not exported by any service"


def test_every_query_parses(tmp_path: Path) -> None:
    # promtool checks PromQL offline only inside rule files: one recording rule per query.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(queries())]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_local_prometheus_config_scrapes_the_five_services() -> None:
    path = PROMETHEUS / "prometheus.yml"
    result = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    targets = {
        group["labels"]["component"]: group["targets"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }
    assert targets == {s: [f"127.0.0.1:{p}"] for s, p in DEFAULT_PORTS.items()}


def test_kubernetes_scrape_config_reads_the_pod_annotations() -> None:
    # Debian's Prometheus is built without Kubernetes discovery, so promtool cannot load
    # this one; check its address rewrite the way Prometheus applies it (anchored RE2).
    config = yaml.safe_load((PROMETHEUS / "prometheus-kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    relabel = {r["target_label"]: r for r in job["relabel_configs"] if "target_label" in r}
    address = relabel["__address__"]
    assert address["source_labels"][1] == "__meta_kubernetes_pod_annotation_prometheus_io_port"
    rewrite = re.compile(address["regex"])
    for discovered in ("10.1.2.3:8080", "10.1.2.3"):
        match = rewrite.fullmatch(f"{discovered};8093")
        assert match is not None
        assert match.expand(address["replacement"].replace("$", "\\")) == "10.1.2.3:8093"
    keep = job["relabel_configs"][0]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert keep["action"] == "keep" and keep["regex"] == "true"
