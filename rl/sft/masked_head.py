"""The SFT loss with the LM head run on the trained (labelled) positions only.

TRL 1.16's SFTTrainer scores every position through its fused LM head whenever Triton is absent (CPU), and computes
entropy and top-1 metrics over the whole vocabulary on each of them. A transcript's prompt is most of its tokens and is
never a target, so on CPU that is most of an SFT step's time. The loss here is the same mean -log p over the labelled
targets (TRL's own formula, same denominator), without the wasted rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def masked_target_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                         target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [n, vocab] in fp32, targets [n]) for the n positions t >= 1 with target_mask[t]: the logits predicting
    token t from tokens < t, computed by the LM head on those rows only."""
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    mask = target_mask[:, 1:]
    logits = model.get_output_embeddings()(hidden[:, :-1][mask]).float()
    return logits, input_ids[:, 1:][mask]


def masked_head_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                     num_items_in_batch=None) -> torch.Tensor:
    """Sum of -log p(label t | tokens < t) over labelled targets, over `num_items_in_batch` (else their count)."""
    logits, targets = masked_target_logits(model, input_ids, attention_mask, labels != IGNORE_INDEX)
    total = F.cross_entropy(logits, targets, reduction="sum")
    denominator = targets.numel() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(denominator, device=total.device).clamp(min=1)


def masked_head_sft_trainer_class():
    """SFTTrainer whose training loss is `masked_head_loss` (imported lazily: TRL is heavy)."""
    from trl import SFTTrainer

    class MaskedHeadSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # Several processes: DDP syncs gradients only through the wrapped model's own forward, so keep TRL's path.
            if self.accelerator.num_processes > 1 or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return masked_head_loss(self.accelerator.unwrap_model(model), inputs["input_ids"],
                                    inputs.get("attention_mask"), inputs["labels"], num_items_in_batch)

    return MaskedHeadSFTTrainer
