"""Every place that patches or subclasses kserve's, Starlette's or FastAPI's internals.

Each module bends one thing, at a hook the upstream code itself calls, and states what it
relies on in `check_upstream()`, which tests/test_upstream.py runs: an upstream release
that changes that shape fails there, loudly, rather than in production.
"""
