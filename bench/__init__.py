"""How fast users-api is, against whom: `make bench` (see bench/run.py)."""
