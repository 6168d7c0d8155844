"""Throughput of `unspoken serve` with micro-batching against batch size 1, and what overload does.

    python benchmarks/serve_load.py [--bundle DIR] [--requests 400] [--concurrency 8] [--rounds 3]
                                    [--configs 1:0,8:2,16:2] [--content short|long] [--criteria-per-request 1]
                                    [--threads 1]
                                    [--out benchmarks/results/serve_load.json]

Each config is ``max_batch:max_wait_ms``. One server per config runs for the whole benchmark; rounds interleave the
configs (A B C A B C ...) so a machine whose load drifts hurts them alike, and the median round is reported. Per
config: requests/s, p50/p95 latency, mean batch size (from /metrics) and the server's CPU time per request (from
/proc; unlike wall time it barely moves when other processes compete for the cores). Then an overload run: 32
clients against a queue of 8 items, counting 429s, 5xx and connection errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from latency import CONTENT, CRITERIA, _versions  # noqa: E402

from unspoken.runtime.serve.loadtest import ServerProcess, call, metric_value, run_load  # noqa: E402

SHORT = "I used to hate this product, but honestly now I love it."


def payloads(n: int, content: str, criteria: int = 1) -> list[dict]:
    """Distinct requests of ``criteria`` criteria each (micro-batching joins requests: single-criterion items share
    full passes; items with several criteria share one padded prefill and mixed continuation passes)."""
    base = SHORT if content == "short" else CONTENT
    return [{"content": f"{base} (#{i})", "criteria": [CRITERIA[(i + j) % len(CRITERIA)] for j in range(criteria)]}
            for i in range(n)]


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def batch_stats(url: str) -> tuple[float, float]:
    text = call(url, "GET", "/metrics")[2].decode()
    return metric_value(text, "unspoken_batch_size_sum"), metric_value(text, "unspoken_batch_size_count")


def measure(servers: dict, bodies: list[dict], concurrency: int, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, srv in servers.items():
            run_load(srv.url, bodies[: 2 * concurrency], concurrency=concurrency)  # warm the connection path
            items0, batches0 = batch_stats(srv.url)
            cpu0 = cpu_seconds(srv.proc.pid)
            result = run_load(srv.url, bodies, concurrency=concurrency)
            cpu1 = cpu_seconds(srv.proc.pid)
            items1, batches1 = batch_stats(srv.url)
            row = result.summary()
            row["mean_batch"] = round((items1 - items0) / max(1.0, batches1 - batches0), 2)
            if cpu0 is not None and cpu1 is not None:
                row["server_cpu_ms_per_request"] = round((cpu1 - cpu0) / len(bodies) * 1e3, 3)
            runs[name].append(row)
            print(f"  {name:>10}: {json.dumps(row)}", file=sys.stderr)
    out = {}
    for name, rows in runs.items():
        median = statistics.median(r["throughput_rps"] for r in rows)
        out[name] = {"median_throughput_rps": median, "rounds": rows}
        if all("server_cpu_ms_per_request" in r for r in rows):
            out[name]["median_server_cpu_ms_per_request"] = statistics.median(
                r["server_cpu_ms_per_request"] for r in rows)
    return out


def overload(common: list[str], bodies: list[dict]) -> dict:
    with ServerProcess([*common, "--max-batch", "4", "--max-wait-ms", "2", "--max-queue", "8"]) as srv:
        result = run_load(srv.url, bodies, concurrency=32)
        alive = call(srv.url, "GET", "/healthz")[0] == 200
        code = srv.stop()
    s = result.statuses
    return {"clients": 32, "max_queue": 8, "requests": result.requests, "ok": s.get(200, 0),
            "status_429": s.get(429, 0), "status_5xx": sum(v for k, v in s.items() if isinstance(k, int) and k >= 500),
            "connection_errors": s.get("error", 0), "healthy_after": alive, "exit_status_after_sigterm": code}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", help="bundle folder (default: the default bundle)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="1:0,8:2,16:2", help="comma-separated max_batch:max_wait_ms")
    ap.add_argument("--content", choices=["short", "long"], default="short",
                    help="short: one sentence (~40 prompt tokens); long: the latency benchmark's review (~150)")
    ap.add_argument("--criteria-per-request", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per server")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    bundle = args.bundle
    if bundle is None:
        from unspoken.runtime.default_bundle import ensure_default_bundle

        bundle = str(ensure_default_bundle())
    common = ["--bundle", bundle, "--threads", str(args.threads)]
    bodies = payloads(args.requests, args.content, args.criteria_per_request)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    servers = {}
    try:
        for c in configs:
            max_batch, wait = c.split(":")
            servers[c] = ServerProcess([*common, "--max-batch", max_batch, "--max-wait-ms", wait]).start()
        print(f"{len(bodies)} requests x {args.rounds} rounds, {args.concurrency} clients", file=sys.stderr)
        results = measure(servers, bodies, args.concurrency, args.rounds)
    finally:
        for srv in servers.values():
            srv.__exit__()
    base = results[configs[0]]
    for c in configs[1:]:
        r = results[c]
        r["throughput_vs_" + configs[0]] = round(r["median_throughput_rps"] / base["median_throughput_rps"], 3)
        if "median_server_cpu_ms_per_request" in r and "median_server_cpu_ms_per_request" in base:
            r["cpu_per_request_gain_vs_" + configs[0]] = round(
                base["median_server_cpu_ms_per_request"] / r["median_server_cpu_ms_per_request"], 3)
    report = {
        "bundle": bundle, "content": args.content, "criteria_per_request": args.criteria_per_request,
        "requests": args.requests, "concurrency": args.concurrency,
        "rounds": args.rounds, "threads": args.threads, "cpus": os.cpu_count(), "platform": platform.platform(),
        "versions": _versions(), "configs": results, "overload": overload(common, payloads(400, args.content)),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
