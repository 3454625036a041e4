"""The plain manifests in deploy/: `kubectl kustomize deploy/` gives the chart's default
render, object for object, and every object is valid for Kubernetes."""

from __future__ import annotations

import kubernetes_validate

from shipping import CHART, DEPLOY, NAMESPACE, kubernetes_versions, kustomize, named, normalised, pod_specs, render


def test_kustomize_renders_the_charts_default_objects():
    from_kustomize = normalised(kustomize(DEPLOY))
    from_chart = normalised(render(include_crds=True))
    namespace = from_kustomize.pop(("Namespace", "", NAMESPACE))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert sorted(from_kustomize) == sorted(from_chart)
    for key, obj in from_chart.items():
        assert from_kustomize[key] == obj, f"{key} differs between deploy/ and the chart"


def test_kustomize_says_kustomize_applied_it():
    for obj in kustomize(DEPLOY):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"


def test_deploy_crds_are_the_charts():
    for crd in (CHART / "crds").glob("*.yaml"):
        assert (DEPLOY / "crds" / crd.name).read_text() == crd.read_text(), crd.name


def test_every_kustomized_object_is_valid_for_kubernetes():
    objs = kustomize(DEPLOY)
    for obj in objs:
        for version in kubernetes_versions(obj["kind"]):
            kubernetes_validate.validate(obj, version, strict=True)
    # The restricted Pod Security Standard the namespace enforces admits these pods.
    for workload, spec in pod_specs(objs):
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", workload
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, workload
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], workload
    assert named(objs, "Deployment", "kubeinfer-operator")["metadata"]["namespace"] == NAMESPACE
