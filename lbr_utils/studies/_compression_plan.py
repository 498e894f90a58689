"""What chapter 6 compresses and at which ratios: constants that both its quality cells and its timing
cells read, kept apart so that a change to how the compressor is trained does not invalidate the
timings (a cell's key holds the code of every module it imports)."""

DOMAIN = "medical"  # its answer cards carry a short fact (the ICD code) to ask about
RATIOS = (2.0, 4.0, 8.0, 16.0)
CLAIM_RATIO = 8.0
