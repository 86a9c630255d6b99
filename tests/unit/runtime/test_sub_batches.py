"""Splitting a batch by length: the cheapest plan, results back in order."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from predictor.runtime import sub_batches
from predictor.runtime.sub_batches import measure_call_cost, plan, run_in_sub_batches


def cost_of(groups, lengths, call_cost):
    return sum(len(g) * max(lengths[i] for i in g) + call_cost for g in groups)


def test_uniform_lengths_stay_one_call():
    assert plan([16] * 32, call_cost_tokens=40) == [list(range(32))]


def test_short_and_long_texts_are_split():
    lengths = [500, 12, 490, 10, 15, 505]
    groups = plan(lengths, call_cost_tokens=40)
    assert sorted(map(sorted, groups)) == [[0, 2, 5], [1, 3, 4]]


def test_padding_cheaper_than_a_call_is_kept():
    assert plan([10, 20], call_cost_tokens=40) == [[0, 1]]


@given(st.lists(st.integers(1, 64), min_size=1, max_size=7), st.floats(0, 100))
def test_the_plan_is_optimal_among_contiguous_splits_of_the_sorted_rows(lengths, call_cost):
    groups = plan(lengths, call_cost)
    assert sorted(itertools.chain(*groups)) == list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = min(
        cost_of([order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))],
                lengths, call_cost)
        for k in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), k))
    assert cost_of(groups, lengths, call_cost) <= best + 1e-9


def test_results_come_back_in_the_items_order():
    items = ["a" * n for n in (300, 2, 280, 3, 1, 310)]
    calls = []

    def run(group):
        calls.append(list(group))
        return [item.upper() for item in group]

    out = run_in_sub_batches(items, [len(i) for i in items], 100, run)
    assert out == [item.upper() for item in items]
    assert len(calls) == 2
    calls.clear()
    assert run_in_sub_batches(items, [len(i) for i in items], None, run) == out
    assert calls == [items]


def test_call_cost_is_the_intercept_of_time_against_tokens(monkeypatch):
    clock = {"t": 0.0}

    def fake_forward(rows, width):  # 1 unit per token plus 40 units per call
        clock["t"] += rows * width + 40

    monkeypatch.setattr(sub_batches.time, "perf_counter", lambda: clock["t"])
    assert abs(measure_call_cost(fake_forward) - 40) < 1e-9
