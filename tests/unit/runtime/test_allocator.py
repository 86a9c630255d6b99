"""The allocator choice: jemalloc through one re-exec when installed, glibc pinned otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from predictor.runtime import allocator
from predictor.runtime.allocator import allocator_mode, find_jemalloc, use_jemalloc

from server_process import REPO


class Exec(Exception):
    """Raised by the fake execve so the test sees what would have been executed."""


def _fake_execve(path, argv, env):
    raise Exec(path, argv, env)


@pytest.fixture
def on_glibc_with_jemalloc(monkeypatch):
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "glibc")
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: "libjemalloc.so.2")
    monkeypatch.setattr(sys, "platform", "linux")


def test_auto_reexecutes_the_same_command_with_jemalloc_preloaded(on_glibc_with_jemalloc):
    with pytest.raises(Exec) as info:
        use_jemalloc({"LD_PRELOAD": "libother.so", "PATH": "/bin"}, execve=_fake_execve)
    path, argv, env = info.value.args
    assert path == sys.executable and argv[1:] == sys.orig_argv[1:]
    assert env["LD_PRELOAD"] == "libjemalloc.so.2 libother.so" and env["PATH"] == "/bin"
    assert env["BGE_PREDICTOR_ALLOCATOR_REEXECUTED"] == "1"
    assert env["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    with pytest.raises(Exec) as info:
        use_jemalloc({"MALLOC_CONF": "narenas:2"}, execve=_fake_execve)
    assert info.value.args[2]["MALLOC_CONF"] == "narenas:2", "the operator's settings win"


@pytest.mark.parametrize("environ", [
    {"BGE_PREDICTOR_ALLOCATOR": "glibc"},
    {"MALLOC_ARENA_MAX_": "2"},  # the operator tuned glibc: keep it
    {"BGE_PREDICTOR_ALLOCATOR_REEXECUTED": "1"},  # tried once already: no exec loop
])
def test_no_reexec_when_glibc_is_wanted_or_already_tried(on_glibc_with_jemalloc, environ):
    use_jemalloc(environ, execve=_fake_execve)


def test_no_reexec_when_an_allocator_is_already_mapped(monkeypatch):
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "tcmalloc")
    use_jemalloc({}, execve=_fake_execve)


def test_jemalloc_mode_fails_clearly_when_it_cannot_be_had(monkeypatch):
    monkeypatch.setattr(allocator, "loaded_allocator", lambda: "glibc")
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    monkeypatch.setattr(sys, "platform", "linux")
    use_jemalloc({}, execve=_fake_execve)  # auto: stays on glibc
    with pytest.raises(SystemExit, match="apt-get install libjemalloc2"):
        use_jemalloc({"BGE_PREDICTOR_ALLOCATOR": "jemalloc"}, execve=_fake_execve)
    with pytest.raises(SystemExit, match="did not load"):
        use_jemalloc({"BGE_PREDICTOR_ALLOCATOR": "jemalloc",
                      "BGE_PREDICTOR_ALLOCATOR_REEXECUTED": "1"}, execve=_fake_execve)


def test_unknown_mode_is_refused():
    with pytest.raises(SystemExit, match="expected one of auto, jemalloc, glibc"):
        allocator_mode({"BGE_PREDICTOR_ALLOCATOR": "tcmalloc"})


def test_loaded_allocator_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert allocator.loaded_allocator(str(maps)) == "jemalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.loaded_allocator(str(maps)) == "glibc"


def _start_up(env: dict[str, str]) -> subprocess.CompletedProcess:
    """A real `python -m predictor` start that gets past the allocator and exits (no models)."""
    return subprocess.run([sys.executable, "-m", "predictor", "--embedder", "none",
                           "--reranker", "none"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", **env})


def test_the_program_runs_on_jemalloc_when_installed_and_on_glibc_when_asked():
    expected = "jemalloc" if find_jemalloc() else "glibc"
    auto = _start_up({})
    assert f"memory allocator: {expected}" in auto.stderr, auto.stderr[-2000:]
    glibc = _start_up({"BGE_PREDICTOR_ALLOCATOR": "glibc"})
    assert "memory allocator: glibc" in glibc.stderr, glibc.stderr[-2000:]
    assert "mmap threshold pinned" in glibc.stderr
    bad = _start_up({"BGE_PREDICTOR_ALLOCATOR": "bogus"})
    assert bad.returncode != 0 and "expected one of" in bad.stderr


def test_the_served_process_maps_the_allocator_it_reports(server):
    maps = open(f"/proc/{server.process.pid}/maps").read()
    assert ("libjemalloc" in maps) == (find_jemalloc() is not None)
