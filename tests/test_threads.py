"""torch's thread count follows the CPU quota of the container, not the node's core count."""

from __future__ import annotations

import os

import pytest
import torch

from predictor.runtime import threads
from predictor.runtime.threads import cgroup_cpu_quota, set_torch_threads, usable_cpus


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


def test_torch_gets_the_usable_cpus_unless_the_operator_said(monkeypatch, restore_torch_threads):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    assert set_torch_threads({}) == 1 == torch.get_num_threads()
    torch.set_num_threads(2)
    assert set_torch_threads({"OMP_NUM_THREADS": "2"}) == 2
