"""contextd: ranked, freshness-scored, access-scoped context bundles for AI agents."""

import os

__version__ = "0.1.0"

# numpy's BLAS only multiplies small matrices here (near-duplicate checks); its spinning
# threads would otherwise steal the cores from the embedding model on every request.
# Set before numpy loads, which is why it lives in the package's first import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
