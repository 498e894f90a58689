from lbr_utils.batching import IndexBatcher, PairBatcher


def test_batches_are_a_deterministic_permutation(cl_records):
    b = PairBatcher(cl_records, 8, seed=3)
    assert b(5) == b(5)
    epoch = [q for step in range(b.per_epoch) for q in b(step)["queries"]]
    assert len(set(epoch)) == len(epoch) == b.per_epoch * 8
    fresh = IndexBatcher(10, 4, seed=1)  # a resumed run rebuilds the batcher: same batch at the same step
    assert fresh.indices(7) == IndexBatcher(10, 4, seed=1).indices(7)
    epoch = [i for step in range(fresh.per_epoch) for i in fresh.indices(step)]
    assert len(set(epoch)) == len(epoch) == 8 and set(epoch) <= set(range(10))
