"""LBR study plumbing: stage-1 training, the run cache, the separation ratio and the verdict rule."""

import numpy as np
import pandas as pd
import pytest

from lbr_utils import lbr_study
from lbr_utils.data import QARecord
from lbr_utils.geometry import separation_ratio
from lbr_utils.lbr import GenerativeConfig, train_generative
from lbr_utils.models import build_tiny
from lbr_utils.pooling import bottleneck_ids
from lbr_utils.profiles import get_profile
from lbr_utils.report import mean_std, paired_differences, verdict

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


def test_a_cell_is_trained_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LBR_RUN_CACHE", str(tmp_path))
    profile = get_profile("smoke", model="tiny")
    stage1, stage2 = lbr_study.configs(profile, 0)
    first = lbr_study.run_cell(profile, "medical", 0, "IB-GL+CL", stage1, stage2)

    def fail(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(lbr_study, "train_contrastive", fail)
    monkeypatch.setattr(lbr_study, "stage1_model", fail)
    again = lbr_study.run_cell(profile, "medical", 0, "same run, other name", stage1, stage2)
    assert again["retrieval"] == first["retrieval"] and again["name"] == "same run, other name"
    assert [row["stage"] for row in first["training"]] == [1, 2]


def test_separation_ratio_by_hand():
    # Unit vectors at angles: q_i = d_i exactly, so positives have cosine 1.
    angles = np.array([0.0, np.pi / 2, np.pi])
    q = np.stack([np.cos(angles), np.sin(angles)], 1)
    neg = np.array([0.0, -1.0, 0.0, 0.0, -1.0, 0.0])  # cos of 90, 180, 90, 90, 180, 90 degrees
    assert separation_ratio(q, q) == pytest.approx((1 - neg.mean()) / neg.std())
    with pytest.raises(ValueError):
        separation_ratio(q[:1], q[:1])


def test_verdict_rule():
    assert verdict([0.1, 0.2, 0.05], +5) == "reproduced"
    assert verdict([0.3, -0.1, 0.1], +5) == "partly"
    assert verdict([-0.3, 0.1], +5) == "not reproduced"
    assert verdict([-0.3, -0.1], -2) == "reproduced"
    with pytest.raises(ValueError):
        verdict([], 1)


def test_seed_summaries():
    table = pd.DataFrame({"model": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "score": [0.5, 0.7, 0.4, 0.4]})
    s = mean_std(table, ["model"])
    assert s.loc["a", "mean"] == pytest.approx(60) and s.loc["a", "std"] == pytest.approx(100 * np.std([.5, .7], ddof=1))
    assert paired_differences(table, "a", "b") == pytest.approx([0.1, 0.3])


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
        stage1, stage2 = lbr_study.configs(profile, 0)
        assert bottleneck_count(lbr_study.max_length(profile) + 1, stage1.ratio) <= stage1.max_bottleneck
        assert stage2.max_length == stage1.max_input == lbr_study.max_length(profile)


def test_the_lbr_scale_overrides_only_what_it_names():
    from lbr_utils.profiles import lbr_profile

    cpu = get_profile("cpu")
    small = lbr_profile(cpu)
    assert small.n_eval == cpu.lbr_scale["n_eval"] and small.model == cpu.model and small.seeds == cpu.seeds
    assert small.lbr_scale == {} and lbr_profile(small) == small
    assert lbr_profile(get_profile("smoke")) == get_profile("smoke")
