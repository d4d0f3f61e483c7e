"""Every place that patches or subclasses kserve, Starlette, uvicorn or grpc internals."""
