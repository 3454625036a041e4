"""checkov's Kubernetes policies on the chart: no finding is left failing, and every one
the chart skips carries its reason in a `checkov.io/skip` annotation."""

from __future__ import annotations

import json

import pytest

from shipping import CHART, REPO, run, template, tool

# Set-ups beyond the defaults (which `--framework helm` renders) with objects of their own.
VARIATIONS = {
    "one-namespace-peering": {"watchNamespaces": ["search"], "gateway.endpointNamespace": "search",
                              "operator.replicas": 2},
    "cluster-peering": {"operator.replicas": 2},
    "monitored": {"serviceMonitor.enabled": True, "networkPolicy.enabled": True, "podMonitor.enabled": True,
                  "grafanaDashboard.enabled": True},
    "gateway-off-gpu-off": {"gateway.enabled": False, "endpoints.gpu.perEndpoint": 0},
}


def checkov(*args: str) -> list[dict]:
    # --skip-download: no policy metadata from the vendor's API (the tests run offline).
    proc = run([tool("checkov"), *args, "--skip-download", "--output", "json", "--quiet", "--compact"],
               check=False, env={"PATH": f"{tool('helm').rsplit('/', 1)[0]}:/usr/bin:/bin",
                                 "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    reports = json.loads(proc.stdout)
    return reports if isinstance(reports, list) else [reports]


def failures(reports: list[dict]) -> list[str]:
    return [f"{c['check_id']} {c['check_name']}: {c['resource']}"
            for r in reports for c in r["results"].get("failed_checks", [])]


def skips(reports: list[dict]) -> list[dict]:
    return [c for r in reports for c in r["results"].get("skipped_checks", [])]


@pytest.fixture(scope="module")
def chart_report() -> list[dict]:
    # Not --quiet here: the skipped checks are wanted too.
    proc = run([tool("checkov"), "--directory", str(CHART), "--framework", "helm", "--skip-download",
                "--output", "json", "--compact"], check=False,
               env={"PATH": f"{tool('helm').rsplit('/', 1)[0]}:/usr/bin:/bin", "BC_SKIP_MAPPING": "TRUE"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    reports = json.loads(proc.stdout)
    return reports if isinstance(reports, list) else [reports]


def test_checkov_finds_nothing_unexplained_in_the_chart(chart_report):
    assert chart_report[0]["check_type"] == "helm"
    summary = chart_report[0]["summary"]
    assert summary["resource_count"] > 10 and summary["passed"] > 100
    assert failures(chart_report) == []


def test_every_skipped_check_says_why(chart_report):
    skipped = skips(chart_report)
    assert skipped, "the chart skips checks on purpose; checkov should report them"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']}: {reason!r}"


def test_the_pod_hardening_checks_pass_rather_than_being_skipped(chart_report):
    passed = {c["check_id"] for r in chart_report for c in r["results"]["passed_checks"]}
    # non-root, read-only root fs, no privilege escalation, capabilities, seccomp,
    # requests and limits, probes.
    for check in ("CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_31",
                  "CKV_K8S_40", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13", "CKV_K8S_8",
                  "CKV_K8S_9"):
        assert check in passed, check
    assert not {c["check_id"] for c in skips(chart_report)} & {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23"}


def test_checkov_finds_nothing_unexplained_in_other_set_ups(tmp_path):
    for name, values in VARIATIONS.items():
        (tmp_path / f"{name}.yaml").write_text(template(values, namespace="kubeinfer").stdout)
    reports = checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    assert reports[0]["summary"]["resource_count"] > 20
    assert failures(reports) == []


def test_checkov_finds_nothing_unexplained_in_the_plain_manifests():
    reports = checkov("--directory", str(REPO / "deploy"), "--framework", "kubernetes")
    assert reports[0]["summary"]["passed"] > 100
    assert failures(reports) == []
