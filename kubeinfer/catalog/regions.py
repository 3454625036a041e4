"""Cloud regions as the inference region policy reads them: which geography each region
of each cloud service provider (CSP) lies in, and which setting of a service names the
region its requests go to.

A region's geography is where its data centres are: ``us`` (the United States), ``ca``
(Canada), ``sa`` (South America), ``eu`` (Europe, the United Kingdom and Switzerland
included), ``me`` (the Middle East), ``af`` (Africa) and ``apac`` (Asia and Oceania),
the names Amazon Bedrock's geographic inference profiles and Google Cloud's
multi-regions use. A region not listed here lies in no geography: only a policy that
names it in ``allowed_regions`` allows it.

This module knows nothing of policies, HTTP or Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass

GEOS = ("us", "ca", "sa", "eu", "me", "af", "apac")

_AWS = {
    "us": ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-east-1", "us-gov-west-1"),
    "ca": ("ca-central-1", "ca-west-1"),
    "sa": ("sa-east-1",),
    "eu": ("eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2",
           "eu-west-3"),
    "me": ("il-central-1", "me-central-1", "me-south-1"),
    "af": ("af-south-1",),
    "apac": ("ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1",
             "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
             "ap-southeast-7"),
}
_GCP = {
    # "us", "eu" and "asia" are Google Cloud's multi-regions.
    "us": ("us", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3",
           "us-west4"),
    "ca": ("northamerica-northeast1", "northamerica-northeast2"),
    "sa": ("southamerica-east1", "southamerica-west1"),
    "eu": ("eu", "europe-central2", "europe-north1", "europe-north2", "europe-southwest1", "europe-west1",
           "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9",
           "europe-west10", "europe-west12"),
    "me": ("me-central1", "me-central2", "me-west1"),
    "af": ("africa-south1",),
    "apac": ("asia", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
             "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
             "australia-southeast2"),
}
_AZURE = {
    "us": ("centralus", "eastus", "eastus2", "northcentralus", "southcentralus", "westcentralus", "westus", "westus2",
           "westus3"),
    "ca": ("canadacentral", "canadaeast"),
    "sa": ("brazilsouth", "brazilsoutheast"),
    "eu": ("francecentral", "germanywestcentral", "italynorth", "northeurope", "norwayeast", "polandcentral",
           "spaincentral", "swedencentral", "switzerlandnorth", "uksouth", "ukwest", "westeurope"),
    "me": ("israelcentral", "qatarcentral", "uaenorth"),
    "af": ("southafricanorth",),
    "apac": ("australiaeast", "australiasoutheast", "centralindia", "eastasia", "japaneast", "japanwest",
             "koreacentral", "southeastasia", "southindia"),
}
# CSP -> region -> geography.
REGION_GEOS: dict[str, dict[str, str]] = {
    csp: {region: geo for geo, regions in table.items() for region in regions}
    for csp, table in (("aws", _AWS), ("gcp", _GCP), ("azure", _AZURE))
}
CSPS = tuple(REGION_GEOS)


def geo_of(csp: str, region: str) -> str | None:
    """The geography ``region`` of ``csp`` lies in; None when it is not known to lie in one."""
    return REGION_GEOS.get(csp, {}).get(region)


def regions_in(geos: tuple[str, ...] | list[str]) -> list[tuple[str, str]]:
    """Every known (csp, region) in ``geos``, sorted."""
    wanted = set(geos)
    return sorted((csp, region) for csp, table in REGION_GEOS.items() for region, geo in table.items()
                  if geo in wanted)


@dataclass(frozen=True)
class RegionSetting:
    """A service's fact: the setting of its ``service_settings`` that names the region
    its requests go to, the provider that region belongs to, and the region used when the
    setting is unset (None: the setting is required).

    Some providers serve a request from another region than the one called, through a
    cross-region profile named by another setting (``profile_setting``): a value starting
    with one of ``geography_profiles`` is served anywhere in the called region's
    geography, one starting with one of ``global_profiles`` anywhere at all."""

    csp: str
    setting: str
    unset: str | None = None
    profile_setting: str | None = None
    geography_profiles: tuple[str, ...] = ()
    global_profiles: tuple[str, ...] = ()

    def reach(self, settings: object) -> "Reach | None":
        """Where requests of an endpoint with these ``settings`` may be served; None when
        they name no region."""
        region = getattr(settings, self.setting, None) or self.unset
        if not region:
            return None
        profile = getattr(settings, self.profile_setting, None) if self.profile_setting else None
        if isinstance(profile, str):
            if profile.startswith(self.global_profiles):
                return Reach(self.csp, region, ANYWHERE, profile)
            if profile.startswith(self.geography_profiles):
                return Reach(self.csp, region, GEOGRAPHY, profile)
        return Reach(self.csp, region, REGION)


# How far from the called region requests of an endpoint may be served.
REGION, GEOGRAPHY, ANYWHERE = "region", "geography", "anywhere"


@dataclass(frozen=True)
class Reach:
    """Where an endpoint's requests may be served: its ``region`` of ``csp`` alone, or any
    region of that region's geography, or any region at all (``spread``), because of its
    cross-region ``profile``."""

    csp: str
    region: str
    spread: str = REGION
    profile: str | None = None
