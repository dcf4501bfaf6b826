"""Prometheus metrics: what is counted (registry.py) and how it is served (web.py)."""
