"""The README tells the truth: its Quick start is run as a user runs it (`make demo`, then
the `curl` commands it shows, compared with the answers it shows, numbers to the digits
shown), and every `kubeinfer` command, flag, make target and link it names exists. The
getting-started page's calls are run the same way."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from local_mode import free_port

from kubeinfer.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
SHOWN_ADDRESS = "127.0.0.1:9200"
ELISION = "..."


@dataclass
class Step:
    command: str
    output: list[str]


def fenced_blocks(text: str, language: str | None = None) -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    return [body for lang, body in blocks if language is None or lang == language]


def console_steps(block: str) -> list[Step]:
    """``$ command`` lines of a console block, each with the lines it shows as output."""
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append(Step(line[2:], []))
        elif steps:
            steps[-1].output.append(line)
    for step in steps:
        while step.output and not step.output[-1].strip():
            step.output.pop()
    return steps


def section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


# --- What a shown answer means: JSON whose numbers are rounded to the digits shown, and
# where "..." stands for whatever the real answer has there, up to the next shown token.

_TOKEN = re.compile(r'\s*(\.\.\.|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|[{}\[\]:,])')


def tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match, f"cannot read {text[pos:pos + 40]!r}"
        out.append(match.group(1))
        pos = match.end()
    return out


def _is_number(token: str) -> bool:
    return bool(re.fullmatch(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", token))


def _same(shown: str, real: str) -> bool:
    if _is_number(shown) and _is_number(real) and "e" not in shown.lower():
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        return round(float(real), decimals) == float(shown)
    return shown == real


def matches(shown: list[str], real: list[str]) -> bool:
    """Whether ``real`` reads as ``shown``: an elision skips real tokens of the same depth."""
    def match(i: int, j: int) -> bool:
        while i < len(shown):
            if shown[i] == ELISION:
                depth = 0
                for k in range(j, len(real) + 1):
                    if depth == 0 and match(i + 1, k):
                        return True
                    if k == len(real):
                        return False
                    depth += {"{": 1, "[": 1, "}": -1, "]": -1}.get(real[k], 0)
                    if depth < 0:
                        return False
                return False
            if j >= len(real) or not _same(shown[i], real[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(real)

    return match(0, 0)


def lines_match(shown: list[str], real: list[str]) -> bool:
    """Lines, where a line "..." stands for any number of real lines."""
    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return True  # the process goes on printing after what is shown
        if shown[i] == ELISION:
            return any(match(i + 1, k) for k in range(j, len(real) + 1))
        return j < len(real) and shown[i] == real[j] and match(i + 1, j + 1)

    return match(0, 0)


# --- Running what the README shows.

def run_curl(command: str, port: int) -> str:
    """A shown ``curl`` command against local mode on ``port``: curl itself where installed."""
    command = command.replace(SHOWN_ADDRESS, f"127.0.0.1:{port}")
    args = shlex.split(command)
    assert args[0] == "curl", command
    if shutil.which("curl"):
        return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    method, headers, data, url = "GET", {}, None, None
    rest = iter(args[1:])
    for arg in rest:
        if arg in ("-s", "-N"):
            continue
        if arg == "-X":
            method = next(rest)
        elif arg == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            data = next(rest)
        else:
            assert not arg.startswith("-"), f"a curl option this test does not know: {arg}"
            url = arg
    return httpx.request(method, url, headers=headers, content=data, timeout=120).text


class MakeDemo:
    """``make demo PORT=<port>`` as a user starts it, in a home of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.venv = Path(sys.prefix)
        if not (self.venv / "bin" / "kubeinfer").exists():
            pytest.skip("the venv has no kubeinfer command: `make install` makes one")
        hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MAKEFLAGS", "MFLAGS")}
        # A newcomer's machine: nothing in Hugging Face's cache, downloads allowed (no test
        # request needs one), a home of its own; the ONNX exports are shared with other runs.
        env |= {"HOME": str(tmp_path / "home"), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": hf_home,
                "PYTHONUNBUFFERED": "1"}
        self.args = ["make", "--no-print-directory", "-o", f"{self.venv}/.installed", "demo",
                     f"PORT={self.port}", f"VENV={self.venv}"]
        self.env = env
        self.lines: list[str] = []

    def __enter__(self) -> "MakeDemo":
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 600  # a first start exports the model to ONNX
        while not any("Stop with Ctrl-C." in line for line in self.lines):
            assert self.process.poll() is None, "make demo stopped:\n" + "".join(self.lines)
            assert time.monotonic() < deadline, "make demo did not start:\n" + "".join(self.lines)
            time.sleep(0.2)
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def shown(self) -> list[str]:
        """What it printed, as the README shows it: port 9200, the project's own venv."""
        text = "".join(self.lines).replace(f"127.0.0.1:{self.port}", SHOWN_ADDRESS)
        text = text.replace(f"--port {self.port}", "--port 9200").replace(f"{self.venv}/bin/", ".venv/bin/")
        return text.splitlines()

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C: make and local mode both get it
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def run_steps(steps: list[Step], port: int, where: str) -> None:
    for step in steps:
        real = run_curl(step.command, port)
        shown = " ".join(step.output)
        assert matches(tokens(shown), tokens(real)), f"{where}: `{step.command}`\nshows {shown}\nanswers {real}"


