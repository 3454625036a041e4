"""Status conditions as kstatus, Argo CD and Flux read them, from observed Deployments."""

import pytest

from kubeinfer_operator.status import (
    ModelReport, endpoint_status, invalid_spec, observe_deployment, observe_model, same_status, secret_not_found,
    transitions,
)

URL = "http://e5.ml.svc.cluster.local/_inference/text_embedding/e5"


def deployment(generation=1, replicas=2, **status):
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


def test_available_deployment_is_ready_and_not_progressing():
    obs = observe_deployment(deployment(observedGeneration=1, replicas=2, updatedReplicas=2, readyReplicas=2,
                                        availableReplicas=2), url=URL)
    st = endpoint_status({}, obs, 3, now="2026-01-01T00:00:00Z")
    ready, progressing = st["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Available")
    assert (progressing["type"], progressing["status"]) == ("Progressing", "False")
    assert st["observedGeneration"] == 3 and ready["observedGeneration"] == 3
    assert st["url"] == URL and st["readyReplicas"] == 2
    assert st["dimensions"] is None  # cleared unless the settings declare them


def test_a_new_deployment_is_progressing_and_not_ready():
    obs = observe_deployment(deployment(observedGeneration=1, replicas=2, updatedReplicas=0))
    assert not obs.ready and obs.progressing and obs.reason == "MinimumReplicasUnavailable"


def test_a_rollout_over_serving_pods_stays_ready_while_progressing():
    obs = observe_deployment(deployment(generation=2, observedGeneration=2, replicas=3, updatedReplicas=1,
                                        readyReplicas=2, availableReplicas=2,
                                        conditions=[{"type": "Available", "status": "True"}]))
    assert obs.ready and obs.progressing and obs.progressing_reason == "RollingOut"
    unseen = observe_deployment(deployment(generation=3, observedGeneration=2, replicas=2, updatedReplicas=2,
                                           availableReplicas=2))
    assert unseen.progressing
    below_minimum = observe_deployment(deployment(observedGeneration=1, replicas=3, updatedReplicas=3,
                                                  availableReplicas=1,
                                                  conditions=[{"type": "Available", "status": "False"}]))
    assert not below_minimum.ready


def test_a_stuck_rollout_reports_the_deadline():
    obs = observe_deployment(deployment(observedGeneration=1, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "pull failed"}]))
    assert not obs.ready and obs.reason == "ProgressDeadlineExceeded" and "pull failed" in obs.message
    assert obs.progressing is False


def test_last_transition_time_is_kept_until_the_status_flips():
    first = endpoint_status({}, invalid_spec("bad"), 1, now="2026-01-01T00:00:00Z")
    again = endpoint_status(first, secret_not_found(["s"]), 2, now="2026-01-02T00:00:00Z")
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again["conditions"][0]["reason"] == "SecretNotFound"
    ok = observe_deployment(deployment(observedGeneration=1, replicas=1, updatedReplicas=1, availableReplicas=1,
                                       readyReplicas=1))
    flipped = endpoint_status(again, ok, 2, now="2026-01-03T00:00:00Z")
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_transitions_name_changed_conditions_and_same_status_skips_writes():
    first = endpoint_status({}, invalid_spec("bad"), 1, now="t1")
    assert [c["reason"] for c in transitions({}, first)] == ["InvalidSpec"]
    repeat = endpoint_status(first, invalid_spec("bad"), 1, now="t2")
    assert transitions(first, repeat) == [] and same_status(first, repeat)
    assert first["url"] is None and "Progressing" not in [c["type"] for c in first["conditions"]]


def test_the_gateway_reads_the_status_the_operator_writes():
    from kubeinfer.resource import is_ready, refusal

    refused = {"metadata": {"generation": 3},
               "status": endpoint_status(None, invalid_spec("[model_id] is required"), 3)}
    assert refusal(refused) == "[model_id] is required" and not is_ready(refused)
    rolled_out = observe_deployment(deployment(replicas=1, observedGeneration=1, updatedReplicas=1, readyReplicas=1,
                                               availableReplicas=1), url=URL)
    ready = {"metadata": {"generation": 2}, "status": endpoint_status(None, rolled_out, 2)}
    assert is_ready(ready) and refusal(ready) is None
    # A status about an older generation does not speak for the current spec.
    assert not is_ready({**ready, "metadata": {"generation": 3}})
    assert refusal({**refused, "metadata": {"generation": 4}}) is None


@pytest.mark.parametrize("observation", [
    invalid_spec("bad"),
    secret_not_found(["openai"]),
    observe_deployment(None, url=URL),
    observe_deployment(deployment(replicas=0, observedGeneration=1), url=URL),
    observe_deployment(deployment(replicas=2, observedGeneration=1, updatedReplicas=1, availableReplicas=1,
                                  readyReplicas=1), url=URL),
])
def test_every_status_the_operator_writes_fits_the_crds_status_schema(observation):
    # The API server prunes what the CRD's schema (built from this model) does not name.
    from kubeinfer.resource import InferenceEndpointStatus

    status = endpoint_status(None, observation, 4)
    written = {key: value for key, value in status.items() if value is not None}
    assert InferenceEndpointStatus.model_validate(written).model_dump(by_alias=True, exclude_none=True) == written


AVAILABLE = deployment(observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1, availableReplicas=1)


def test_a_shared_model_servers_member_is_ready_once_its_own_model_is_loaded():
    pods_up = observe_deployment(AVAILABLE, url=URL)
    assert observe_model(pods_up, ModelReport(loaded=True)) == pods_up
    loading = observe_model(pods_up, None)
    assert (loading.ready, loading.reason, loading.message) == (False, "ModelLoading", "its model is loading")
    failed = observe_model(pods_up, ModelReport(loaded=False, failed=True, message="OSError: no such model"))
    assert (failed.ready, failed.reason) == (False, "ModelLoadFailed")
    assert failed.message == "its model failed to load: OSError: no such model"
    conditions = {c["type"]: c for c in endpoint_status(None, failed, 1)["conditions"]}
    assert conditions["Stalled"]["reason"] == "ModelLoadFailed"  # it will not load on its own
    assert "Stalled" not in {c["type"] for c in endpoint_status(None, loading, 1)["conditions"]}


def test_the_pools_deployment_speaks_first_when_it_is_not_up_or_scaled_to_zero():
    for deployment_says in (observe_deployment(None, url=URL),
                            observe_deployment(deployment(replicas=0, observedGeneration=1), url=URL)):
        assert observe_model(deployment_says, ModelReport(loaded=False, failed=True, message="x")) == deployment_says
