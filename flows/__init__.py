"""Prefect flows: one module per job of DESIGN.md, each small and reading top to bottom."""
