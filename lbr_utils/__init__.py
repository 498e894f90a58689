"""Embeddings Meet LLMs: the tested utilities behind the book (see the modules' docstrings)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``lbr_utils.load_embedder(path)`` without importing torch for every ``import lbr_utils``.
    if name in ("load_embedder", "save_embedder"):
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'lbr_utils' has no attribute {name!r}")
