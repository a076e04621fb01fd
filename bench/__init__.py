"""Benchmarks: ``make bench`` (``python -m bench``). Figures and ratios, measured in-process
against baselines run in the same process on the same data."""
