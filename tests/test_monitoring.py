"""docker/monitoring: the provisioned Grafana dashboard plots only metrics a real scrape exports,
and Prometheus scrapes the port and path the compose file serves them on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from swaprtc.embedded.engine import EmbeddedEngine
from swaprtc.models.store import ModelStore
from swaprtc.rtc.app import create_app
from swaprtc.settings import Settings

from tests.rtc_client import serve_in_process

DOCKER = Path(__file__).resolve().parent.parent / "docker"
MONITORING = DOCKER / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "swaprtc.json"
PROMQL_FUNCTIONS = {"rate", "increase", "sum", "max", "histogram_quantile", "by"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


@pytest.fixture(scope="module")
def embedded(model_store: ModelStore, face_landmark_path: Path) -> EmbeddedEngine:
    return EmbeddedEngine.from_store(model_store, Settings())


async def test_every_dashboard_metric_is_exported_by_a_real_scrape(embedded: EmbeddedEngine) -> None:
    queries = dashboard_queries()
    used = {name for q in queries for name in re.findall(r"\b(swaprtc_[a-z0-9_]+)\b", q)}
    assert len(used) >= 15, used  # frames, stages, latency, sessions, workers, ends, http, uploads, models
    app = create_app(Settings(), embedded)
    async with serve_in_process(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/session") as resp:
            assert resp.status == 201
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    exported = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert used <= exported, sorted(used - exported)
    # Every label a query groups by is a label of that metric.
    labels = {
        s.name: set(s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels
    }
    for query in queries:
        for grouping in re.findall(r"by \(([^)]*)\)", query):
            names = re.findall(r"\b(swaprtc_[a-z0-9_]+)\b", query)
            for label in (g.strip() for g in grouping.split(",")):
                assert any(label in labels.get(n, set()) for n in names), (query, label)


def test_panels_and_provisioning_fit_together() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = (MONITORING / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    uid = re.search(r"uid:\s*(\S+)", datasource)
    assert uid is not None
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid.group(1), panel["title"]
        assert panel["targets"], panel["title"]
    provider = (MONITORING / "grafana/provisioning/dashboards/swaprtc.yaml").read_text()
    compose = (DOCKER / "compose.yaml").read_text()
    dashboards_dir = re.search(r"path:\s*(\S+)", provider)
    assert dashboards_dir is not None
    assert f"./monitoring/grafana/dashboards:{dashboards_dir.group(1)}:ro" in compose
    assert "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose
    # Prometheus scrapes /metrics on the port the swaprtc service listens on.
    prometheus = (MONITORING / "prometheus.yml").read_text()
    port = re.search(r'SWAPRTC_PORT:\s*"(\d+)"', compose)
    assert port is not None
    assert "metrics_path: /metrics" in prometheus
    assert f'"127.0.0.1:{port.group(1)}"' in prometheus
    assert compose.count("profiles: [monitoring]") == 2  # optional: prometheus and grafana only
