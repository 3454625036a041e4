"""The catalog's region facts: each service that names a cloud region names it with a
real setting, and every known region lies in one of Elasticsearch's geographies."""

from __future__ import annotations

from kubeinfer.catalog import SERVICES
from kubeinfer.catalog.regions import CSPS, GEOS, REGION_GEOS, geo_of


def test_regional_services_name_their_region_with_a_real_setting():
    regional = {name: spec.region for name, spec in SERVICES.items() if spec.region is not None}
    assert {name: (fact.csp, fact.setting) for name, fact in regional.items()} == {
        "amazonbedrock": ("aws", "region"), "amazon_sagemaker": ("aws", "region"),
        "googlevertexai": ("gcp", "location")}
    for name, fact in regional.items():
        models = set(SERVICES[name].service_settings.values())
        named = [m for m in models if fact.setting in m.model_fields]
        assert named, name
        # Where a task's settings lack the setting or leave it unset, the service's default region applies.
        for model in models:
            field = model.model_fields.get(fact.setting)
            if field is None or not field.is_required():
                assert fact.unset is not None, (name, model.__name__)


def test_every_region_lies_in_a_known_geography():
    assert set(REGION_GEOS) == set(CSPS) == {"aws", "gcp", "azure"}
    assert {geo for table in REGION_GEOS.values() for geo in table.values()} == set(GEOS)
    assert geo_of("aws", "eu-west-2") == "eu" and geo_of("gcp", "europe-west2") == "eu"
    assert geo_of("aws", "ap-southeast-2") == geo_of("gcp", "australia-southeast1") == "apac"
    assert geo_of("gcp", "global") is None and geo_of("aws", "mars-1") is None
