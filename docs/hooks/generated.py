"""MkDocs hook: the pages' tables that restate the code are generated from it, so they
cannot drift. A page asks for one with a marker line, ``<!-- generated: NAME -->``:

- ``services``: every service of the catalog, its task types, default rate limits and
  secret settings (``kubeinfer.catalog``);
- ``settings``: every ``KUBEINFER_*`` variable, which roles read it, its default and
  meaning (``kubeinfer.config``);
- ``cli``: the ``--help`` of every ``kubeinfer`` command (``kubeinfer.cli``).

An unknown marker fails the build.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from kubeinfer.catalog import SERVICES, TaskType
from kubeinfer.catalog._base import ServiceSpec

MARKER = re.compile(r"^<!-- generated: ([a-z]+) -->$", re.MULTILINE)
TASKS = sorted(t.value for t in TaskType)


def _rate_limit(spec: ServiceSpec) -> str:
    if spec.default_rate_limit is None:
        return "runs in the cluster"
    if not spec.default_rate_limit:
        return "none (Elasticsearch sets none)"
    by_limit: dict[int, list[str]] = {}
    for task, limit in spec.default_rate_limit.items():
        by_limit.setdefault(limit, []).append(task.value)
    if len(by_limit) == 1:
        return str(next(iter(by_limit)))
    return ", ".join(f"{limit} ({', '.join(tasks)})" for limit, tasks in sorted(by_limit.items()))


def _secrets(spec: ServiceSpec) -> str:
    fields: dict[str, bool] = {}
    for task in spec.task_types:
        model = spec.service_settings_model(task)
        for name in model.secret_fields:
            fields[name] = fields.get(name, False) or model.model_fields[name].is_required()
    if not fields:
        return "—"
    groups = {name for task in spec.task_types for group in spec.service_settings_model(task).one_of_required
              for name in group if name in fields}
    cells = []
    for name, required in fields.items():
        cell = f"`{name}`"
        if name not in groups and not required:
            cell += " (optional)"
        cells.append(cell)
    return (" or " if groups and len(groups) == len(fields) else ", ").join(cells)


def services_table() -> str:
    """The services matrix: one row per service, a ✓ per task type it performs."""
    head = ["Service", "Name", *TASKS, "Default `rate_limit.requests_per_minute`", "Secret settings"]
    lines = ["| " + " | ".join(f"`{t}`" if t in TASKS else t for t in head) + " |",
             "|---|---|" + ":---:|" * len(TASKS) + "---|---|"]
    for name, spec in sorted(SERVICES.items()):
        marks = ["✓" if spec.supports(task) else "" for task in TASKS]
        lines.append(f"| `{name}` | {spec.label or name} | " + " | ".join(marks)
                     + f" | {_rate_limit(spec)} | {_secrets(spec)} |")
    return "\n".join(lines)


def _default(field: Any) -> str:
    """A setting's default as its variable would be written."""
    import json

    from pydantic import ByteSize

    value = field.get_default(call_default_factory=True)
    if value is None or value in ((), {}, ""):
        return "—"
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, ByteSize):
        value = value.human_readable(separator="")
    elif isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))
    elif isinstance(value, dict):
        value = json.dumps(value)
    return f"`{value}`"


def settings_table() -> str:
    """Every KUBEINFER_* variable with the roles that read it."""
    from kubeinfer.config import HttpSettings, KubeinferSettings, OperatorSettings, ServerSettings, env_var

    roles = {"operator": OperatorSettings, "serve, local": ServerSettings, "gateway": HttpSettings}
    rows: dict[str, tuple[list[str], Any]] = {}
    for role, cls in roles.items():
        for name, field in cls.model_fields.items():
            rows.setdefault(name, ([], field))[0].append(role)
    lines = ["| Variable | Read by | Default | Meaning |", "|---|---|---|---|"]
    for name, (readers, field) in sorted(rows.items()):
        readers = ["every role"] if name in KubeinferSettings.model_fields else readers
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{env_var(name)}` | {', '.join(readers)} | {_default(field)} | {meaning} |")
    return "\n".join(lines)


def cli_reference() -> str:
    """``kubeinfer --help`` and each command's, as a terminal 100 columns wide shows them."""
    import argparse

    from kubeinfer.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parts = ["```text", f"$ kubeinfer --help\n{parser.format_help().rstrip()}", "```"]
        for name, command in sub.choices.items():
            parts += ["", f"### kubeinfer {name}", "", "```text", f"$ kubeinfer {name} --help",
                      command.format_help().rstrip(), "```"]
        return "\n".join(parts)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


GENERATORS: dict[str, Callable[[], str]] = {"services": services_table, "settings": settings_table,
                                            "cli": cli_reference}


def render(markdown: str) -> str:
    """``markdown`` with each marker replaced by what it names."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated table [{name}]; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return render(markdown)
