"""What the embedder and reranker services share: readiness, tokenising under the process
budget, and submitting work to the engine with its refusals turned into API errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from predictor.core.ports import StageObserver
from predictor.engine import BatchEngine, EngineDraining, QueueFull, QueueTimeout
from predictor.engine.admission import AdmissionTimeout, OverBudget, process_budget
from predictor.errors import (
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    QueueFullError,
)

T = TypeVar("T")


class ServiceLimits(Protocol):
    """The settings a service reads (``predictor.settings.Settings`` has them all): taken as a
    Protocol so that core/ does not import the settings module (flags, env, pydantic)."""

    @property
    def max_input_texts(self) -> int: ...
    @property
    def max_rerank_documents(self) -> int: ...
    @property
    def max_request_tokens(self) -> int: ...
    @property
    def max_colbert_tokens(self) -> int: ...
    @property
    def max_tokenize_chars(self) -> int: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def sparse_token_mapping(self) -> str: ...
    @property
    def sparse_index_space(self) -> int: ...


def always_ready() -> bool:
    return True


class EngineService:
    """A model's service: its name, its engine and the limits of ``settings``.

    ``is_ready``: the lifecycle's word (the KServe model's ``ready``); a request to a model not
    ready is a 503. ``observe_stage``: where the ``tokenize`` stage time goes (metrics).
    """

    kind = "model"

    # Up to this many characters, tokenising on the event loop (a fraction of a millisecond in
    # the Rust tokenizer) is cheaper than the hop to a worker thread and back (1.7-2.5 ms
    # measured on a busy 2-core machine); bigger requests go to a thread, so the loop stays free.
    inline_tokenize_chars = 4096

    def __init__(self, name: str, engine: BatchEngine | None, settings: ServiceLimits, *,
                 is_ready: Callable[[], bool] = always_ready,
                 observe_stage: StageObserver | None = None):
        self.name = name
        self.engine = engine
        self.settings = settings
        self.is_ready = is_ready
        self.observe_stage = observe_stage

    @property
    def max_documents(self) -> int:
        """Documents one rerank request may hold (``--max_rerank_documents``)."""
        return self.settings.max_rerank_documents

    def ensure_ready(self) -> None:
        if not self.is_ready():
            raise NotReadyError(self.name)

    async def tokenize(self, chars: int, tokenize: Callable[..., T], *args: Any) -> T:
        """``tokenize(*args)`` for a request of ``chars`` characters, timed as the tokenise
        stage: inline when small, else on the default executor."""
        started = time.monotonic()
        if chars <= self.inline_tokenize_chars:
            result = tokenize(*args)
        else:
            result = await asyncio.get_running_loop().run_in_executor(None, tokenize, *args)
        if self.observe_stage is not None:
            self.observe_stage("tokenize", time.monotonic() - started)
        return result

    async def admitted_tokenize(self, chars: int, param: str, tokenize: Callable[..., T],
                                *args: Any) -> T:
        """``self.tokenize(chars, tokenize, *args)`` holding ``chars`` of the process's
        tokenising budget (``--max_tokenize_chars``): the memory tokenisers hold at once is
        bounded before any of them starts. Over the whole budget: 413; no room within the
        request timeout: 503 with ``Retry-After``."""
        settings = self.settings
        budget = process_budget("tokenize_chars", settings.max_tokenize_chars)
        try:
            async with budget.hold(chars, settings.request_timeout):
                if chars <= self.inline_tokenize_chars:  # on the loop: nothing to cancel
                    return await self.tokenize(chars, tokenize, *args)
                work = asyncio.ensure_future(self.tokenize(chars, tokenize, *args))
                try:
                    return await asyncio.shield(work)
                except asyncio.CancelledError:  # a thread goes on tokenising: keep its share
                    await asyncio.wait([work])
                    raise
        except OverBudget:
            raise PayloadTooLargeError(
                f"'{param}' has {chars} characters of text; at most {budget.capacity} are "
                "tokenised at once (--max_tokenize_chars, env MAX_TOKENIZE_CHARS). Send it in "
                "smaller requests.", param=param, code="request_too_large") from None
        except AdmissionTimeout:
            raise OverloadedError("The server is busy tokenising other requests; retry "
                                  "shortly.", code="timeout",
                                  headers={"Retry-After": "1"}) from None

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """Queue ``items`` on the engine; its refusals as API errors: queue full 429
        ``queue_full``, timed out 503 ``timeout``, draining 503 ``shutting_down``, each with
        ``Retry-After``."""
        if self.engine is None:
            raise NotReadyError(self.name)
        try:
            return await self.engine.submit(items, [len(item) for item in items])
        except QueueFull as exc:
            raise QueueFullError(f"The server is busy ({exc}); retry shortly.",
                                 code="queue_full", headers={"Retry-After": "1"}) from None
        except QueueTimeout as exc:
            raise OverloadedError(f"The request timed out waiting for the model ({exc}).",
                                  code="timeout", headers={"Retry-After": "1"}) from None
        except EngineDraining:
            raise OverloadedError("The server is shutting down.", code="shutting_down",
                                  headers={"Retry-After": "1"}) from None
