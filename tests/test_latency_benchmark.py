"""benchmarks/latency.py runs end to end on a tiny bundle and writes its JSON, table and plot (no timing is judged
here: figures come from the real benchmark run, never from tests)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import needs_export

pytestmark = needs_export

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


def test_latency_benchmark_writes_every_method_and_target(tiny_bundles, tmp_path):
    out = tmp_path / "latency.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--bundle", str(tiny_bundles[("llama", "content-first")]), "--no-int8",
         "--lengths", "24", "--criteria", "1", "3", "--repeats", "1", "--pair-repeats", "1", "--cold-runs", "1",
         "--threads", "1", "--no-target-cell", "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    report = json.loads(out.read_text())
    assert [c["criteria"] for c in report["cells"]] == [1, 3]
    for cell in report["cells"]:
        assert set(cell["methods"]) == {"hf_full_model", "generation_judge", "criterion_first", "content_first",
                                        "content_first_kv_hit"}
        assert all(r["p50_ms"] > 0 for r in cell["methods"].values())
        assert 0 < cell["prefill"]["attainment"] and cell["flop_bound_ms_per_decision"] > 0
    assert report["cold_start"]["fp32"]["torch_imported"] is False
    assert report["cold_start"]["fp32"]["peak_rss_mib"] > 0 and report["versions"]["onnxruntime"]
    assert "default bundle peak RSS MiB (<= 600)" in report["targets"]
    assert report["many_contents"]["score_many_speedup"] > 0
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "| content tokens | criteria |" in out.with_suffix(".md").read_text()
