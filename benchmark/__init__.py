"""Benchmark harness: any Segmenter on any dataset → per-object records → the paper's tables and plots.

Light modules (no torch at import): segcore.datasets, segcore.metrics, segcore.records.
"""
