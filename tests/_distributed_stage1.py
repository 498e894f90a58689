"""Run by tests/test_train.py under ``accelerate launch``: LBR stage 1 (IB-GL) on the tiny model."""

import json
import sys

from accelerate import PartialState

from lbr_utils.batching import PairBatcher
from lbr_utils.data import QARecord
from lbr_utils.lbr import GenerativeConfig, build_generative_batch, generative_loss
from lbr_utils.models import add_bottleneck_tokens, build_tiny
from lbr_utils.train import TrainConfig, train

RECORDS = [QARecord(str(i), "medical", f"question number {i} about fever", f"answer {i} is influenza", str(i))
           for i in range(16)]
CFG = GenerativeConfig(ratio=4, steps=12, batch_size=4, lr=3e-3, max_input=16, max_target=8)


def run(out: str, steps: int = CFG.steps) -> dict:
    model, tok = build_tiny()
    add_bottleneck_tokens(model, tok, CFG.max_bottleneck)
    batcher, pairs = PairBatcher(RECORDS, CFG.batch_size, 0), CFG.pairs(RECORDS)

    def batch_at(step: int):
        return build_generative_batch(tok, [pairs[i] for i in batcher.indices(step)], CFG.max_input, CFG.max_target,
                                      CFG.ratio)

    result = train(model, lambda batch: generative_loss(model, batch), batch_at,
                   TrainConfig(steps=steps, lr=CFG.lr, bf16=False, checkpoint_dir=f"{out}/ckpt", checkpoint_every=steps,
                               show_progress=False))
    state = PartialState()
    return {"rank": state.process_index, "world": state.num_processes, "losses": result.losses,
            "resumed_from": result.resumed_from,
            "weights": [float(p.detach().double().sum()) for p in model.parameters()]}


if __name__ == "__main__":
    record = run(sys.argv[1])
    with open(f"{sys.argv[1]}/rank{record['rank']}.json", "w") as f:
        json.dump(record, f)
