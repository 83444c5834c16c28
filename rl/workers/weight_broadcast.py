"""The trainer side of the broadcast weight sync (protocol: rollouts/weight_buckets.py; engine side:
rollouts/weight_receiver.py; who calls what and when: rl/workers/weight_sync.py).

`SendingTrainer` is mixed into PolicyTrainer. Trainer rank 0 is rank 0 of the weight-sync group and the only sender;
every trainer rank runs `send_weights` so that weights gathered collectively (ZeRO-3) or shared per GPU (CUDA IPC)
come from all ranks in step. The class needs `self.rank`, `self.engine` (DeepSpeed) and `self.named_weights()`.
"""
from __future__ import annotations

import dataclasses

from rollouts.weight_buckets import (
    DEFAULT_BUCKET_BYTES, BucketChannel, buckets, encode_ipc_handles, gpu_uuid, ipc_handle, join_group, open_store, pack,
    send_all,
)


class SendingTrainer:
    weight_channel: BucketChannel | None = None

    def open_weight_sync_store(self, world_size: int, timeout_s: float, host: str | None = None) -> tuple[str, int]:
        """Rank 0: the weight-sync group's TCPStore on a free port of this node. Returns (address, port) for the
        engines; `host` None: this node's address as Ray sees it (multi-node)."""
        import ray

        host = host or ray.util.get_node_ip_address()
        self.weight_store = open_store(host, world_size, timeout_s)
        return host, self.weight_store.port

    def join_weight_group(self, world_size: int, backend: str, timeout_s: float) -> int:
        """Rank 0 joins as group rank 0 (returns once every engine worker has joined)."""
        group = join_group(self.weight_store, 0, world_size, backend, timeout_s)
        device = self.engine.device if backend == "nccl" else "cpu"
        self.weight_channel = BucketChannel(group, device, timeout_s, f"trainer rank {self.rank}")
        return 0

    def send_weights(self, bucket_bytes: int = DEFAULT_BUCKET_BYTES, ipc: bool = False) -> dict:
        """Every rank: stream the full weights into the group in buckets (only rank 0 sends). Returns counts."""
        if ipc:
            return self._send_weights_ipc(bucket_bytes)
        if self.rank == 0:
            if self.weight_channel is None:
                raise RuntimeError("send_weights before join_weight_group: trainer rank 0 is not in the weight-sync "
                                   "group")
            return send_all(self.weight_channel, self.named_weights(), bucket_bytes)
        for _ in self.named_weights():  # ZeRO-3: this rank's part of each collective gather
            pass
        return {}

    def _send_weights_ipc(self, bucket_bytes: int) -> dict:
        """Colocated on GPU (untested here: needs CUDA): each rank packs the bucket on its own GPU and shares it by
        CUDA IPC handle; rank 0 sends all handles and, once the engines have copied the bucket, every rank moves on."""
        import torch.distributed as dist

        n_buckets = n_bytes = 0
        for index, group in enumerate(buckets(self.named_weights(), bucket_bytes)):
            header, flat = pack(index, group, self.engine.device)
            handles = [None] * dist.get_world_size()
            dist.all_gather_object(handles, (gpu_uuid(flat.device), ipc_handle(flat)))
            if self.rank == 0:
                self.weight_channel.send(dataclasses.replace(header, ipc_handles=encode_ipc_handles(dict(handles))))
            dist.barrier()  # no rank frees its bucket before the engines hold their copy
            del flat
            n_buckets, n_bytes = index + 1, n_bytes + header.nbytes
        if self.rank == 0:
            self.weight_channel.send(None)
        return {"buckets": n_buckets, "bytes": n_bytes}
