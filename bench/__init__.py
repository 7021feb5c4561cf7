"""Benchmark suite for the WebSocket hub: ``python -m bench --help``.

The suite starts the server under test itself (ours or the textbook baseline
kept in :mod:`bench.baseline_server`), drives it from several load-generator
processes over loopback and reports throughput, latency, loss, server CPU per
delivery and memory per connection side by side.
"""
