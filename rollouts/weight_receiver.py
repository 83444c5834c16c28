"""The engine side of the broadcast weight sync (rollouts/weight_buckets.py has the protocol).

`WeightReceiver` is mixed into every vLLM worker (vLLM's `worker_extension_cls`), so with tensor parallelism each
worker of the engine joins the weight-sync group and receives every full tensor; vLLM's own weight loaders cut its
shard. `ReceivingEngine` gives the RolloutEngine actor the calls that reach its workers through `collective_rpc`.
"""
from __future__ import annotations

import time

WORKER_EXTENSION = "rollouts.weight_receiver.WeightReceiver"


class WeightReceiver:
    """Methods vLLM adds to its worker class (names prefixed so they cannot clash with the worker's own)."""

    def afrl_join_weight_group(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                               timeout_s: float, who: str, ipc: bool = False) -> int:
        """Join the group as member `rank_offset` + this worker's rank within its engine. Returns that rank."""
        from rollouts.weight_buckets import BucketChannel, connect_store, join_group

        rank = rank_offset + self.rank
        store = connect_store(host, port, world_size, timeout_s)
        group = join_group(store, rank, world_size, backend, timeout_s)
        device = self.device if backend == "nccl" else "cpu"
        who = f"{who} (worker {self.rank}, weight-sync rank {rank})"
        self.afrl_weight_channel = BucketChannel(group, device, timeout_s, who, self.device if ipc else None)
        self.afrl_weight_store = store  # the client connection lives as long as the group
        return rank

    def afrl_receive_weights(self) -> dict:
        """Receive the whole stream and load it in place through vLLM's reload path (the object-store sync's too), one
        bucket in memory at a time. Returns the buckets and bytes received."""
        from rollouts.weight_buckets import receive_all

        channel = getattr(self, "afrl_weight_channel", None)
        if channel is None:
            raise RuntimeError("receive_weights before join_weight_group: this engine is not in the weight-sync group")
        progress = {"buckets": 0, "bytes": 0}
        self.reload_weights(weights_iterator=receive_all(channel, progress))
        return progress


class ReceivingEngine:
    """RolloutEngine's calls into its workers' WeightReceiver (needs `self.llm`, started with WORKER_EXTENSION)."""

    def join_weight_group(self, host: str, port: int, rank_offset: int, world_size: int, backend: str,
                          timeout_s: float, who: str, ipc: bool = False) -> list[int]:
        return self.llm.collective_rpc(
            "afrl_join_weight_group", args=(host, port, rank_offset, world_size, backend, timeout_s, who, ipc))

    def receive_weights(self) -> float:
        """The broadcast counterpart of `load_weights`: returns seconds taken."""
        start = time.time()
        self.llm.collective_rpc("afrl_receive_weights")
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        return time.time() - start

    def weight_workers(self) -> int:
        """How many workers (weight-sync group members) this engine has: its tensor-parallel size."""
        return self.llm.llm_engine.vllm_config.parallel_config.world_size
