"""torch's thread count follows the CPU quota of the container, not the node's core count."""

from __future__ import annotations

import os

import pytest
import torch

from predictor.runtime import threads
from predictor.runtime.threads import cgroup_cpu_quota, torch_threads, usable_cpus, use_cpus_here


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_usable_cpus_is_the_quota_rounded_up_within_the_affinity(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == 64
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    (tmp_path / "cpu.max").write_text("400000 100000\n")
    assert usable_cpus(tmp_path) == 1


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_workers_get_the_usable_cpus_unless_the_operator_said(monkeypatch,
                                                              restore_torch_threads):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    assert torch_threads({}) == 1
    assert torch_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert torch_threads({"OMP_NUM_THREADS": "bogus", "MKL_NUM_THREADS": "2"}) == 2
    assert use_cpus_here({}) == 1 == torch.get_num_threads()


def test_the_model_runs_on_a_worker_with_its_own_threads(m3_dir):
    """load() starts the worker, which takes the CPUs and (on CPU) measures the call cost."""
    from predictor.api.kserve.embedder import EmbedderModel
    from predictor.runtime.host import TorchHost
    from predictor.settings import Settings

    model = EmbedderModel("bge-m3", str(m3_dir),
                          Settings(embedder=str(m3_dir), reranker="none", device="cpu"),
                          host=TorchHost())
    seen = {}
    original = model._prepare_worker

    def recording():
        import threading

        original()
        seen["thread"] = threading.current_thread().name
        seen["threads"] = torch.get_num_threads()

    model._prepare_worker = recording
    model.load()
    assert seen == {"thread": "cpu-worker", "threads": torch_threads()}
    splitter = model.batcher.runner
    assert splitter.call_cost_tokens is not None and splitter.call_cost_tokens >= 0
