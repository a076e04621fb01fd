"""Query planning, hybrid search, freshness, supersession, de-duplication, packing."""
