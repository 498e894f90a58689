"""Geometry of embedding sets, checked by hand."""

import numpy as np
import pytest

from lbr_utils.geometry import separation_ratio


def test_separation_ratio_by_hand():
    # Unit vectors at angles: q_i = d_i exactly, so positives have cosine 1.
    angles = np.array([0.0, np.pi / 2, np.pi])
    q = np.stack([np.cos(angles), np.sin(angles)], 1)
    neg = np.array([0.0, -1.0, 0.0, 0.0, -1.0, 0.0])  # cos of 90, 180, 90, 90, 180, 90 degrees
    assert separation_ratio(q, q) == pytest.approx((1 - neg.mean()) / neg.std())
    with pytest.raises(ValueError):
        separation_ratio(q[:1], q[:1])