def test_the_quick_start_shows_what_make_demo_and_its_commands_answer(tmp_path):
    readme = README.read_text()
    quick_start = section(readme, "## Quick start")
    demo, calls, _make_test = (console_steps(b) for b in fenced_blocks(quick_start, "console"))
    assert [s.command for s in demo] == ["make demo"]
    assert "`make demo PORT=9400`" in quick_start
    curls = [s for s in calls if s.command.startswith("curl ")]
    assert len(curls) == len(calls) >= 4
    guide = GETTING_STARTED.read_text()
    guide_calls = [s for b in fenced_blocks(guide, "console") for s in console_steps(b)]
    with MakeDemo(tmp_path) as running:
        run_steps(curls, running.port, "README")
        run_steps(guide_calls, running.port, "docs/getting-started.md")
        printed = running.shown()
    assert lines_match(demo[0].output, printed), "make demo printed:\n" + "\n".join(printed)
    # The banner the guide shows is the README's, which is what make demo printed.
    banner = [line for line in demo[0].output if line != ELISION][1:]
    assert "\n".join(banner) in fenced_blocks(guide, "text")[0]


def test_make_demo_serves_on_the_port_it_is_given(tmp_path):
    with MakeDemo(tmp_path) as running:
        answer = httpx.get(f"http://127.0.0.1:{running.port}/", timeout=30)
        text = "".join(running.lines)
    assert answer.status_code == 200 and answer.headers["x-elastic-product"] == "Elasticsearch"
    assert f"kubeinfer local: Elasticsearch's inference API at http://127.0.0.1:{running.port}" in text
    assert f"curl -s http://127.0.0.1:{running.port}/_inference" in text


def test_the_make_test_shown_is_what_the_makefile_runs():
    block = fenced_blocks(section(README.read_text(), "## Quick start"), "console")[2]
    [step] = console_steps(block)
    assert step.command == "make test"
    # What make would run, set-up aside: prerequisites' commands, then the recipe's.
    dry_run = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed", "VENV=.venv", "test"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    shown = [line for line in step.output if line.startswith((".venv/bin/", "PYTHONPATH="))]
    assert shown and dry_run[-len(shown):] == shown
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert f"Contracts: {contracts} kept, 0 broken." in step.output


def pages() -> Iterator[Path]:
    yield README
    yield from sorted((ROOT / "docs").rglob("*.md"))


def code_of(text: str) -> str:
    """The code a page shows: its fenced blocks and inline code spans."""
    return "\n".join(fenced_blocks(text) + re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text,
                                                                                  flags=re.S | re.M)))


