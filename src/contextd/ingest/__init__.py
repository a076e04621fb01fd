"""Normalize -> chunk -> hash/dedupe -> embed -> upsert."""
