"""Which settings say where an endpoint's requests go: the catalog marks them, and both the
data plane's URL policy and the operator's rule on Secrets leaving for a custom URL read
that one mark, so a URL setting added to a service is held by both or by neither."""

from __future__ import annotations

import re

import pytest

from catalog_cases import MINIMAL, PLAIN_SECRET, es_body
from kubeinfer.catalog import SERVICES, parse_endpoint
from kubeinfer.errors import ElasticsearchError
from kubeinfer_operator.reconciler import custom_url_setting
from model_server.backends.url_policy import check_urls

# A name that suggests a URL, a host or an address.
URL_LIKE = re.compile(r"url|uri|host|endpoint|target|address|base")
# Settings whose names suggest one but that only name something at the provider's own URL.
NOT_WHERE_REQUESTS_GO = {
    "endpoint_name",  # a SageMaker endpoint, in AWS's own URL
    "endpoint_type",  # Azure AI Studio's kind of deployment: token or realtime
    "target_model",  # the model of a SageMaker multi-model endpoint, sent as a header
    "target_container_hostname",  # a container of a SageMaker endpoint, sent as a header
    "target_variant",  # a production variant of a SageMaker endpoint, sent as a header
}
METADATA_URL = "http://169.254.169.254/latest/meta-data"
# Settings a URL setting is given with: OAuth 2.0's token endpoint takes client credentials
# in place of an API key.
GIVEN_WITH = {"token_url": {"client_id": "kubeinfer", "client_secret": PLAIN_SECRET, "scopes": ["inference"]}}
INSTEAD_OF = {"token_url": ("api_key",)}
PROVIDERS = sorted((service, task) for service, task in MINIMAL if service not in ("elasticsearch", "elser"))
URL_SETTINGS = [(service, task, name) for service, task in PROVIDERS
                for name in SERVICES[service].service_settings_model(task).url_fields]


def test_every_setting_whose_name_says_url_or_host_is_marked_by_the_catalog():
    unmarked = sorted({
        (service, name)
        for service, spec in SERVICES.items() for model in spec.service_settings.values()
        for name in model.model_fields
        if URL_LIKE.search(name) and name not in NOT_WHERE_REQUESTS_GO and name not in model.url_fields
    })
    assert unmarked == []
    marked = {name for spec in SERVICES.values() for model in spec.service_settings.values()
              for name in model.url_fields}
    assert marked == {"url", "streaming_url", "target", "host", "token_url"}


@pytest.mark.parametrize(("service", "task", "name"), URL_SETTINGS)
def test_a_url_setting_is_held_by_the_url_policy_and_by_the_operator(service, task, name):
    body = es_body(service, task)
    for other in INSTEAD_OF.get(name, ()):
        body["service_settings"].pop(other, None)
    body["service_settings"].update(GIVEN_WITH.get(name, {}), **{name: METADATA_URL})
    config = parse_endpoint("ep", task, body)
    with pytest.raises(ElasticsearchError) as refused:
        check_urls(config)
    assert f"[service_settings] [{name}] points at a link-local or cloud metadata address" in refused.value.reason
    check_urls(config, allow_link_local=True)
    # A Secret of this endpoint would leave for a URL of its own: the operator asks its owner's consent.
    assert custom_url_setting(config) in SERVICES[service].service_settings_model(task).url_fields


@pytest.mark.parametrize("service", ["openai", "cohere", "mistral", "voyageai"])
def test_an_endpoint_with_no_url_setting_sends_secrets_to_its_provider_only(service):
    task = next(task for s, task in PROVIDERS if s == service)
    config = parse_endpoint("ep", task, es_body(service, task))
    assert custom_url_setting(config) is None
    body = es_body(service, task)
    body["service_settings"]["url"] = "https://proxy.example/v1"
    assert custom_url_setting(parse_endpoint("ep", task, body)) == "url"


def test_a_setting_that_only_names_something_at_the_provider_is_not_a_url():
    body = es_body("amazon_sagemaker", "text_embedding")
    body["service_settings"].update(endpoint_name="169.254.169.254", target_container_hostname="metadata")
    config = parse_endpoint("ep", "text_embedding", body)
    check_urls(config)
    assert custom_url_setting(config) is None
