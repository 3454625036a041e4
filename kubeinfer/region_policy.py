"""Elasticsearch's inference region policy: which cloud regions inference may reach.

A policy allows either geographies (``allowed_geos``: ``us``, ``eu``...) or regions of
cloud service providers (``allowed_regions``: ``{csp, region}``), never both, as
Elasticsearch's ``PUT /_inference/_region_policy`` takes it. An endpoint whose service
names a cloud region (the catalog's ``RegionSetting``: Bedrock's and SageMaker's
``region``, Vertex AI's ``location``) is allowed when that region is; an endpoint of any
other service names no region and is always allowed. ``RegionPolicyDocument`` is the
stored policy with who set it and when, as GET answers it.

The same policy is read from chart values (``regionPolicy``) and from a policy file
(``kubeinfer validate --region-policy``), in camelCase there, as Helm values are.

This module knows nothing of HTTP, kopf or the Kubernetes API.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .catalog import SERVICES, InferenceEndpointConfig
from .catalog.regions import ANYWHERE, CSPS, GEOGRAPHY, GEOS, Reach, geo_of, regions_in
from .errors import ElasticsearchError, status_exception

# The key of the policy in the Helm chart's values.
VALUES_KEY = "regionPolicy"
# The node label that names the cloud region a node runs in.
REGION_LABEL = "topology.kubernetes.io/region"


class CspRegion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    csp: str = Field(min_length=1, description="The cloud service provider: aws, gcp or azure.")
    region: str = Field(min_length=1, description="The region of the provider, e.g. us-east-1.")


class RegionPolicy(BaseModel):
    """Elasticsearch's ``region_policy``: exactly one of its two lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_geos: tuple[str, ...] | None = None
    allowed_regions: tuple[CspRegion, ...] | None = None

    def allows(self, csp: str, region: str) -> bool:
        if self.allowed_regions is not None:
            return CspRegion(csp=csp, region=region) in self.allowed_regions
        return geo_of(csp, region) in (self.allowed_geos or ())

    def allows_reach(self, reach: Reach) -> bool:
        """Whether every region ``reach`` may be served from is allowed: a profile spread
        over a geography needs the whole geography allowed; one spread anywhere, never."""
        if reach.spread == ANYWHERE:
            return False
        if reach.spread == GEOGRAPHY:
            return self.allowed_geos is not None and self.allows(reach.csp, reach.region)
        return self.allows(reach.csp, reach.region)

    def described(self) -> str:
        if self.allowed_regions is not None:
            return "allowed regions [" + ", ".join(f"{r.csp}:{r.region}" for r in self.allowed_regions) + "]"
        return "allowed geos [" + ", ".join(self.allowed_geos or ()) + "]"

    def node_regions(self) -> list[str]:
        """The region names nodes may carry (``topology.kubernetes.io/region``) to run
        inside the policy, whatever their cloud."""
        if self.allowed_regions is not None:
            return sorted({r.region for r in self.allowed_regions})
        return sorted({region for _, region in regions_in(list(self.allowed_geos or ()))})

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class RegionPolicyDocument(BaseModel):
    """The stored policy, as ``GET /_inference/_region_policy`` answers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region_policy: RegionPolicy
    created_at: str
    created_by: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def replaced_by(self, policy: RegionPolicy, user: str | None, now: str | None = None) -> "RegionPolicyDocument":
        """This document after a new PUT: created stays, updated moves on."""
        return RegionPolicyDocument(region_policy=policy, created_at=self.created_at, created_by=self.created_by,
                                    updated_at=now or timestamp(), updated_by=user)


def timestamp() -> str:
    """Now, as Elasticsearch writes dates: ISO 8601 in UTC with milliseconds."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def new_document(policy: RegionPolicy, user: str | None) -> RegionPolicyDocument:
    return RegionPolicyDocument(region_policy=policy, created_at=timestamp(), created_by=user)


def parse_region_policy(document: Any) -> RegionPolicy:
    """A ``region_policy`` object, checked as Elasticsearch checks it; its errors otherwise."""
    if not isinstance(document, Mapping):
        raise ElasticsearchError(400, "parse_exception", "[region_policy] must be an object")
    unknown = sorted(set(document) - {"allowed_geos", "allowed_regions"})
    if unknown:
        raise ElasticsearchError(400, "x_content_parse_exception",
                                 f"[region_policy] unknown field [{unknown[0]}]")
    given = [name for name in ("allowed_geos", "allowed_regions") if document.get(name) is not None]
    if len(given) != 1:
        raise status_exception("[region_policy] must contain exactly one of [allowed_geos] or [allowed_regions]")
    try:
        policy = RegionPolicy.model_validate(document)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise ElasticsearchError(400, "x_content_parse_exception",
                                 f"[region_policy] failed to parse field [{where}]: {err['msg']}") from None
    if policy.allowed_geos is not None:
        if not policy.allowed_geos:
            raise status_exception("[allowed_geos] must not be empty")
        unknown_geos = [g for g in policy.allowed_geos if g not in GEOS]
        if unknown_geos:
            raise status_exception(f"Unknown geo [{unknown_geos[0]}]; known geos are [{', '.join(GEOS)}]")
    else:
        if not policy.allowed_regions:
            raise status_exception("[allowed_regions] must not be empty")
        unknown_csps = [r.csp for r in policy.allowed_regions if r.csp not in CSPS]
        if unknown_csps:
            raise status_exception(f"Unknown cloud service provider [{unknown_csps[0]}]; known providers are "
                                   f"[{', '.join(CSPS)}]")
    return policy


