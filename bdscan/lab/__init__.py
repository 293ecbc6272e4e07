"""Attack lab: makes backdoored models for tests, examples and benchmarks."""
