"""Every place that patches or subclasses the internals of kserve, Starlette, FastAPI, uvicorn
or grpc.

Each module bends one thing, at a hook the upstream code itself calls, and states what it
relies on in a check that tests/test_upstream.py or tests/test_upstream_shapes.py runs: an
upstream release that changes that shape fails there, loudly, rather than in production.
"""
