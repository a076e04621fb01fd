"""Syncing connectors: schedules, the connector service, recorded runs, leases and retries.

This is what a worker process runs; ``contextd.ingest`` turns the records into chunks and
vectors.
"""
