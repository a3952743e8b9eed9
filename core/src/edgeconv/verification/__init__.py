"""Verification: the runners' contract, the comparison metrics and the benchmark."""
