"""The images `make images` builds are the ones the chart, `deploy/` and the docs name:
one naming (images/build.sh, REGISTRY and the chart's appVersion), checked everywhere a
user reads or installs an image name."""

from __future__ import annotations

import os
import re
import subprocess

import yaml

from shipping import REPO

TARGETS = ("operator", "server", "server-cuda")


def built(**env: str) -> dict[str, str]:
    """Target -> image, as `make images` names it with ``env``."""
    environment = {k: v for k, v in os.environ.items() if k not in ("REGISTRY", "TAG")}
    out = subprocess.run([str(REPO / "images" / "build.sh"), "--names"], check=True, capture_output=True, text=True,
                         env={**environment, **env}, timeout=60).stdout
    return dict(line.split() for line in out.splitlines())


def app_version() -> str:
    return yaml.safe_load((REPO / "charts" / "kubeinfer" / "Chart.yaml").read_text())["appVersion"]


def test_make_images_names_each_target_under_the_registry_with_the_charts_app_version():
    names = built()
    assert set(names) == set(TARGETS)
    assert all(name.endswith(f":{app_version()}") for name in names.values())
    assert built(REGISTRY="registry.example.com/team") == {
        target: name.replace("ghcr.io/kubeinfer/", "registry.example.com/team/") for target, name in names.items()}
    # make passes its own default, the same as the script's
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^REGISTRY\s*\?=\s*ghcr.io/kubeinfer$", makefile, re.M)


def test_the_charts_default_images_are_the_built_ones():
    values = yaml.safe_load((REPO / "charts" / "kubeinfer" / "values.yaml").read_text())
    names = built()
    tag = app_version()
    assert f"{values['image']['repository']}:{values['image']['tag'] or tag}" == names["operator"]
    server, cpu = values["endpoints"]["serverImage"], values["endpoints"]["serverCpuImage"]
    assert f"{server['repository']}:{server['tag'] or tag}" == names["server-cuda"]
    assert f"{cpu['repository']}:{cpu['tag'] or tag}" == names["server"]


def test_the_plain_manifests_run_the_built_images():
    objects = [o for o in yaml.safe_load_all((REPO / "deploy" / "kubeinfer.yaml").read_text()) if o]
    containers = [c for o in objects if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]]
    names = built()
    assert containers and {c["image"] for c in containers} == {names["operator"]}
    env = {e["name"]: e.get("value") for c in containers for e in c.get("env", [])}
    assert env["KUBEINFER_SERVER_IMAGE"] == names["server-cuda"]
    assert env["KUBEINFER_SERVER_CPU_IMAGE"] == names["server"]


def test_the_readmes_image_table_names_the_built_images_and_how_to_build_them():
    readme = (REPO / "README.md").read_text()
    install = readme[readme.index("## Install on Kubernetes"):]
    install = install[:install.index("\n## ", 1)]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", install, re.M)
    assert {target: image for image, target in rows} == built()
    commands = re.findall(r"^(?:ENGINE=(\w+) )?make images REGISTRY=\S+ PUSH=1", install, re.M)
    assert "" in commands and "docker" in commands and "podman" in install
    # the images come first, then the ways to install
    assert install.index("make images") < install.index("helm install")


def test_the_install_pages_image_table_names_the_built_images():
    page = (REPO / "docs" / "install.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", page, re.M)
    names = built()
    assert {target: image for image, target in rows} == {t: n.rsplit(":", 1)[0] for t, n in names.items()}
