"""The profiles ask only for what the data holds, and the LBR scale overrides only what it names."""

import pytest

from lbr_utils.data import DOMAINS, domain_records, split_by_entity
from lbr_utils.profiles import PROFILE_NAMES, get_profile, lbr_profile


@pytest.mark.parametrize("name", PROFILE_NAMES)
@pytest.mark.parametrize("domain", list(DOMAINS))
def test_every_profile_fits_every_domain(name, domain):
    """Cut the real records of each domain to each profile's sizes (at the chapters' scale and at the
    LBR chapters' scale): no split comes up short. Nothing is trained."""
    records = domain_records(domain)
    for profile in (get_profile(name), lbr_profile(get_profile(name))):
        sized = profile.for_domain(domain)
        splits = split_by_entity(records, sized.n_gl, sized.n_cl, sized.n_eval, sized.n_distractors, seed=0)
        assert (len(splits.gl), len(splits.cl), len(splits.eval.queries)) == (sized.n_gl, sized.n_cl, sized.n_eval)


def test_a_profile_that_asks_for_too_much_fails_clearly():
    records = domain_records("code")
    with pytest.raises(ValueError, match="not enough data"):
        split_by_entity(records, 10, 10, len(records) + 1, 0, seed=0)


def test_the_lbr_scale_overrides_only_what_it_names():
    cpu = get_profile("cpu")
    small = lbr_profile(cpu)
    assert small.batch_size == cpu.lbr_scale["batch_size"] and small.model == cpu.model and small.seeds == cpu.seeds
    assert small.n_eval == cpu.n_eval >= 300  # the LBR chapters evaluate on the full set
    assert small.lbr_scale == {} and lbr_profile(small) == small
    assert lbr_profile(get_profile("smoke")) == get_profile("smoke")


@pytest.mark.parametrize("domain", ["medical", "code"])
def test_lbr_stage_1_is_at_least_one_epoch_of_the_gl_split(domain):
    from lbr_utils.lbr import configs

    profile = lbr_profile(get_profile("cpu")).for_domain(domain)
    stage1, stage2 = configs(profile, 0)
    assert stage1.steps * stage1.batch_size >= profile.n_gl
    assert stage2.schedule == "constant" and stage2.steps % stage2.eval_every == 0  # budgets share a run


def test_domain_sizes_override_only_their_domain():
    gpu = get_profile("gpu")
    assert gpu.for_domain("code").n_eval == gpu.domain_sizes["code"]["n_eval"] != gpu.n_eval
    assert get_profile("cpu").for_domain("medical") == get_profile("cpu")


def test_profiles():
    assert set(PROFILE_NAMES) == {"smoke", "cpu", "gpu"}
    smoke, cpu = get_profile("smoke"), get_profile("cpu")
    assert smoke.n_gl < cpu.n_gl and len(cpu.seeds) >= 3
    assert get_profile("gpu", model="Qwen/Qwen2.5-1.5B").model == "Qwen/Qwen2.5-1.5B"
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("laptop")
