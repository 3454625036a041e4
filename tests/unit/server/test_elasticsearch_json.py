"""Elasticsearch's result shapes, written from the backends' typed results."""

import pytest

from model_server.api.elasticsearch_json import render, render_delta
from model_server.backends.results import (
    CompletionDelta, Completions, Embeddings, RankedDocument, Ranking, SparseEmbedding, SparseEmbeddings, TextEmbeddings,
)

CASES = [
    (TextEmbeddings([[0.5, -1.0]]), {"text_embedding": [{"embedding": [0.5, -1.0]}]}),
    (TextEmbeddings([[1, -2]], "byte"), {"text_embedding_bytes": [{"embedding": [1, -2]}]}),
    (TextEmbeddings([[7]], "bit"), {"text_embedding_bits": [{"embedding": [7]}]}),
    (Embeddings([[0.25]]), {"embeddings": [{"embedding": [0.25]}]}),
    (SparseEmbeddings([SparseEmbedding({"cat": 0.5}, True)]),
     {"sparse_embedding": [{"is_truncated": True, "embedding": {"cat": 0.5}}]}),
    (Ranking([RankedDocument(2, 0.9, "b"), RankedDocument(0, 0.1)]),
     {"rerank": [{"index": 2, "relevance_score": 0.9, "text": "b"}, {"index": 0, "relevance_score": 0.1}]}),
    (Completions(["hi"]), {"completion": [{"result": "hi"}]}),
]


@pytest.mark.parametrize("result,body", CASES)
def test_each_result_renders_as_elasticsearch_writes_it(result, body):
    assert render(result) == body


def test_a_streamed_piece_is_a_completion_delta():
    assert render_delta(CompletionDelta("Hel")) == {"completion": [{"delta": "Hel"}]}


def test_an_embedding_body_is_written_compactly_and_its_floats_read_back_exactly():
    import json
    import random

    import numpy as np

    from model_server.api.errors import ElasticsearchJSONResponse

    rng = random.Random(7)
    vectors = np.asarray([[rng.gauss(0, 0.05) for _ in range(384)] for _ in range(3)], dtype=np.float32).tolist()
    body = render(TextEmbeddings(vectors))
    written = ElasticsearchJSONResponse(body).body
    assert b" " not in written and json.loads(written) == body
    assert [item["embedding"] for item in json.loads(written)["text_embedding"]] == vectors


def test_a_body_orjson_cannot_write_is_written_by_the_json_module():
    from model_server.api.errors import ElasticsearchJSONResponse

    written = ElasticsearchJSONResponse({"completion": [{"result": "a\ud800b"}], "big": 2 ** 70, 3: "x"}).body
    assert written == b'{"completion":[{"result":"a\\ud800b"}],"big":1180591620717411303424,"3":"x"}'
