"""Benchmark every ML-SAN backend side by side; prints one JSON object.

Thin wrapper over ``mlsan-engine bench --json`` (engines/bench.py holds the method):
    python bench/bench_engines.py [--checkpoint PATH] [--data ../shared/data/meld]
"""

import sys

from engines.cli import main

if __name__ == "__main__":
    sys.exit(main(["-q", "bench", "--json", *sys.argv[1:]]))
