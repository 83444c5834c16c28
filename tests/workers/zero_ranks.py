"""One rank of a 2-rank (gloo) policy trainer and critic under a given ZeRO stage, for tests/workers/test_zero3.py.

Usage: python -m tests.workers.zero_ranks RANK PORT STAGE MODEL_DIR OUT_DIR [offload] [lora] (offload: optimizer state
and parameters in CPU memory, DeepSpeed's CPU Adam; lora: LoRA adapters of rank 8 on policy and critic, the reference
the policy with its adapters off). Each rank trains on its strided
half of an 8-row batch (the driver's split): a policy update with the KL to the reference in the loss and prefix
sharing on (2 minibatches, so old log-probs and two optimizer steps), the KL to the reference after it, the gathered
weights, a checkpoint round trip; then a critic update and its values. Rank 0 writes OUT_DIR/result.pt."""
from __future__ import annotations

import sys
from dataclasses import replace

import torch

from rl.algo.batch import collate, shard_indices
from rl.algo.config import AlgoConfig
from rl.config import LoraConfig
from rl.workers.critic import CriticTrainer
from rl.workers.deepspeed_rank import RankSpec
from rl.workers.trainer import PolicyTrainer
from tests.samples import sample_of

PROMPT = [1, 510, 2021, 314, 253, 2]
COMPLETIONS = [[1234, 987, 45, 2], [777, 4242, 31000, 12, 2], [55, 66, 77, 2], [901, 902, 2]]
ADVANTAGES = [1.0, -1.0, 0.5, -0.5, 0.25, -0.25, 1.0, -1.0]


def batch():
    samples = [sample_of(PROMPT, COMPLETIONS[i % 4] if i < 4 else COMPLETIONS[i % 4][:-1] + [2]) for i in range(8)]
    return collate(samples, ADVANTAGES, pad_token_id=2)


def main(rank: int, port: int, stage: int, model_dir: str, out_dir: str, offload: bool = False,
         lora: bool = False) -> None:
    spec = RankSpec(model_dir, rank, 2, "127.0.0.1", port, 1, 2, "cpu", "float32", 0, False, None, stage,
                    offload_optimizer=offload, offload_params=offload)
    full = batch()
    rows = shard_indices(len(full), 2)[rank]
    mine = full.select(rows)
    algo = AlgoConfig(lr=1e-3, kl_coef=0.1, kl_estimator="k1", tis_cap=None, minibatches=2)
    adapters = LoraConfig(rank=8) if lora else None
    policy = PolicyTrainer(spec, algo, temperature=1.0, prefix_sharing=True, lora=adapters)
    stats = policy.update(mine, micro_batch_size=1, kl_coef=0.1)
    kl = policy.kl_to_reference(mine, micro_batch_size=2)
    weights = {name: torch.from_numpy(array.copy()) for name, array in policy.get_weights()}
    policy.save_checkpoint(out_dir)
    policy.update(mine, micro_batch_size=1, kl_coef=0.1)
    moved = {name: torch.from_numpy(array.copy()) for name, array in policy.get_weights()}
    policy.load_checkpoint(out_dir)
    restored = {name: torch.from_numpy(array.copy()) for name, array in policy.get_weights()}

    critic_algo = AlgoConfig(name="ppo", advantage="gae", group_size=1, lr=1e-2, loss_aggregation="token_mean",
                             minibatches=2)
    critic = CriticTrainer(replace(spec), critic_algo, lr=None, lora=adapters)
    returns = mine.loss_mask.float() * torch.tensor(ADVANTAGES)[rows, None]
    critic_stats = critic.update(mine, returns, critic.values(mine), micro_batch_size=1)
    values = critic.values(mine)
    gathered = [None, None]
    torch.distributed.all_gather_object(gathered, {"kl": kl, "values": values, "rows": rows})
    if rank == 0:
        torch.save({"stats": stats, "weights": weights, "moved": moved, "restored": restored, "critic": critic_stats,
                    "kl": gathered, "stage": policy.engine.zero_optimization_stage()}, f"{out_dir}/result.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], "offload" in sys.argv[6:],
         "lora" in sys.argv[6:])
