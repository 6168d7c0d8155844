"""Reference scores shipped beside a head: a clean export must reproduce them (score for score, within 1e-6).

    python -m unspoken.export.reference BUNDLE_DIR HEAD_DIR   # writes HEAD_DIR/reference_scores.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REFERENCE_FILE = "reference_scores.json"
REFERENCE_INPUTS = (
    ("I used to hate this product, but honestly now I love it.",
     ("The writer currently likes the product.", "The writer likes the product less than before.",
      "The text is about a car.", "The writer asks for a refund.")),
    ("A: Can you send me the report by Friday?\nB: I'm not sure I'll have the numbers by then.",
     ("B agrees to send the report by Friday.", "B expresses uncertainty.", "The reply answers the question.")),
    ("If the train hadn't been late, I would have made the meeting.",
     ("The writer made the meeting.", "The text describes a hypothetical situation.")),
)


def reference_scores(bundle: str | Path) -> list[dict]:
    from unspoken.runtime import Classifier

    clf = Classifier(bundle)
    out = []
    for content, criteria in REFERENCE_INPUTS:
        for criterion, p in zip(criteria, clf.score(content, list(criteria))):
            out.append({"content": content, "criterion": criterion, "probability": p})
    return out


def write_reference(bundle: str | Path, head_dir: str | Path) -> Path:
    path = Path(head_dir) / REFERENCE_FILE
    path.write_text(json.dumps(reference_scores(bundle), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_reference(sys.argv[1], sys.argv[2]))
