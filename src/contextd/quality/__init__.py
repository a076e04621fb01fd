"""Context quality for analysts: the five metrics, golden-set evaluation, regressions.

Depends only on ``core``, ``memory`` and ``retrieval``; the API and the dashboard render
what this package computes.
"""
