"""The backend of the ``elasticsearch`` and ``elser`` services: a model run in-process.

``start`` finds the model (built-in id, Hugging Face id or path), loads it on the best
runtime, starts the dynamic batcher and runs a warm-up batch; only then is the backend
``ready``. ``infer`` tokenizes, submits to the batcher and shapes Elasticsearch's
response: ``text_embedding``, ``sparse_embedding`` (with ``is_truncated``),
``rerank`` (sorted by score, ``top_n`` and ``return_documents`` honoured) or
``embedding`` (texts and images through an image-and-text model, see ``multimodal``;
audio, video and PDF refused as Elasticsearch refuses what a service cannot read).

Torch is imported when the model loads, not when this module is imported, and not at all
in a server without torch, which serves the checked ONNX exports of the model cache
(``exported``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import threading
from typing import Any, Mapping

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError, status_exception
from ..base import Backend, InferenceRequest
from ..content import IMAGE, TEXT, ContentItem, check_contents
from ..results import (Embeddings, InferenceResult, RankedDocument, Ranking, SparseEmbedding, SparseEmbeddings,
                       TextEmbeddings)
from .batching import BatchingOptions, DynamicBatcher
from .engine import EngineOptions
from .memory import return_free_memory
from .models import is_e5, locate_model

log = logging.getLogger(__name__)

# Above this many inputs, tokenizing moves off the event loop.
_TOKENIZE_INLINE_MAX = 16
# Models load one at a time in a process: transformers' lazy imports are not safe from two
# threads at once (two models loading side by side at start-up saw "module 'transformers'
# has no attribute 'AutoTokenizer'"), and two loads would only share the same cores.
_LOADING = threading.Lock()
# A masked-LM head produces (tokens x vocabulary) logits: a smaller budget keeps that in memory.
_SPARSE_MAX_BATCH_TOKENS = 4096


class LocalModelBackend(Backend):
    def __init__(
        self,
        config: InferenceEndpointConfig,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | None = None,
        batching: BatchingOptions | Mapping[str, Any] | None = None,
        settings: ServerSettings | None = None,
        engine: EngineOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config)
        settings_ = settings if settings is not None else ServerSettings.from_env()
        if config.task_type not in (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING, TaskType.RERANK,
                                    TaskType.EMBEDDING):
            raise status_exception(f"The [{config.service}] service does not support task type [{config.task_type}]")
        settings = config.service_settings
        self.model_id: str = settings.model_id  # type: ignore[attr-defined]
        # What the model id stands for (an alias, a built-in model): the operator resolved it alike.
        self.model_name = settings_.resolve_model(self.model_id)
        self.num_threads: int = int(getattr(settings, "num_threads", 1) or 1)
        self.cache_dir = cache_dir
        self.device = device or settings_.device
        self.cpu_dtype = settings_.cpu_dtype
        self.cuda_graphs = settings_.cuda_graphs
        self.lanes_max_memory = int(settings_.cpu_lanes_max_memory)
        if isinstance(batching, BatchingOptions):
            self.batching = batching
        else:
            defaults = {"max_batch_tokens": _SPARSE_MAX_BATCH_TOKENS} if config.task_type is TaskType.SPARSE_EMBEDDING else {}
            self.batching = BatchingOptions.resolve(batching, **{**defaults, **settings_.batching()})
        self.engine = engine if isinstance(engine, EngineOptions) else EngineOptions.resolve(settings_, engine)
        self.running_on: dict[str, Any] = {}
        self._model: Any = None
        self._batcher: DynamicBatcher | None = None
        self._prefixes: dict[str, str] = {}
        # Larger requests are refused rather than hog the model.
        self.max_inputs = settings_.max_inputs_per_request

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._batcher is not None

    async def start(self) -> None:
        log.info("loading model [%s]", self.model_id)
        # Load, warm up and run on the batcher's single worker thread: one thread for all torch work.
        batcher = DynamicBatcher(
            self._run_batch, name=self.config.inference_id, options=self.batching,
            worker_init=functools.partial(_set_threads, self.num_threads),
        )
        await batcher.start()
        try:
            model = await batcher.on_worker(self._load)
            self._model, self._prefixes = model, self._input_type_prefixes(model)
            await batcher.on_worker(model.run, model.warmup_items())
        except BaseException:
            self._model = None
            await batcher.close()
            raise
        self._batcher = batcher
        engine = self.running_on.get("engine", "torch")
        if self.running_on.get("quantization") == "int8":
            engine += " int8"
        if self.running_on.get("cuda_graphs"):
            engine += " with CUDA graphs"
        if self.running_on.get("lanes"):
            engine += f" with {self.running_on['lanes']} one-thread lanes"
        log.info("model [%s] ready on %s (%s, %s), max length %d tokens", self.model_id, model.runtime.device,
                 engine, str(model.runtime.dtype).removeprefix("torch."), model.max_length)

    def _run_batch(self, items: list[Any]) -> list[Any]:
        return self._model.run(items)

    async def close(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
        model, self._model = self._model, None
        if model is not None:
            model.close()
            del model  # the last reference: its weights are freed here
            await asyncio.to_thread(return_free_memory)

    def locate(self) -> Any:
        """The model's folder, downloaded into the cache first where needed."""
        return locate_model(self.model_id, self.model_name, self.cache_dir)

    def _load(self) -> Any:
        with _LOADING:
            return self._load_model()

    def _load_model(self) -> Any:
        path = self.locate()
        exported = self._servable_export(path)
        if exported is not None:
            from .exported import ExportedModel

            model = ExportedModel(path, exported, self.num_threads)
            self.running_on = {"engine": "onnx", "quantization": self.engine.quantization,
                               "cosine": model.facts.get("cosine"), "export": "cached"}
            return model
        if not _has_torch():
            raise status_exception(
                f"Could not load model [{self.model_id}]: this server runs models exported to ONNX only (it has no "
                f"torch), and the model cache [{self.cache_dir}] holds no checked export of [{path}] for task type "
                f"[{self.config.task_type}]; fill it with `kubeinfer export` (an image with torch: server-cuda)", 500)
        return self.load_with_torch(path)

    def _servable_export(self, path: Any) -> Any:
        """The checked ONNX export to serve on a server without torch, if the cache holds one.
        Where torch is installed it serves (with lanes, and the check run again)."""
        if _has_torch() or not self.engine.wants_onnx or self.config.task_type is TaskType.EMBEDDING:
            return None
        from .exported import servable_export

        return servable_export(path, self.config.task_type, self.engine.quantization, self.cache_dir)

    def load_with_torch(self, path: Any) -> Any:
        """The model on torch, and on ONNX Runtime where it agrees (its export written then)."""
        import torch

        from .encoders import RerankModel, SparseEmbeddingModel, TextEmbeddingModel
        from .multimodal import ImageTextEmbeddingModel
        from .runtime import select_runtime

        runtime = select_runtime(self.num_threads, self.device, self.cpu_dtype, self.cuda_graphs)
        kind = {
            TaskType.TEXT_EMBEDDING: TextEmbeddingModel,
            TaskType.SPARSE_EMBEDDING: SparseEmbeddingModel,
            TaskType.RERANK: RerankModel,
            TaskType.EMBEDDING: ImageTextEmbeddingModel,
        }[self.config.task_type]
        try:
            model = kind(path, runtime)
        except (OSError, ValueError, KeyError) as exc:
            raise status_exception(
                f"Could not load model [{self.model_id}] for task type [{self.config.task_type}] from [{path}]: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self.running_on = {"engine": "torch", "quantization": "none"}
        if self.config.task_type is TaskType.EMBEDDING:  # two towers: see multimodal
            if self.engine.quantization == "int8":
                raise status_exception(f"int8 quantization is not offered for image-and-text models such as "
                                       f"[{self.model_id}]")
            if self.engine.wants_onnx and not runtime.on_gpu and runtime.dtype == torch.float32:
                self.running_on = model.use_onnx(self.num_threads, self.cache_dir)
            return model
        # GPUs keep torch (bf16, SDPA); so does a CPU asked for bfloat16.
        if self.engine.wants_onnx and not runtime.on_gpu and runtime.dtype == torch.float32:
            from .onnx_runtime import switch_to_onnx

            self.running_on = switch_to_onnx(model, self.engine, threads=self.num_threads, cache_dir=self.cache_dir,
                                             lanes_max_memory=self.lanes_max_memory)
        elif self.engine.quantization == "int8":
            raise status_exception(f"int8 quantization runs on CPU with ONNX Runtime in float32; model "
                                   f"[{self.model_id}] runs on {runtime.device} in {runtime.dtype}")
        elif runtime.on_gpu and runtime.cuda_graphs:
            agreement = model.use_cuda_graphs()
            if agreement is not None:
                self.running_on.update(cuda_graphs=True, cosine=agreement)
        return model

    def _input_type_prefixes(self, model: Any) -> dict[str, str]:
        """input_type -> text prefix: the model's own prompts, else E5's."""
        prompts: dict[str, str] = getattr(model, "prompts", {}) or {}
        query = prompts.get("query") or prompts.get("search_query")
        passage = prompts.get("passage") or prompts.get("document") or prompts.get("search_document")
        if query is None and passage is None and is_e5(self.model_id, self.model_name):
            query, passage = "query: ", "passage: "
        prefixes = {}
        if query:
            prefixes.update(search=query, internal_search=query)
        if passage:
            prefixes.update(ingest=passage, internal_ingest=passage)
        for name in ("classification", "clustering"):
            if prompts.get(name):
                prefixes[name] = prompts[name]
        return prefixes

    def describe(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        described = dict(self._model.describe())
        if self.config.task_type in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
            described.setdefault("similarity", "cosine")
        return described

    # ---- inference -----------------------------------------------------------------------
    async def _tokenize(self, fn: Any, *args: Any) -> Any:
        count = len(args[-1])
        if count <= _TOKENIZE_INLINE_MAX:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        model, batcher = self._model, self._batcher
        if model is None or batcher is None:
            raise status_exception(f"inference endpoint [{self.config.inference_id}] is not ready yet", 503)
        if len(request.input) > self.max_inputs:
            raise ElasticsearchError(
                400, "action_request_validation_exception",
                f"Validation Failed: 1: Field [input] has [{len(request.input)}] entries, more than the "
                f"[{self.max_inputs}] one request to [{self.config.inference_id}] may carry;",
            )
        task = self.config.task_type
        if task is TaskType.EMBEDDING:
            return await self._embed_contents(model, batcher, request)
        if task is TaskType.TEXT_EMBEDDING:
            prefix = self._prefixes.get(request.input_type or "", "")
            texts = [prefix + text for text in request.input] if prefix else request.input
            vectors = await batcher.submit(await self._tokenize(model.encode_texts, texts), request.timeout)
            return TextEmbeddings(vectors)
        if task is TaskType.SPARSE_EMBEDDING:
            items = await self._tokenize(model.encode_texts, request.input)
            weights = await batcher.submit(items, request.timeout)
            return SparseEmbeddings([
                SparseEmbedding(embedding, item.truncated) for item, embedding in zip(items, weights)
            ])
        if request.query is None:
            raise ElasticsearchError(400, "action_request_validation_exception",
                                     "Validation Failed: 1: Field [query] cannot be null for task type [rerank];")
        items = await self._tokenize(model.encode_pairs, request.query, request.input)
        scores = await batcher.submit(items, request.timeout)
        return rank(request.input, scores, request.task_settings,
                    with_text=returns_documents(self.config, request.task_settings))

    async def _embed_contents(self, model: Any, batcher: DynamicBatcher, request: InferenceRequest) -> Embeddings:
        """One vector per content group: texts and images read, other kinds refused."""
        contents = request.contents or tuple((ContentItem(TEXT, text),) for text in request.input)
        check_contents(self.config.service, contents, kinds=(TEXT, IMAGE), several_items=True)
        with_images = any(item.type == IMAGE for group in contents for item in group)
        # Decoding and resizing images is work for a thread, as tokenizing many texts is.
        if with_images or len(contents) > _TOKENIZE_INLINE_MAX:
            items = await asyncio.to_thread(model.encode_contents, contents)
        else:
            items = model.encode_contents(contents)
        vectors = await batcher.submit(items, request.timeout)
        return Embeddings(model.combine(contents, vectors))


def rank(documents: list[str], scores: list[float], task_settings: Mapping[str, Any], *, with_text: bool) -> Ranking:
    """Elasticsearch's rerank order: best first, ties by input order, ``top_n`` long."""
    order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
    top_n = task_settings.get("top_n")
    if top_n:
        order = order[: int(top_n)]
    return Ranking([RankedDocument(i, scores[i], documents[i] if with_text else None) for i in order])


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _set_threads(count: int) -> None:
    if not _has_torch():  # ONNX Runtime's sessions take their thread count themselves
        return
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(count)
