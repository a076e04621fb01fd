"""Normalize -> chunk -> hash/dedupe -> embed -> upsert, and the connector sync runner."""
