"""LBR's stage 1 and its recipe: training, the config's checks, the pairs of each style."""

import numpy as np
import pytest

from lbr_utils import lbr
from lbr_utils.data import QARecord
from lbr_utils.lbr import GenerativeConfig, train_generative
from lbr_utils.models import build_tiny
from lbr_utils.pooling import bottleneck_ids
from lbr_utils.profiles import get_profile

RECORDS = [QARecord(str(i), "medical", f"question number {i} about fever", f"answer {i} is influenza", str(i))
           for i in range(8)]


@pytest.mark.parametrize("style, bottleneck", [("sft", True), ("sft", False), ("pt", True), ("pt", False)])
def test_stage1_trains_and_lowers_the_loss(style, bottleneck):
    model, tok = build_tiny()
    cfg = GenerativeConfig(style=style, bottleneck=bottleneck, ratio=4, steps=12, batch_size=4, lr=3e-3,
                           max_input=16, max_target=8)
    result = train_generative(model, tok, RECORDS, cfg, show_progress=False)
    assert np.mean(result.losses[-3:]) < np.mean(result.losses[:3])
    assert (len(bottleneck_ids(tok)) == cfg.max_bottleneck) == bottleneck


def test_generative_config_rejects_bad_input():
    with pytest.raises(ValueError, match="style"):
        GenerativeConfig(style="rlhf")
    with pytest.raises(ValueError, match="ratio"):
        GenerativeConfig(ratio=0)
    with pytest.raises(ValueError, match="at least one record"):
        train_generative(*build_tiny(), [], GenerativeConfig())


def test_pt_style_pairs():
    """PT-style IB-GL rebuilds the text from the bottleneck; standard PT is plain language modelling."""
    rec = RECORDS[:1]
    assert GenerativeConfig(style="pt", bottleneck=True).pairs(rec) == [(rec[0].answer, rec[0].answer)]
    assert GenerativeConfig(style="pt", bottleneck=False).pairs(rec) == [("", rec[0].answer)]
    assert GenerativeConfig(style="sft").pairs(rec) == [(rec[0].question, rec[0].answer)]


def test_every_text_the_study_reads_has_trained_bottleneck_tokens():
    """The longest text of stage 2 and of evaluation needs no more bottleneck tokens than stage 1 added."""
    from lbr_utils.masks import bottleneck_count

    for name in ("smoke", "cpu", "gpu"):
        profile = get_profile(name)
        stage1, stage2 = lbr.configs(profile, 0)
        assert bottleneck_count(lbr.max_length(profile) + 1, stage1.ratio) <= stage1.max_bottleneck
        assert stage2.max_length == stage1.max_input == lbr.max_length(profile)
