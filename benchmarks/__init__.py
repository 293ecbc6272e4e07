"""Benchmark harness for bdscan (see benchmarks/README.md); not part of the installed package."""
