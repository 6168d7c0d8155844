"""The runtime imports and scores with torch, transformers and scikit-learn blocked (fresh interpreter)."""

import json
import subprocess
import sys
from importlib.metadata import requires

from conftest import needs_export

HEAVY = ["torch", "transformers", "sklearn", "peft", "skl2onnx", "optimum", "onnx", "onnxscript", "unspoken.export"]


def test_heavy_requirements_are_all_behind_the_export_extra():
    for req in requires("unspoken") or []:
        name = req.split(";")[0].strip().split("=")[0].split("<")[0].split(">")[0].strip().lower()
        if name in {"torch", "transformers", "peft", "scikit-learn", "skl2onnx", "optimum", "onnx", "onnxscript"}:
            assert "extra ==" in req.replace("extra==", "extra =="), f"{req} is a base dependency"


def test_import_runtime_pulls_no_heavy_module():
    code = "import sys, unspoken.runtime, unspoken.runtime.cli; print([m for m in sys.modules if m.split('.')[0] in %r])"
    out = subprocess.run([sys.executable, "-c", code % (["torch", "transformers", "sklearn", "peft"],)],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@needs_export
def test_scores_with_heavy_modules_blocked(tiny_bundles):
    bundle = tiny_bundles[("llama", "content-first")]
    code = f"""
import sys, json
for name in {HEAVY!r}:
    sys.modules[name] = None  # any import of these now raises ModuleNotFoundError
from unspoken.runtime import Classifier
clf = Classifier({str(bundle)!r})
print(json.dumps(clf.score("I used to hate it, now I love it.", ["The writer likes it.", "It is about food."])))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