@pytest.mark.parametrize("page", list(pages()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kubeinfer_command_and_flag_shown_exists(page):
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    # kubeinfer as a command: first on a line, after a prompt, a pipe or a venv's bin/.
    for match in re.finditer(r"(?:^|^\$ |[|;&] *|/)kubeinfer ([a-z][-a-z]*)([^\n|#]*)", code_of(page.read_text()),
                             re.M):
        command, rest = match.group(1), match.group(2)
        assert command in commands, f"{page.name}: kubeinfer {command} is no command"
        known = {flag for action in commands[command]._actions for flag in action.option_strings}
        for flag in re.findall(r"(?:^|\s|\[)(--?[a-z][-a-z]*)", rest):
            assert flag in known, f"{page.name}: kubeinfer {command} has no {flag}"


@pytest.mark.parametrize("page", list(pages()), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_shown_exists(page):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][-a-z0-9]*):", makefile, re.M))
    for target in re.findall(r"(?:^|[\s`])make ([a-z][-a-z0-9]*)", code_of(page.read_text())):
        assert target in targets, f"{page.name}: no make target {target}"


def slug(heading: str) -> str:
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def test_the_readmes_links_lead_to_files_and_headings_that_exist():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, link


# Settings that bound what a caller or a provider can make a process hold: by their names.
_LIMIT_NAME = re.compile(r"(^max_|_max_|_size$|_timeout$|_duration$|_capacity$|^held_)")
# Settings that keep traffic or pods where they belong.
_SAFETY_SETTINGS = ("allow_link_local_urls", "endpoint_network_policy", "deployment_policy")


def _limit_settings() -> dict[str, tuple[type, str]]:
    from kubeinfer.config import GatewaySettings, OperatorSettings, ServerSettings, env_var
    found: dict[str, tuple[type, str]] = {}
    for model in (ServerSettings, GatewaySettings, OperatorSettings):
        for name in model.model_fields:
            if _LIMIT_NAME.search(name) or name in _SAFETY_SETTINGS:
                found.setdefault(env_var(name), (model, name))
    return found


def test_limits_and_safety_lists_every_limit_with_its_true_default():
    text = section(README.read_text(), "## Limits and safety")
    rows = dict(re.findall(r"^\| `(KUBEINFER_\w+)` \| ([^|]+?) \|", text, re.M))
    limits = _limit_settings()
    assert set(limits) <= set(rows), f"not in the README's limits: {sorted(set(limits) - set(rows))}"
    assert set(rows) <= set(limits), f"not settings: {sorted(set(rows) - set(limits))}"
    for variable, shown in rows.items():
        model, name = limits[variable]
        default = model.model_fields[name].default
        value = re.fullmatch(r"`([^`]+)`", shown)
        if value is not None:  # read as the process reads the variable: the same value
            assert getattr(model.from_env({variable: value.group(1)}), name) == default, (variable, shown)
        else:  # no value of its own: the setting leaves it to what it bounds, or is a document
            assert default is None or name == "deployment_policy", (variable, shown)
    assert "[examples/deployment-policy/values.yaml](examples/deployment-policy/values.yaml)" in text
    assert "`deploymentPolicy`" in text


def test_the_readme_is_short():
    # A page a newcomer reads through: past this, detail belongs in docs/.
    assert len(README.read_text().splitlines()) <= 320


def test_the_shown_answer_matcher_reads_numbers_to_the_digits_shown():
    real = tokens('{"embedding":[0.035496827214956284,0.06128622591495514,-0.03066]}')
    assert matches(tokens('{"embedding":[0.0355,0.0613, ...]}'), real)
    assert not matches(tokens('{"embedding":[0.0354,0.0613, ...]}'), real)
    assert not matches(tokens('{"embedding":[0.0355,0.0613]}'), real)
    assert matches(tokens('{"a":1, ...}'), tokens('{"a":1,"b":{"c":[1,2]},"d":2}'))
    assert not matches(tokens('{"a":1, ...,"e":3}'), tokens('{"a":1,"b":{"c":[1,2]},"d":2}'))
