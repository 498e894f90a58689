"""What the tests of the bottleneck mask, of LBR's losses and of generation share: the pairs, the
compression ratio, a tiny model with bottleneck tokens, and the reference token losses."""

import torch

from lbr_utils.models import add_bottleneck_tokens, build_tiny

PAIRS = [("the patient has a fever and a cough", "influenza"),
         ("a longer question about a drug with several words in it", "an answer of a few words"),
         ("short", "yes")]
RATIO = 2.0


def _tiny_with_bottleneck(num_layers: int = 2):
    model, tok = build_tiny(num_layers=num_layers)
    add_bottleneck_tokens(model, tok, 16)
    return model, tok


def shifted_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The reference: cross-entropy of ``labels[:, t]`` under ``logits[:, t - 1]`` from the logits of
    every position, (batch, seq), zero where labels are -100."""
    labels = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels.clamp(min=0),
                                               reduction="none")
    return torch.nn.functional.pad(losses * (labels != -100), (1, 0))
