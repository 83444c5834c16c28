"""Turn sampled episodes into padded training tensors, and split them across trainer ranks and micro-batches."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rollouts.types import Sample


@dataclass
class TrainBatch:
    """Right-padded tensors for one rank. Token-aligned: loss_mask[b, t] says whether input_ids[b, t] is trained."""

    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] long
    loss_mask: torch.Tensor  # [B, L] float
    sampler_logprobs: torch.Tensor  # [B, L] float, vLLM's log-prob of each trained token
    advantages: torch.Tensor  # [B] per sequence (GRPO family) or [B, L] per token (PPO/GAE), float

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, index: slice | list[int]) -> "TrainBatch":
        return TrainBatch(*(t[index] for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.attention_mask, self.loss_mask, self.sampler_logprobs, self.advantages)

    def first_trained_position(self) -> int:
        """Index of the first token trained in any row (>= 1: a log-prob needs the token before it)."""
        trained = self.loss_mask.bool().any(dim=0).nonzero()
        return max(int(trained[0]) if len(trained) else self.input_ids.shape[1] - 1, 1)

    def trimmed(self) -> "TrainBatch":
        """Drop the columns that are padding in every row (a micro-batch is often shorter than the whole batch)."""
        length = int(self.attention_mask.sum(dim=1).max().item())
        advantages = self.advantages[:, :length] if self.advantages.dim() == 2 else self.advantages
        return TrainBatch(*(t[:, :length] for t in self.tensors()[:4]), advantages)


def collate(samples: list[Sample], advantages: list[float], pad_token_id: int) -> TrainBatch:
    if len(samples) != len(advantages):
        raise ValueError(f"collate: {len(samples)} samples but {len(advantages)} advantages")
    input_ids, attention_mask = pad_token_rows([s.token_ids for s in samples], pad_token_id)
    loss_mask = right_pad([s.loss_mask for s in samples], torch.float32)
    sampler_logprobs = right_pad([s.sampler_logprobs for s in samples], torch.float32)
    return TrainBatch(input_ids, attention_mask, loss_mask, sampler_logprobs, torch.tensor(advantages, dtype=torch.float32))


def right_pad(rows: list, dtype: torch.dtype, fill=0) -> torch.Tensor:
    """[len(rows), longest row] tensor of `rows`, each right-padded with `fill`."""
    out = torch.full((len(rows), max(len(row) for row in rows)), fill, dtype=dtype)
    for index, row in enumerate(rows):
        out[index, :len(row)] = torch.tensor(row, dtype=dtype)
    return out


def pad_token_rows(token_ids: list, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id rows, right-padded with `pad_token_id` (mask 0 on the padding)."""
    return right_pad(token_ids, torch.long, pad_token_id), right_pad([[1] * len(row) for row in token_ids], torch.long)


def shard_indices(n_items: int, n_shards: int) -> list[list[int]]:
    """Strided split so each rank gets a similar mix of prompts; every shard has the same size (checked by config)."""
    if n_items % n_shards:
        raise ValueError(f"cannot split {n_items} samples evenly over {n_shards} trainer ranks")
    return [list(range(rank, n_items, n_shards)) for rank in range(n_shards)]
