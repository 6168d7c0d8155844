"""`unspoken serve`, tested as a real server process on 127.0.0.1 over HTTP: scores equal the library's, every
malformed input is a 422 naming its field, oversized bodies 413, a full queue 429 with Retry-After (never 5xx),
micro-batches form under concurrent load, SIGTERM lets in-flight requests finish, and the committed OpenAPI schema
is the app's. Tiny bundle; about half a minute on two busy cores."""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import needs_export

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from unspoken.runtime.serve.loadtest import ServerProcess, call, free_port, metric_value, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ("llama", "content-first")
COMMON = ["--threads", "1"]


def post(url, path, body, **kw):
    status, headers, data = call(url, "POST", path, body, **kw)
    return status, headers, json.loads(data) if data else None


def short_requests(n):
    return [{"content": f"Note {i}: I used to hate this product, but now I love it.",
             "criteria": [f"The writer likes it ({i % 5})."]} for i in range(n)]


@pytest.fixture(scope="module")
def bundle(tiny_bundles):
    return tiny_bundles[BUNDLE]


@pytest.fixture(scope="module")
def server(bundle):
    with ServerProcess(["--bundle", str(bundle), *COMMON, "--max-batch", "8", "--max-wait-ms", "5",
                        "--max-body-bytes", "65536"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def library(bundle):
    from unspoken.runtime import Classifier

    return Classifier(bundle)


@needs_export
def test_score_equals_the_library(server, library, bundle):
    from unspoken.runtime.manifest import sha256_file

    criteria = ["The writer likes it.", "It is about cars."]
    status, _, out = post(server.url, "/v1/score", {"content": "I used to hate it, now I love it.",
                                                     "criteria": criteria})
    assert status == 200, out
    assert out["probabilities"] == pytest.approx(library.score("I used to hate it, now I love it.", criteria),
                                                 abs=1e-6)
    assert out["criteria"] == criteria and out["truncated"] is False
    assert out["bundle"] == sha256_file(bundle / "manifest.json")
    assert set(out["timing_ms"]) == {"queue", "inference", "total"}
    assert out["timing_ms"]["total"] >= out["timing_ms"]["inference"] >= 0


@needs_export
def test_batch_endpoint_answers_in_order(server, library):
    items = [{"content": "Rain all week.", "criteria": ["About weather.", "Likes it."]},
             {"content": "I love this phone.", "criteria": ["Likes it."], "truncate": True},
             {"content": "Ünïcödé 🎉", "criteria": ["Has emoji."]}]
    status, _, out = post(server.url, "/v1/score/batch", {"items": items})
    assert status == 200, out
    assert [r["criteria"] for r in out["results"]] == [i["criteria"] for i in items]
    for got, item in zip(out["results"], items):
        assert got["probabilities"] == pytest.approx(library.score(item["content"], item["criteria"]), abs=1e-6)
        assert got["truncated"] is False


@needs_export
def test_truncate_cuts_over_long_content_and_says_so(server, library):
    long = "I used to hate this product, but honestly now I love it. " * 200  # over the tiny backbone's 2,048 tokens
    criteria = ["The writer likes it.", "It is about cars."]
    status, _, out = post(server.url, "/v1/score", {"content": long, "criteria": criteria})
    assert status == 422 and out["error"]["field"] == "content", out
    assert "truncate" in out["error"]["message"]
    status, _, out = post(server.url, "/v1/score", {"content": long, "criteria": criteria, "truncate": True})
    assert status == 200, out
    assert out["truncated"] is True
    assert out["probabilities"] == pytest.approx(library.score(long, criteria, truncate=True), abs=1e-6)
    items = [{"content": "Short and fine.", "criteria": ["Likes it."], "truncate": True},
             {"content": long, "criteria": ["Likes it."], "truncate": True}]
    status, _, out = post(server.url, "/v1/score/batch", {"items": items})
    assert status == 200, out
    assert [r["truncated"] for r in out["results"]] == [False, True]
    status, _, out = post(server.url, "/v1/score/batch", {"items": [items[0], {**items[1], "truncate": False}]})
    assert status == 422 and out["error"]["field"] == "items[1].content", out


@needs_export
def test_health_readiness_and_metrics(server):
    assert call(server.url, "GET", "/healthz")[0] == 200
    status, _, body = call(server.url, "GET", "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    post(server.url, "/v1/score", {"content": "hello", "criteria": ["greets"]})
    text = call(server.url, "GET", "/metrics")[2].decode()
    for name in ("unspoken_http_requests_total", "unspoken_http_request_duration_seconds_bucket",
                 "unspoken_batch_size_bucket", "unspoken_queue_depth", "unspoken_ready 1.0"):
        assert name in text
    assert metric_value(text, "unspoken_http_requests_total", 'route="/v1/score",status="200"') >= 1


@needs_export
@pytest.mark.parametrize("path,body,field", [
    ("/v1/score", {"content": "   ", "criteria": ["ok"]}, "content"),
    ("/v1/score", {"content": "text", "criteria": ["ok", "\t "]}, "criteria[1]"),
    ("/v1/score", {"content": "text", "criteria": []}, "criteria"),
    ("/v1/score", {"content": "text", "criteria": ["ok", 3]}, "criteria[1]"),
    ("/v1/score", {"content": 5, "criteria": ["ok"]}, "content"),
    ("/v1/score", {"content": "text"}, "criteria"),
    ("/v1/score", {"content": "text", "criteria": "not a list"}, "criteria"),
    ("/v1/score", {"content": "text", "criteria": ["ok"], "truncate": "yes"}, "truncate"),
    ("/v1/score", {"content": "text", "criteria": ["ok"], "criterion": "typo"}, "criterion"),
    ("/v1/score", ["not", "an", "object"], "body"),
    ("/v1/score", {"content": "word " * 3000, "criteria": ["ok"]}, "content"),  # longer than the backbone takes
    ("/v1/score/batch", {"items": []}, "items"),
    ("/v1/score/batch", {"items": [{"content": "ok", "criteria": ["ok"]}, {"content": "ok", "criteria": [" "]}]},
     "items[1].criteria[0]"),
    ("/v1/score/batch", {"items": [{"content": "ok", "criteria": ["ok"]}, {"content": None, "criteria": ["x"]}]},
     "items[1].content"),
])
def test_malformed_input_is_422_naming_the_field(server, path, body, field):
    status, _, out = post(server.url, path, body)
    assert status == 422, out
    assert out["error"]["type"] == "invalid_input" and out["error"]["field"] == field, out


@needs_export
def test_invalid_json_oversized_and_non_json_bodies(server):
    status, _, out = post(server.url, "/v1/score", None, raw=b'{"content": "x",')
    assert status == 422 and out["error"]["field"] == "body" and "not valid JSON" in out["error"]["message"]
    status, _, out = post(server.url, "/v1/score", {"content": "x" * 70_000, "criteria": ["ok"]})
    assert status == 413 and out["error"]["type"] == "body_too_large"
    status, _, out = post(server.url, "/v1/score", None, raw=b"content=x", headers={"Content-Type": "text/plain"})
    assert status == 415
    assert call(server.url, "GET", "/healthz")[0] == 200  # still serving


@needs_export
def test_micro_batches_form_under_concurrent_load(server, bundle):
    """8 clients, fixed request count: the batched server must actually form batches. Throughput against batch
    size 1 is printed; the >= 1.5x target is measured by benchmarks/serve_load.py (see the README: on a tiny bundle
    HTTP overhead dominates, on the real one on 2 CPU cores the GEMMs are already compute-bound)."""
    bodies = short_requests(160)
    with ServerProcess(["--bundle", str(bundle), *COMMON, "--max-batch", "1"]) as single:
        figures = {}
        for name, srv in (("batch 1", single), ("batched", server), ("batch 1", single), ("batched", server)):
            before = call(srv.url, "GET", "/metrics")[2].decode()
            result = run_load(srv.url, bodies, concurrency=8)
            after = call(srv.url, "GET", "/metrics")[2].decode()
            assert result.statuses == {200: len(bodies)}, result.statuses
            batches = (metric_value(after, "unspoken_batch_size_count")
                       - metric_value(before, "unspoken_batch_size_count"))
            items = metric_value(after, "unspoken_batch_size_sum") - metric_value(before, "unspoken_batch_size_sum")
            figures.setdefault(name, []).append((result.throughput, items / batches))
    print("\nthroughput (req/s, mean batch):", figures)
    assert all(mean == 1.0 for _, mean in figures["batch 1"])
    assert all(mean >= 2.0 for _, mean in figures["batched"]), figures


@needs_export
def test_overload_answers_429_with_retry_after_never_5xx(bundle):
    with ServerProcess(["--bundle", str(bundle), *COMMON, "--max-batch", "4", "--max-wait-ms", "2",
                        "--max-queue", "8"]) as srv:
        result = run_load(srv.url, short_requests(240), concurrency=32)
        assert set(result.statuses) <= {200, 429}, result.statuses  # no 5xx, no dropped connection
        assert result.statuses[429] > 0 and result.statuses[200] > 0, result.statuses
        status, _, out = post(srv.url, "/v1/score", {"content": "still here?", "criteria": ["ok"]})
        assert status == 200, out
        text = call(srv.url, "GET", "/metrics")[2].decode()
        assert metric_value(text, "unspoken_http_requests_total", 'route="/v1/score",status="429"') \
            == result.statuses[429]
        assert "Traceback" not in srv.output()


@needs_export
def test_sigterm_finishes_in_flight_requests(bundle):
    items = [{"content": f"Item {i}: " + "a long enough note about phones and cafes " * 3,
              "criteria": ["Likes it.", "About phones.", "About cafes.", "Is short."]} for i in range(256)]
    srv = ServerProcess(["--bundle", str(bundle), *COMMON, "--max-batch", "4", "--max-queue", "512"]).start()
    try:
        answer = {}
        worker = threading.Thread(target=lambda: answer.update(r=post(srv.url, "/v1/score/batch", {"items": items})))
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the request is being scored
            text = call(srv.url, "GET", "/metrics")[2].decode()
            if metric_value(text, "unspoken_scored_items_total") > 0:
                break
            time.sleep(0.01)
        assert worker.is_alive(), "the request finished before SIGTERM; make it bigger"
        code = srv.stop(signal.SIGTERM)
        worker.join(60)
        status, _, out = answer["r"]
        assert status == 200 and len(out["results"]) == len(items)
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
        assert "Finished server process" in srv.output() and "Traceback" not in srv.output()
    finally:
        srv.__exit__()


def test_unloadable_bundle_exits_2_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "unspoken.runtime.cli", "serve", "--bundle", str(tmp_path / "nope"),
                          "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args,message", [
    (["--max-batch", "0"], "--max-batch must be at least 1"),
    (["--max-batch", "8", "--max-queue", "4"], "--max-queue must be at least --max-batch"),
])
def test_bad_flags_exit_2(args, message):
    res = subprocess.run([sys.executable, "-m", "unspoken.runtime.cli", "serve", *args], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_not_ready_until_the_bundle_is_loaded(tmp_path):
    from fastapi.testclient import TestClient

    from unspoken.runtime.serve.app import create_app

    release = threading.Event()

    class Slow:  # a stand-in classifier whose load the test controls
        bundle_dir = tmp_path

        def __init__(self):
            release.wait(10)

        def prepare(self, content, criteria):
            return list(criteria)

        def score_prepared(self, prepared):
            return [[0.5] * len(p) for p in prepared]

    (tmp_path / "manifest.json").write_text("{}")
    with TestClient(create_app(classifier_factory=Slow)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["status"] == "loading"
        res = client.post("/v1/score", json={"content": "x", "criteria": ["y"]})
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.post("/v1/score", json={"content": "x", "criteria": ["y", "z"]}).json()["probabilities"] \
            == [0.5, 0.5]


def test_committed_openapi_schema_is_the_apps():
    from unspoken.runtime.serve.app import create_app

    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == create_app().openapi(), \
        "docs/openapi.json is stale: regenerate it with `unspoken serve --openapi docs/openapi.json`"


def test_serving_imports_no_torch():
    code = ("import sys, unspoken.runtime.serve.app, unspoken.runtime.serve.server; "
            "print([m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'sklearn', 'ray')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@needs_export
def test_prefix_cache_metrics(bundle):
    """--prefix-cache-mb reaches the classifier and /metrics reports its hits."""
    with ServerProcess(["--bundle", str(bundle), *COMMON, "--prefix-cache-mb", "4"]) as srv:
        for criteria in (["Likes it."], ["Mentions rain.", "Is short."]):
            body = {"content": "Rain all week, and I love it.", "criteria": criteria}
            assert post(srv.url, "/v1/score", body)[0] == 200
        text = call(srv.url, "GET", "/metrics")[2].decode()
    assert metric_value(text, "unspoken_prefix_cache_hits") == 1
    assert metric_value(text, "unspoken_prefix_cache_misses") == 1
    assert metric_value(text, "unspoken_prefix_cache_entries") == 1
    assert metric_value(text, "unspoken_prefix_cache_bytes") > 0
