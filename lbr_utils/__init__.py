"""lbr_utils: the tested package behind *Embeddings Meet LLMs*."""

__version__ = "0.1.0"
