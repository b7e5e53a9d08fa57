"""Latency: measuring blocks and networks on real runtimes, tables of them, and predictions."""
