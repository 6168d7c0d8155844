"""Quality benchmark: the same as ``unspoken eval`` (bundles vs P(yes), embedding and judge baselines).

    python benchmarks/quality.py --per-set 100 --out benchmarks/results/quality
"""

import sys

from unspoken.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
