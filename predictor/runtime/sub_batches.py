"""Split one padded batch into length-homogeneous sub-batches when padding costs more than calls.

A transformer's forward costs roughly ``rows x padded_width`` token-steps plus a fixed cost per
call. The engine groups texts of similar length, but a batch can still mix 10- and 20-token
texts, and every row then pays for the longest (measured under load: 21% of the token-steps
were padding). On CPU, where there is no parallel hardware idling on a small batch, splitting
the batch by length is cheaper as soon as the padding saved outweighs the extra call's fixed
cost. ``plan`` finds the cheapest split exactly (dynamic programming over the sorted lengths,
at most a few thousand steps for a 64-row batch); GPUs reward big batches more than they are
hurt by padding, so only CPU engines wrap their runner in ``SplitByLength``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from predictor.core.ports import LoadedRunner, StageObserver

T = TypeVar("T")
R = TypeVar("R")


def plan(lengths: Sequence[int], call_cost_tokens: float) -> list[list[int]]:
    """Row indices of each sub-batch, shortest first; one group when splitting does not pay.

    ``call_cost_tokens``: the fixed cost of one forward call, in token-steps of this model.
    """
    n = len(lengths)
    order = sorted(range(n), key=lengths.__getitem__)
    sorted_lengths = [lengths[i] for i in order]
    longest = sorted_lengths[-1] if n else 0
    if n < 2 or n * longest - sum(sorted_lengths) <= call_cost_tokens:
        return [list(range(n))]  # even all the padding costs less than one more call
    # best[j]: the cheapest cost of rows order[:j]; cut[j]: where its last group starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        width = sorted_lengths[end - 1]  # the group order[start:end] is padded to its last row
        for start in range(end):
            cost = best[start] + (end - start) * width + call_cost_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    groups.reverse()
    return groups


def run_in_sub_batches(items: Sequence[T], lengths: Sequence[int],
                       call_cost_tokens: float | None,
                       run: Callable[[Sequence[T]], Sequence[R]]) -> list[R]:
    """``run`` over the planned sub-batches, results in the items' order (``None``: one call)."""
    if call_cost_tokens is None:
        return list(run(items))
    groups = plan(lengths, call_cost_tokens)
    if len(groups) == 1:
        return list(run(items))
    results: list[R | None] = [None] * len(items)
    for group in groups:
        for index, result in zip(group, run([items[i] for i in group]), strict=True):
            results[index] = result
    return results  # type: ignore[return-value]


class SplitByLength:
    """Runs a runner's batches as the sub-batches ``plan`` finds (the engine's runner on CPU).

    It stands in for the runner it wraps: a ``LoadedRunner`` (``predictor/core/ports.py``)
    with the wrapped runner's facts (fixed once a runner is built); ``observe_stage`` is read
    and set through, on the wrapped runner, which reports the stages. ``call_cost_tokens`` is
    None until ``measure()`` ran on the worker thread: a batch is then one call, as it is for
    the wrapped runner itself.
    """

    def __init__(self, runner: LoadedRunner):
        self.runner = runner
        self.device = runner.device
        self.retryable_errors = runner.retryable_errors
        self.family = runner.family
        self.max_length = runner.max_length
        self.precision = runner.precision
        self.half = runner.half
        self.call_cost_tokens: float | None = None

    @property
    def observe_stage(self) -> StageObserver | None:
        return self.runner.observe_stage

    @observe_stage.setter
    def observe_stage(self, observe: StageObserver | None) -> None:
        self.runner.observe_stage = observe

    def forward_shape(self, rows: int, width: int) -> None:
        self.runner.forward_shape(rows, width)

    # -- batches -----------------------------------------------------------------------
    def measure(self) -> float:
        self.call_cost_tokens = measure_call_cost(self.runner.forward_shape)
        return self.call_cost_tokens

    def run_batch(self, items: Sequence[Any]) -> list[Any]:
        return run_in_sub_batches(items, [len(item) for item in items], self.call_cost_tokens,
                                  self.runner.run_batch)


def measure_call_cost(forward: Callable[[int, int], object], *, width: int = 16,
                      rows: int = 16, repeats: int = 3) -> float:
    """The fixed cost of one ``forward(rows, width)`` call, in token-steps.

    Times one row and ``rows`` rows of ``width`` tokens (best of ``repeats``, after a warm-up
    call) and fits ``time = cost_per_token * (tokens + call_cost)``.
    """
    def best(n_rows: int) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            forward(n_rows, width)
            times.append(time.perf_counter() - started)
        return min(times)

    forward(rows, width)
    one, many = best(1), best(rows)
    per_token = (many - one) / ((rows - 1) * width)
    if per_token <= 0:  # too noisy to tell: assume calls are cheap, split freely
        return float(width)
    return min(max(one / per_token - width, 0.0), 1024.0)
