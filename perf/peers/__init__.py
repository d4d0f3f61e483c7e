"""The servers `perf/bench.py` measures this project against."""
