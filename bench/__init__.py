"""Benchmarks (not tests): they measure and report; `python -m bench --help`."""
