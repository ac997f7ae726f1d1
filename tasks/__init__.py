"""Prefect tasks: thin, coarse wrappers (a vendor account or a batch per task) over the library."""
