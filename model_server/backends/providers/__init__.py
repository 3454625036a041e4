"""Backends that answer Elasticsearch's inference API by calling an external provider.

One module per service (named as the service, ``-`` written ``_``), each exposing
``create_backend(config, **options)``. The modules share:

- ``client``: the process-wide ``httpx.AsyncClient`` (pooling, HTTP/2 where offered);
- ``ratelimit``: the per-endpoint token bucket;
- ``faults``: provider answers and transport failures as ``ElasticsearchError`` values;
- ``retries``: backoff with jitter honouring ``Retry-After``, within the request's deadline;
- ``streams``: Server-Sent Events and newline-delimited JSON readers;
- ``tokens``: short-lived bearer tokens (Vertex AI, watsonx.ai) cached until near expiry;
- ``proxy``: ``ProviderBackend``, which ties those together for the service modules;
- ``openai_shapes``: the OpenAI wire format, which several providers speak.

Options every ``create_backend`` accepts (tests and benchmarks use them):
``transport`` (an ``httpx`` transport for a private client), ``client`` (an
``httpx.AsyncClient`` to use), ``validate_at_start`` (default True: one small call at
start-up checks the credentials and learns the embedding size).
"""
