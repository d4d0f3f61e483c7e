"""The wire protocols: V1 and V2 (Open Inference) requests to rows, rows to answers."""
