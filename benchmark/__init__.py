"""Benchmark harness: any Segmenter on any dataset → per-object records → the paper's tables and plots.

Light modules (no torch at import): benchmark.datasets, benchmark.metrics, benchmark.records.
"""
