"""Benchmark harness: python -m bench.run (see docs/benchmarks.md). Not part of the tests."""
