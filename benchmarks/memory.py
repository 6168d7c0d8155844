"""Peak memory when one content is scored against many criteria: it should stay flat, not grow with the count.

Each count runs in a fresh Python process, so no peak carries over from another: the child loads the bundle, warms
up on the two chunks of longest criteria (the reused buffers reach their working size), notes its resident set,
resets the kernel's high-water mark (``/proc/self/clear_refs``), scores all the criteria in one ``Classifier.score``
call and reads the high-water mark back. Where ``/proc`` is not there, ``ru_maxrss`` stands in (it under-estimates
the growth when loading peaked higher than scoring, and on Linux can carry over the parent's peak).

    python benchmarks/memory.py [--bundle DIR] [--counts 10 100 1000 4000] [--out benchmarks/results/memory.json]

Memory depends on the chunk size and the longest prompt of the call (content plus longest criterion), which sets the
shape of the reused buffers and of ONNX Runtime's arena; the criteria here keep the same lengths at every count so
that what is measured is the count alone.

Figures are in MiB: ``peak_rss_mib`` is the whole process's peak (Python, ONNX Runtime, the graph's weights, one
chunk's KV buffers); ``loaded_rss_mib`` the resident set right after loading; ``scoring_growth_mib`` how far the
big call pushed the peak above the warmed-up resident set. Timings are incidental (measured on whatever else the
machine is doing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import CONTENT, CRITERIA  # noqa: E402  (the latency benchmark's review and criteria)

MIB = 1024 * 1024


def criteria(n: int) -> list[str]:
    """``n`` distinct criteria of realistic length; the same lengths whatever ``n`` (zero-padded numbers), so the
    widest chunk, which sets the size of the reused buffers, does not change with the count."""
    return [f"{CRITERIA[i % len(CRITERIA)]} (variant {i:05d})" for i in range(n)]


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
        return True
    except OSError:
        return False


def child(bundle: str | None, n: int, chunk_size: int | None, threads: int | None) -> dict:
    """Measure one count in this (fresh) process."""
    from unspoken.runtime import Classifier, classifier
    from unspoken.runtime.classifier import DEFAULT_CHUNK

    chunk = chunk_size or DEFAULT_CHUNK
    if chunk_size:  # exactly this many criteria per pass: lift the runtime's rows x tokens bound as well
        classifier.CONTINUATION_TOKENS = 1 << 40
    clf = Classifier(bundle, threads=threads, chunk_size=chunk)
    rss_loaded = (_status_kib("VmRSS") or 0) * 1024
    crit = criteria(n)
    # Warm-up on the longest criteria of the set: the reused buffers reach the widest chunk's shape, so what is left
    # to grow is what depends on the count.
    lengths = [len(ids) for ids in clf.tokenizer.criterion_ids_many(clf.template, crit)]
    longest = sorted(range(n), key=lambda i: -lengths[i])[: min(n, 2 * chunk)]
    clf.score(CONTENT, [crit[i] for i in longest])
    hwm_before = _status_kib("VmHWM")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rss_before = (_status_kib("VmRSS") or 0) * 1024
    reset = hwm_before is not None and _reset_peak()
    t0 = time.perf_counter()
    scores = clf.score(CONTENT, crit)
    seconds = time.perf_counter() - t0
    hwm = _status_kib("VmHWM")
    if reset and hwm is not None:
        growth = hwm * 1024 - rss_before
        peak = max(hwm_before, hwm) * 1024
    else:  # ru_maxrss can carry the parent's peak over fork+exec (Linux), so it is only the fallback
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        growth = peak - maxrss_before
    assert len(scores) == n
    return {
        "criteria": n,
        "chunk_size": chunk,
        "peak_rss_mib": round(peak / MIB, 1),
        "loaded_rss_mib": round(rss_loaded / MIB, 1),
        "warm_rss_mib": round(rss_before / MIB, 1),
        "scoring_growth_mib": round(growth / MIB, 2),
        "measured_by": "VmHWM, reset before the call" if reset and hwm is not None else "ru_maxrss",
        "seconds": round(seconds, 2),
        "ms_per_criterion": round(1000 * seconds / n, 2),
    }


def measure(bundle: str | None, n: int, chunk_size: int | None = None, threads: int | None = None) -> dict:
    """Run ``child`` for ``n`` criteria in a fresh interpreter and return its figures."""
    cmd = [sys.executable, __file__, "--child", str(n)]
    if bundle:
        cmd += ["--bundle", str(bundle)]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    if threads:
        cmd += ["--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"memory child for {n} criteria failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="bundle folder (default: the default bundle)")
    ap.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000, 4000])
    ap.add_argument("--chunk-size", type=int, help="criteria per batched pass (default: the Classifier's, which "
                                                    "also caps rows x tokens per pass; given here, it is exact)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    bundle = str(args.bundle) if args.bundle else None

    if args.child is not None:
        print(json.dumps(child(bundle, args.child, args.chunk_size, args.threads)))
        return
    if bundle is None:  # build the default bundle once, here, not in the first child
        from unspoken.runtime.default_bundle import ensure_default_bundle

        bundle = str(ensure_default_bundle())

    from unspoken.runtime import load_manifest

    manifest, _ = load_manifest(bundle, verify_files=False)
    results = []
    for n in args.counts:
        r = measure(bundle, n, args.chunk_size, args.threads)
        print(f"{n:>6} criteria: peak RSS {r['peak_rss_mib']:8.1f} MiB, scoring grew it {r['scoring_growth_mib']:7.2f} "
              f"MiB, {r['seconds']:.1f} s", file=sys.stderr)
        results.append(r)
    report = {
        "bundle": bundle,
        "backbone": manifest.backbone.name,
        "extraction_layer": manifest.backbone.extraction_layer,
        "template_order": manifest.template.order,
        "content_chars": len(CONTENT),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],  # timings depend on what else runs
        "python": platform.python_version(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
