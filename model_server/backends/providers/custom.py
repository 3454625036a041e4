"""Custom: any HTTP model, reached through the endpoint's own request template and read
back through its JSONPath response parsers, as Elasticsearch's ``custom`` service does.

The ``request`` template takes JSON values: ``${input}`` (the list of inputs; for
``completion`` the first input, a string, as Elasticsearch sends it),
``${query}``, ``${input_type}`` (translated by ``input_type.translation``, else its
``default``), ``${top_n}`` and ``${return_documents}`` where the request gives them,
every ``secret_parameters`` key and every ``task_settings.parameters`` key (the
request's over the endpoint's). The ``url``, ``headers`` and ``query_parameters`` take
the same placeholders as plain text. A placeholder left over is an error, as in
Elasticsearch.

Where a request goes is fixed when the endpoint is created: the scheme, host and port of
the ``url`` are those its creator's values give (``secret_parameters`` and the endpoint's
own ``task_settings.parameters``), and a request whose parameters would change them is
refused, so that a caller who may only use the endpoint cannot send its secrets to a host
of their choosing. The final URL also passes the URL policy (``url_policy``), and a
header value that would split the header (a line break, a NUL) is refused.

The parsers' paths are the subset of JSONPath Elasticsearch reads: ``$``, ``.field`` and
``[*]``; each ``[*]`` is one level of list in the value found, so
``$.data[*].embedding[*]`` is one vector per input.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import validation_exception
from ..base import InferenceRequest
from ..url_policy import forbidden_host
from ..results import InferenceResult
from .answers import (
    bit_embeddings, byte_embeddings, completions, float_vector, rerank_results, sparse_embeddings, text_embeddings,
)
from .proxy import ProviderBackend

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# What no header value may hold: it would end the header, or the request's head.
_HEADER_BREAK = re.compile(r"[\r\n\x00]")
_STEP = re.compile(r"\.([^.\[\]]+)|\[\*\]")


def extract(document: Any, path: str) -> Any:
    """The value at ``path`` (``$.a.b[*].c[*]``): one list level per ``[*]``."""
    if not path.startswith("$"):
        raise ValueError(f"the path [{path}] does not start with $")
    steps = []
    rest = path[1:]
    while rest:
        match = _STEP.match(rest)
        if match is None:
            raise ValueError(f"the path [{path}] is not made of .field and [*] steps")
        steps.append(match.group(1))  # None for [*]
        rest = rest[match.end():]
    return _walk(document, steps, path)


def _walk(value: Any, steps: list[str | None], path: str) -> Any:
    if not steps:
        return value
    step, rest = steps[0], steps[1:]
    if step is None:
        if not isinstance(value, list):
            raise ValueError(f"the path [{path}] expects a list where the answer has [{type(value).__name__}]")
        return [_walk(item, rest, path) for item in value]
    if not isinstance(value, dict) or step not in value:
        raise ValueError(f"the answer has no field [{step}] on the path [{path}]")
    return _walk(value[step], rest, path)


def substitute(template: str, values: dict[str, str], field: str) -> str:
    """Replace each ``${name}`` with ``values[name]``; a placeholder left over is an error."""
    out = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    left = PLACEHOLDER.search(out)
    if left:
        raise validation_exception(
            f"Found placeholder [{left.group(0)}] in field [{field}] after replacement call, "
            "please check that all templates have a corresponding field definition."
        )
    return out


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, as the HTTP client reads it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise validation_exception(f"[service_settings.url] is not a valid URL once its placeholders are "
                                   f"replaced: {exc}") from None
    return parsed.scheme, parsed.host, parsed.port


def fixed_origin(template: str, values: dict[str, str]) -> tuple[str, str, int | None]:
    """The destination the endpoint's creator set: ``template`` with their ``values``, whose
    scheme, host and port must hold no placeholder left for a request to fill in."""
    url = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    parsed = urlsplit(url)
    if not parsed.scheme or not parsed.netloc or PLACEHOLDER.search(url[:url.index(parsed.netloc) + len(parsed.netloc)]):
        raise validation_exception(
            "[service_settings.url] must take its scheme, host and port from the endpoint's own settings, "
            "not from request-time [task_settings.parameters]"
        )
    return origin(url)


def parse_answer(answer: Any, task: TaskType, parser: dict[str, Any], documents: list[str]) -> InferenceResult:
    if task == TaskType.TEXT_EMBEDDING:
        vectors = extract(answer, parser["text_embeddings"])
        if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
            raise ValueError("[text_embeddings] did not find one list of numbers per input")
        kind = parser.get("embedding_type") or "float"
        if kind == "byte":
            return byte_embeddings(vectors)
        if kind in ("bit", "binary"):
            return bit_embeddings(vectors)
        return text_embeddings([float_vector(v) for v in vectors])
    if task == TaskType.SPARSE_EMBEDDING:
        tokens, weights = extract(answer, parser["token_path"]), extract(answer, parser["weight_path"])
        if len(tokens) != len(weights) or any(len(t) != len(w) for t, w in zip(tokens, weights)):
            raise ValueError("[token_path] and [weight_path] found lists of different lengths")
        return sparse_embeddings([dict(zip(map(str, t), w)) for t, w in zip(tokens, weights)])
    if task == TaskType.RERANK:
        scores = extract(answer, parser["relevance_score"])
        indexes = extract(answer, parser["reranked_index"]) if parser.get("reranked_index") else range(len(scores))
        texts = extract(answer, parser["document_text"]) if parser.get("document_text") else [None] * len(scores)
        if not len(scores) == len(indexes) == len(texts):
            raise ValueError("the rerank paths found lists of different lengths")
        scored = []
        for index, score, text in zip(indexes, scores, texts):
            if not 0 <= int(index) < len(documents):
                raise ValueError(f"reranked index [{index}] is out of range")
            scored.append((int(index), score, text))
        return rerank_results(scored)
    texts = extract(answer, parser["completion_result"])
    texts = texts if isinstance(texts, list) else [texts]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("[completion_result] did not find text")
    return completions(texts)


class CustomBackend(ProviderBackend):
    def secret_parameters(self) -> dict[str, str]:
        return {name.partition(".")[2]: self.secret(name) for name in self.config.secret_values()}

    def stored_parameters(self) -> dict[str, Any]:
        """The endpoint's own ``task_settings.parameters``, set by its creator."""
        return dict(getattr(self.config.task_settings, "parameters", None) or {})

    def parameters(self, request: InferenceRequest) -> tuple[dict[str, str], dict[str, str]]:
        """(values for the JSON body, values for the url and headers)."""
        secrets = self.secret_parameters()
        given = {**self.stored_parameters(), **(request.task_settings.get("parameters") or {})}
        clash = sorted(set(given) & set(secrets))
        if clash:
            raise validation_exception(
                f"[task_settings.parameters] cannot contain the keys of [secret_parameters]: {clash}"
            )
        json_values: dict[str, Any] = {**given, **secrets}
        inputs = list(request.input)
        json_values["input"] = (inputs[0] if inputs else "") if self.config.task_type == TaskType.COMPLETION else inputs
        if request.query is not None:
            json_values["query"] = request.query
        translation = self.setting("input_type")
        if translation is not None:
            input_type = self.input_type(request)
            table = translation.translation or {}
            json_values["input_type"] = table.get(input_type or "", translation.default or "")
        for name in ("top_n", "return_documents"):
            if request.task_settings.get(name) is not None:
                json_values[name] = request.task_settings[name]
        text_values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in json_values.items()}
        return {k: json.dumps(v) for k, v in json_values.items()}, text_values

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        body_values, text_values = self.parameters(request)
        body_text = substitute(self.setting("request"), body_values, "request")
        try:
            body = json.loads(body_text)
        except ValueError:
            raise validation_exception("[service_settings.request] is not JSON once its placeholders are replaced") \
                from None
        url = self.url(text_values)
        headers = {k: substitute(v, text_values, f"header.{k}") for k, v in (self.setting("headers") or {}).items()}
        for name, value in headers.items():
            if _HEADER_BREAK.search(value):
                raise validation_exception(
                    f"[service_settings.headers] [{name}] holds a line break or a NUL once its placeholders are "
                    "replaced, which no header value may hold"
                )
        answer = await self.call_json(url, body, request, headers=headers)
        parser = self.config.service_settings.response.json_parser.model_dump(exclude_none=True)
        return self.translate(parse_answer, answer, self.config.task_type, parser, list(request.input))

    def url(self, text_values: dict[str, str]) -> str:
        """The URL of one request: where the endpoint's creator said, whatever the request's parameters."""
        template = self.setting("url")
        creators = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.stored_parameters().items()}
        fixed = fixed_origin(template, {**creators, **self.secret_parameters()})
        url = substitute(template, text_values, "url")
        pairs = [(k, substitute(v, text_values, f"query parameters: [{k}]"))
                 for k, v in self.setting("query_parameters", [])]
        if pairs:
            url += ("&" if "?" in url else "?") + urlencode(pairs)
        if origin(url) != fixed:
            raise validation_exception(
                "[task_settings.parameters] cannot change the scheme, host or port the endpoint sends its requests to"
            )
        if not self.allow_link_local and forbidden_host(url):
            raise validation_exception(
                "[service_settings.url] points at a link-local or cloud metadata address, where no provider is served"
            )
        return str(httpx.URL(url))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> CustomBackend:
    return CustomBackend(config, **options)
