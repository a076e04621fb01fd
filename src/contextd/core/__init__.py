"""The inner ring: settings, domain types, errors, embedders and vector-store adapters.

Nothing here imports another contextd package; everything else may import this.
"""
