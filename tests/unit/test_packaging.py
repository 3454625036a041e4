"""The distribution ships every package of the source tree."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def _source_packages() -> set[str]:
    found = set()
    for top, name in (("kubeinfer", "kubeinfer"), ("model_server", "model_server"), ("operator", "kubeinfer_operator")):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    return found


def test_every_source_package_is_declared_in_pyproject():
    assert _source_packages() - _declared_packages() == set()


def test_every_declared_package_exists():
    assert _declared_packages() - _source_packages() == set()


def test_operator_package_does_not_shadow_the_stdlib_module():
    import operator
    import kubeinfer_operator

    assert hasattr(operator, "itemgetter")
    assert Path(kubeinfer_operator.__file__).parent.name == "operator"
