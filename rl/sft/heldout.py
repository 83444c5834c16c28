"""The held-out loss: mean next-token cross-entropy over the loss-masked tokens of a set of examples."""
from __future__ import annotations

import torch

from rl.algo.batch import pad_token_rows, right_pad
from rl.sft.examples import Example
from rl.sft.masked_head import masked_target_logits


def pad_examples(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, loss_mask), right-padded to the longest example; padding is never a target."""
    input_ids, attention_mask = pad_token_rows([example.input_ids for example in examples], pad_id)
    return input_ids, attention_mask, right_pad([example.loss_mask for example in examples], torch.bool)


@torch.no_grad()
def mean_token_loss(model, examples: list[Example], pad_id: int, batch_size: int = 8) -> dict:
    """{"loss": token-weighted mean cross-entropy (nats), "n_tokens", "n_examples"} of `model` on `examples`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        input_ids, attention_mask, loss_mask = pad_examples(examples[start:start + batch_size], pad_id)
        logits, targets = masked_target_logits(model, input_ids.to(device), attention_mask.to(device),
                                               loss_mask.to(device))
        total += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        count += targets.numel()
    model.train(was_training)
    return {"loss": total / count if count else float("nan"), "n_tokens": count, "n_examples": len(examples)}
