"""contextd: ranked, freshness-scored, access-scoped context bundles for AI agents."""

__version__ = "0.1.0"
