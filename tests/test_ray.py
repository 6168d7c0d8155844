"""Ray integration on a local Ray instance (2 CPUs): a 1,000-row Dataset scored by an actor pool equals local
scoring exactly, and the HTTP app runs as a Ray Serve deployment. Skipped when ray is not installed."""

import json
import urllib.request

import pytest

from conftest import needs_export

ray = pytest.importorskip("ray")

BUNDLE = ("llama", "content-first")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    yield
    ray.shutdown()


@needs_export
def test_dataset_scores_equal_local_scoring(local_ray, tiny_bundles):
    from unspoken.runtime import Classifier
    from unspoken.runtime.ray_integration import score_dataset

    bundle = tiny_bundles[BUNDLE]
    rows = [{"id": i, "content": f"Note {i}: I {'love' if i % 2 else 'hate'} the new {['phone', 'film'][i % 2]}.",
             "criterion": f"The writer likes it ({i % 7})."} for i in range(1000)]
    multi = [{"id": i, "content": f"Rain on day {i}.", "criteria": ["About weather.", f"Day {i} is sunny."]}
             for i in range(40)]
    clf = Classifier(bundle)

    got = score_dataset(ray.data.from_items(rows), bundle, actors=2, batch_size=128).take_all()
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    want = clf.score_many([(r["content"], [r["criterion"]]) for r in rows])
    assert [r["probability"] for r in got] == [w[0] for w in want]
    assert got[0]["criterion"] == rows[0]["criterion"]  # other columns pass through

    got = score_dataset(ray.data.from_items(multi), bundle, actors=1, batch_size=16).take_all()
    assert [list(r["probabilities"]) for r in got] == clf.score_many([(r["content"], r["criteria"]) for r in multi])


@needs_export
def test_bad_row_fails_the_job_naming_it(local_ray, tiny_bundles):
    from unspoken.runtime.ray_integration import score_dataset

    rows = [{"id": "ok", "content": "fine", "criterion": "x"}, {"id": "bad", "content": "  ", "criterion": "x"}]
    with pytest.raises(Exception, match=r"content is empty.*bad"):
        score_dataset(ray.data.from_items(rows), tiny_bundles[BUNDLE], actors=1).take_all()


@needs_export
def test_http_app_as_a_serve_deployment(local_ray, tiny_bundles):
    from ray import serve

    from unspoken.runtime.ray_integration import serve_deployment
    from unspoken.runtime.serve import ServeConfig
    from unspoken.runtime.serve.loadtest import free_port

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(serve_deployment(ServeConfig(bundle=tiny_bundles[BUNDLE], threads=1), num_cpus=0.5),
                  route_prefix="/", blocking=False)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/score", method="POST",
                                     data=json.dumps({"content": "I love it", "criteria": ["likes it"]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as res:
            out = json.loads(res.read())
        assert len(out["probabilities"]) == 1 and out["truncated"] is False
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=60) as res:
            assert json.loads(res.read())["status"] == "ready"
    finally:
        serve.shutdown()