def parse_put_body(body: Any) -> RegionPolicy:
    """The body of ``PUT /_inference/_region_policy``."""
    if not isinstance(body, Mapping):
        raise ElasticsearchError(400, "parse_exception", "request body is required")
    unknown = sorted(set(body) - {"region_policy"})
    if unknown:
        raise ElasticsearchError(400, "x_content_parse_exception", f"unknown field [{unknown[0]}]")
    if "region_policy" not in body:
        raise ElasticsearchError(400, "parse_exception", "Required [region_policy]")
    return parse_region_policy(body["region_policy"])


def endpoint_reach(config: InferenceEndpointConfig) -> Reach | None:
    """Where ``config``'s requests may be served; None for a service that names no region."""
    spec = SERVICES.get(config.service)
    fact = spec.region if spec is not None else None
    return fact.reach(config.service_settings) if fact is not None else None


def region_refusal(config: InferenceEndpointConfig, policy: RegionPolicy | None) -> str | None:
    """Why ``policy`` does not allow ``config``; None when it does."""
    if policy is None:
        return None
    reach = endpoint_reach(config)
    if reach is None or policy.allows_reach(reach):
        return None
    where = f"region [{reach.region}] of [{reach.csp}],"
    if reach.spread == ANYWHERE:
        where = where[:-1] + f" with the cross-region profile [{reach.profile}], served from any region,"
    elif reach.spread == GEOGRAPHY:
        where = (where[:-1] + f" with the cross-region profile [{reach.profile}], served from any region of "
                 f"its geography,")
    return (f"inference endpoint [{config.inference_id}] uses {where} which the inference region policy does not "
            f"allow ({policy.described()})")


def region_not_allowed(reason: str) -> ElasticsearchError:
    """The error a refused create, update or inference answers."""
    return status_exception(reason[0].upper() + reason[1:], 403)


def check_endpoint(config: InferenceEndpointConfig, policy: RegionPolicy | None) -> None:
    """Raise Elasticsearch's error when ``policy`` does not allow ``config``."""
    reason = region_refusal(config, policy)
    if reason is not None:
        raise region_not_allowed(reason)


def from_values(document: Any, source: str = "region policy") -> RegionPolicy | None:
    """The policy in chart values or a policy file: ``regionPolicy`` (or the document
    itself) with ``allowedGeos`` or ``allowedRegions``; None when it sets neither."""
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise RegionPolicyError(f"{source}: a region policy is a mapping")
    if VALUES_KEY in document:
        document = document[VALUES_KEY] or {}
        if not isinstance(document, Mapping):
            raise RegionPolicyError(f"{source}: {VALUES_KEY} is a mapping")
    body = {snake: document.get(camel, document.get(snake))
            for camel, snake in (("allowedGeos", "allowed_geos"), ("allowedRegions", "allowed_regions"))}
    if not body["allowed_geos"] and not body["allowed_regions"]:
        return None
    try:
        return parse_region_policy({k: v for k, v in body.items() if v})
    except ElasticsearchError as exc:
        raise RegionPolicyError(f"{source}: {exc.reason}") from None


class RegionPolicyError(ValueError):
    """A region policy file that cannot be read or is not a valid policy."""


def _read(path: str | Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionPolicyError(f"{path}: cannot be read: {exc.__class__.__name__}") from None
    except yaml.YAMLError as exc:
        raise RegionPolicyError(f"{path}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None


def load_node_placement(path: str | Path) -> bool | None:
    """``regionPolicy.nodePlacement`` of a values file; None when it does not say."""
    document = _read(path)
    section = document.get(VALUES_KEY) if isinstance(document, Mapping) else None
    value = section.get("nodePlacement") if isinstance(section, Mapping) else None
    return value if isinstance(value, bool) else None


def load_region_policy(path: str | Path) -> RegionPolicy | None:
    """The policy in a YAML or JSON file: chart values, the ``region_policy`` body of a
    PUT, or the policy itself; None when it sets none."""
    document = _read(path)
    if isinstance(document, Mapping) and "region_policy" in document:
        try:
            return parse_put_body(document)
        except ElasticsearchError as exc:
            raise RegionPolicyError(f"{path}: {exc.reason}") from None
    return from_values(document, str(path))
