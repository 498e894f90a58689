"""The commands: ``python -m lbr_utils.cli.reproduce`` (run the chapters, build the book),
``python -m lbr_utils.cli.report`` (rewrite the reproduction report), ``python -m lbr_utils.cli.train_lbr``
(train and export one LBR embedder). ``pip install`` also puts them on the PATH as ``lbr-reproduce``,
``lbr-report`` and ``lbr-train``."""
