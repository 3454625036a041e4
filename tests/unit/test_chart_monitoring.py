"""What the chart gives Prometheus and Grafana, when asked: a PodMonitor that scrapes the
pods the operator builds, and a dashboard whose every query names a metric, and labels,
that kubeinfer exports."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from kubeinfer.cli import main
from shipping import CHART, REPO, named, of_kind, render, template

DASHBOARD = CHART / "dashboards" / "kubeinfer.json"


def exported_metrics() -> dict[str, set[str]]:
    """Every metric family kubeinfer's processes export, with its label names."""
    import model_server.api.metrics as api
    import model_server.backends.local.batching as batching
    import model_server.backends.providers.metrics as providers
    import model_server.backends.scale_to_zero as scale_to_zero
    import model_server.gateway.waking as waking
    import kubeinfer_operator.metrics as operator
    from prometheus_client.metrics import MetricWrapperBase

    families: dict[str, set[str]] = {}
    for module in (api, batching, providers, scale_to_zero, waking, operator):
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                name = metric._name + ("_total" if metric._type == "counter" else "")
                families[name] = set(metric._labelnames)
                if metric._type == "histogram":
                    for suffix in ("_bucket", "_sum", "_count"):
                        families[metric._name + suffix] = set(metric._labelnames) | ({"le"} if suffix == "_bucket"
                                                                                     else set())
    return families


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


# Labels Prometheus adds to every scraped series, whatever the metric.
TARGET_LABELS = {"namespace", "job", "pod", "instance", "container", "service", "endpoint"}


def test_the_dashboard_queries_only_metrics_and_labels_kubeinfer_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    metrics = exported_metrics()
    used = set()
    for expr in queries(dashboard):
        for name, selector in re.findall(r"\b(kubeinfer_[a-z_]+)(\{[^}]*\})?", expr):
            assert name in metrics, f"{name} is not exported: {expr}"
            used.add(name)
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", selector or ""))
            assert labels <= metrics[name] | TARGET_LABELS, f"{name} has no label {labels - metrics[name]}"
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            names = set(re.findall(r"\b(kubeinfer_[a-z_]+)", expr))
            for label in (g.strip() for g in grouping.split(",")):
                assert any(label in metrics[n] | TARGET_LABELS for n in names), f"no metric has {label}: {expr}"
    # Requests, latency, batches and providers are all shown.
    for family in ("kubeinfer_inference_requests_total", "kubeinfer_inference_request_duration_seconds_bucket",
                   "kubeinfer_batch_size_sum", "kubeinfer_provider_calls_total",
                   "kubeinfer_provider_call_duration_seconds_bucket", "kubeinfer_requests_in_flight"):
        assert family in used, family


def test_the_dashboard_reads_its_prometheus_from_a_variable_and_its_panels_do_not_overlap():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "kubeinfer"
    assert dashboard["templating"]["list"][0] == {**dashboard["templating"]["list"][0], "name": "datasource",
                                                  "type": "datasource", "query": "prometheus"}
    cells = set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_the_dashboard_is_a_configmap_for_grafanas_sidecar_only_when_asked():
    assert not [c for c in of_kind(render(), "ConfigMap") if c["metadata"]["name"] == "kubeinfer-dashboard"]
    objs = render({"grafanaDashboard.enabled": True, "grafanaDashboard.namespace": "monitoring",
                   "grafanaDashboard.annotations": {"grafana_folder": "kubeinfer"}})
    configmap = named(objs, "ConfigMap", "kubeinfer-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "kubeinfer"
    assert json.loads(configmap["data"]["kubeinfer.json"]) == json.loads(DASHBOARD.read_text())


def test_the_pod_monitor_scrapes_the_pods_the_operator_builds(tmp_path, capsys):
    assert not of_kind(render(), "PodMonitor")
    monitor = named(render({"podMonitor.enabled": True}), "PodMonitor", "kubeinfer-endpoints")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    for example in ("examples/local/all-minilm-l6-v2.yaml", "examples/openai/text_embedding.yaml"):
        assert main(["render", str(REPO / example)]) == 0
        objs = list(yaml.safe_load_all(capsys.readouterr().out))
        [deployment] = of_kind(objs, "Deployment")
        pod = deployment["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items(), example
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert endpoint["port"] in ports, example
    # The chart's own pods are the ServiceMonitor's, never the PodMonitor's as well.
    for deployment in of_kind(render(), "Deployment"):
        assert not selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_pod_monitor_looks_only_in_the_watched_namespaces():
    monitor = named(render({"podMonitor.enabled": True, "watchNamespaces": ["search", "ml"],
                            "gateway.endpointNamespace": "search"}), "PodMonitor", "kubeinfer-endpoints")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["search", "ml"]}


@pytest.mark.parametrize("key, value, path", [
    ("podMonitor.enabled", "yes", "/podMonitor/enabled"),
    ("grafanaDashboard.labels", {"team": 1}, "/grafanaDashboard/labels/team"),
    ("grafanaDashboard.namespace", "Not A Namespace", "/grafanaDashboard/namespace"),
])
def test_values_schema_checks_the_monitoring_values(key, value, path):
    proc = template({key: value}, check=False)
    assert proc.returncode != 0 and path in proc.stderr, proc.stderr
