"""``kubeinfer validate --region-policy`` and ``kubeinfer render --region-policy``: the
inference region policy of a values file (or of a PUT body) checked offline, as the
gateway and the operator hold endpoints to it."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubeinfer.cli import main


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def bedrock(name: str, region: str) -> dict:
    ref = {"secretKeyRef": {"name": "aws", "key": "key"}}
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name},
            "spec": {"taskType": "completion", "service": "amazonbedrock", "serviceSettings": {
                "access_key": ref, "secret_key": ref, "region": region, "provider": "anthropic",
                "model": "anthropic.claude-3-haiku-20240307-v1:0"}}}


def e5(name: str) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {
                "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}}


def test_validate_reports_endpoints_outside_the_region_policy(tmp_path, capsys):
    values = write(tmp_path / "values.yaml", {"regionPolicy": {"allowedGeos": ["eu"]}})
    write(tmp_path / "ireland.yaml", bedrock("ireland", "eu-west-1"))
    ohio = write(tmp_path / "ohio.yaml", bedrock("ohio", "us-east-2"))
    write(tmp_path / "e5.yaml", e5("e5"))
    code = main(["validate", "--region-policy", str(values), str(tmp_path / "ireland.yaml"), str(ohio),
                 str(tmp_path / "e5.yaml")])
    assert code == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{ohio}: spec.serviceSettings.region: inference endpoint [ohio] uses region [us-east-2] of [aws], which "
        "the inference region policy does not allow (allowed geos [eu])"]
    # Without the option the same files pass: no policy is assumed.
    assert main(["validate", str(ohio)]) == 0


def test_validate_reads_the_body_of_a_put_and_refuses_an_invalid_policy(tmp_path, capsys):
    body = write(tmp_path / "policy.json", {"region_policy": {"allowed_regions": [
        {"csp": "aws", "region": "us-east-2"}]}})
    assert main(["validate", "--region-policy", str(body), str(write(tmp_path / "o.yaml",
                                                                      bedrock("ohio", "us-east-2")))]) == 0
    bad = write(tmp_path / "bad.yaml", {"regionPolicy": {"allowedGeos": ["mars"]}})
    assert main(["validate", "--region-policy", str(bad), str(tmp_path / "o.yaml")]) == 2
    assert "Unknown geo [mars]" in capsys.readouterr().err


def test_render_places_model_servers_and_refuses_endpoints_outside(tmp_path, capsys):
    values = write(tmp_path / "values.yaml", {"regionPolicy": {
        "allowedRegions": [{"csp": "gcp", "region": "europe-west4"}], "nodePlacement": True}})
    assert main(["render", "--region-policy", str(values), str(write(tmp_path / "e5.yaml", e5("e5")))]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    [deployment] = [o for o in objects if o and o["kind"] == "Deployment"]
    [term] = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["europe-west4"]}]}
    outside = write(tmp_path / "ireland.yaml", bedrock("ireland", "eu-west-1"))
    assert main(["render", "--region-policy", str(values), str(outside)]) == 1
    assert "uses region [eu-west-1] of [aws]" in capsys.readouterr().err


def test_bedrock_cross_region_profiles_need_their_whole_reach_allowed(tmp_path, capsys):
    def with_model(name: str, model: str) -> Path:
        manifest = bedrock(name, "us-east-1")
        manifest["spec"]["serviceSettings"]["model"] = model
        return write(tmp_path / f"{name}.yaml", manifest)

    geos = write(tmp_path / "geos.yaml", {"regionPolicy": {"allowedGeos": ["us"]}})
    one = write(tmp_path / "one.yaml", {"regionPolicy": {"allowedRegions": [{"csp": "aws", "region": "us-east-1"}]}})
    us = with_model("us-profile", "us.anthropic.claude-3-haiku-20240307-v1:0")
    anywhere = with_model("global-profile", "global.anthropic.claude-sonnet-4-5-20250929-v1:0")
    # A US profile stays in the US: allowed by the geography, not by one region of it.
    assert main(["validate", "--region-policy", str(geos), str(us)]) == 0
    assert main(["validate", "--region-policy", str(one), str(us)]) == 1
    assert "with the cross-region profile [us.anthropic.claude-3-haiku-20240307-v1:0], served from any region " \
           "of its geography, which the inference region policy does not allow" in capsys.readouterr().out
    # A global profile may be served anywhere: no policy allows it.
    assert main(["validate", "--region-policy", str(geos), str(anywhere)]) == 1
    assert "served from any region, which" in capsys.readouterr().out
