"""Benchmarks with their baselines (not part of `make test`)."""
