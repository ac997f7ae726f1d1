"""Typed clients for the five vendor APIs, on the shared HTTP layer in `http`."""
