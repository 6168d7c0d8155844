"""ONNX Runtime session construction shared by the backbone and head graphs: threads, providers, options."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import BundleError, InputError


def available_cpus() -> int:
    """CPUs this process may really use: the affinity mask, capped by a cgroup v2/v1 CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota + 0.999)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def make_session(
    path: str | Path,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    session_options=None,
):
    """An InferenceSession with a thread count from the CPU quota and validated providers."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = list(providers) if providers else ["CPUExecutionProvider"]
    for p in providers:
        if p not in available:
            raise InputError(f"execution provider {p!r} is not available; available: {', '.join(available)}")
    if session_options is None:
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = threads if threads else available_cpus()
        session_options.inter_op_num_threads = 1
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    elif threads:
        session_options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), session_options, providers=providers)
    except Exception as e:  # ORT raises its own Fail/InvalidGraph types
        raise BundleError(f"ONNX Runtime cannot load {path}: {e}") from e
    release_freed_memory()
    return session


def release_freed_memory() -> None:
    """Hand memory freed while loading back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Loading a graph frees its parsed protobuf after the weights are placed; depending on which thread's malloc arena
    held it, glibc may keep ~170 MB of it (SmolLM2's graph) as free heap, which then counts as resident memory for
    the life of the process. Measured: 468 -> 288 MiB of anonymous memory after loading the default bundle."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl or another libc: nothing to do
        pass
