"""Scoring thousands of criteria for one content keeps memory flat: the process's peak resident set with 2,000
criteria exceeds the peak with 200 by less than a fixed bound, each measured in a fresh subprocess by
benchmarks/memory.py."""

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import needs_export

pytestmark = [needs_export, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")]

BOUND_MIB = 16.0  # 1,800 extra criteria may add ids and scores (~2 KB each), not KV or hidden states (~1 MB each here)


def _memory_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "memory.py"
    spec = importlib.util.spec_from_file_location("memory_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_memory_is_flat_in_the_number_of_criteria(tiny_bundles):
    bench = _memory_benchmark()
    bundle = str(tiny_bundles[("llama", "content-first")])
    few, many = (bench.measure(bundle, n, threads=1) for n in (200, 2000))
    assert many["peak_rss_mib"] - few["peak_rss_mib"] < BOUND_MIB, (few, many)
    # The measurement sees per-criterion memory when there is some: one chunk holding all 200 criteria (their KV
    # cache and hidden states at once) lifts the peak far above the bound.
    unchunked = bench.measure(bundle, 200, chunk_size=200, threads=1)
    assert unchunked["peak_rss_mib"] - few["peak_rss_mib"] > 2 * BOUND_MIB, (few, unchunked)
