"""Helpers for tests and benchmarks; importing this package needs torch for refnets only."""
