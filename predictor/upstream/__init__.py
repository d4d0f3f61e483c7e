"""Every place that patches or subclasses the internals of kserve, Starlette, FastAPI, uvicorn
or grpc.

Each module bends one thing, at a hook the upstream code itself calls, and exercises what it
relies on in a check that tests/test_upstream.py or tests/test_upstream_shapes.py runs: the
real upstream code driven (a data plane serving a tiny model, a protocol on a loopback
connection), never matched against its source text, so an upstream release that changes
that behaviour fails there, loudly, rather than in production.
"""
