"""Performance tooling: the `make bench` comparison, the k6 load sweep and their helpers."""
