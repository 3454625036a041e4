"""kubeinfer.strict_json: what it reads, what it refuses and why, on either of its paths
(orjson for documents with few brackets, the standard library's parser otherwise)."""

from __future__ import annotations

import json
import random

import pytest

from kubeinfer.strict_json import MAX_DEPTH, JSONRefused, loads


def test_an_embedding_answer_reads_as_the_standard_library_reads_it():
    rng = random.Random(3)
    answer = {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 5, "total_tokens": 5},
              "data": [{"object": "embedding", "index": i, "embedding": [rng.uniform(-1, 1) for _ in range(1536)]}
                       for i in range(3)]}
    body = json.dumps(answer).encode()
    assert loads(body) == json.loads(body) == answer
    assert loads(body.decode()) == answer


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_the_limit_is_read(depth):
    assert loads("[" * depth + "]" * depth) is not None


def test_many_brackets_that_do_not_nest_deep_are_read():
    body = json.dumps([[i] for i in range(3 * MAX_DEPTH)])
    assert loads(body) == [[i] for i in range(3 * MAX_DEPTH)]


@pytest.mark.parametrize("body, reason", [
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nesting depth exceeds the maximum allowed"),
    ('{"a": "\\ud800"}', "unpaired UTF-16 surrogate"),
    ('[NaN]', "[NaN] is not a JSON value"),
    ('[1e400]', "out of range"),
    ("1" * 1001, "exceeds the maximum allowed (1000)"),
    ('{"a": 1', "Expecting"),
])
def test_refusals_say_why(body, reason):
    with pytest.raises(JSONRefused) as refused:
        loads(body)
    assert reason in str(refused.value)


def test_invalid_utf8_is_refused_with_its_position():
    with pytest.raises(JSONRefused, match="invalid UTF-8 at byte 7"):
        loads(b'{"a": "\xff"}')
