"""The development harness: what tests, perf tools and scripts share.

Real processes on loopback (the server, private redis-servers), the payloads of
tests/data/, reading a server's /metrics, free ports, CPU pinning and CPU time per request,
Go durations. Installed with the `tests` and `perf` extras; imported, never path-hacked.
"""
