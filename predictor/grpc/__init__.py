"""The gRPC front: the grpc.aio server, built by `server`, and what it serves."""
