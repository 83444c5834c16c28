"""The wire protocol of the broadcast weight sync: trainer rank 0 -> every vLLM worker, bucket by bucket, over a process
group of its own (rank 0 the trainer, then each engine's workers).

A bucket is a JSON header (names, shapes, dtypes, byte offsets) followed by one flat uint8 tensor holding those
parameters back to back, so any mix of dtypes travels in a single broadcast. An empty header ends the stream. Every
collective waits at most `timeout_s` and then raises a TimeoutError naming the bucket and the peer (the caller's
`who`), so a dead or stuck peer is an error, never a hang.

The group is built from torch's backend classes on a TCPStore of its own (not `torch.distributed.init_process_group`),
so it neither touches nor clashes with the default group that DeepSpeed (trainer) or vLLM (worker) already hold. The
same code runs with `gloo` (CPU: tested here) and `nccl` (GPU).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch

STORE_PREFIX = "afrl-weight-sync"
ALIGN_BYTES = 16  # every parameter starts at a multiple of this, so its bytes can be viewed as its dtype again
DEFAULT_BUCKET_BYTES = 256 << 20


def backend_for(device: str) -> str:
    """nccl between GPUs, gloo on CPU: the process group's backend is chosen by the device, the protocol is the same."""
    return "nccl" if device == "cuda" else "gloo"


def open_store(host: str, world_size: int, timeout_s: float):
    """The group's TCPStore server on a free port (port 0: the OS picks, no race with another bind); its port goes
    to the other members. Does not wait for them."""
    import torch.distributed as dist

    return dist.TCPStore(host, 0, world_size, is_master=True, wait_for_workers=False,
                         timeout=timedelta(seconds=timeout_s))


def join_group(store, rank: int, world_size: int, backend: str, timeout_s: float):
    """This member's process group over `store` (a TCPStore client, or the server for rank 0). Blocks until every
    member has joined or `timeout_s` passes."""
    import torch.distributed as dist

    prefixed = dist.PrefixStore(STORE_PREFIX, store)
    timeout = timedelta(seconds=timeout_s)
    if backend == "gloo":
        return dist.ProcessGroupGloo(prefixed, rank, world_size, timeout)
    if backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(prefixed, rank, world_size, options)
    raise ValueError(f"weight sync backend {backend!r}: expected gloo or nccl")


def connect_store(host: str, port: int, world_size: int, timeout_s: float):
    import torch.distributed as dist

    return dist.TCPStore(host, port, world_size, is_master=False, timeout=timedelta(seconds=timeout_s))


# ---- buckets ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BucketHeader:
    index: int
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    offsets: tuple[int, ...]
    nbytes: int
    # CUDA IPC (trainer and engine on one GPU): the flat bucket stays in the trainer's memory and the header carries
    # its handles, GPU UUID -> base64 of torch's pickled rebuild arguments (a handle is not JSON); "" = broadcast.
    ipc_handles: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"index": self.index, "names": self.names, "shapes": self.shapes, "dtypes": self.dtypes,
                           "offsets": self.offsets, "nbytes": self.nbytes, "ipc_handles": self.ipc_handles}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BucketHeader:
        d = json.loads(data)
        return cls(d["index"], tuple(d["names"]), tuple(tuple(s) for s in d["shapes"]), tuple(d["dtypes"]),
                   tuple(d["offsets"]), d["nbytes"], d.get("ipc_handles", ""))

    def describe(self) -> str:
        first, last = self.names[0], self.names[-1]
        span = first if first == last else f"{first} .. {last}"
        return f"bucket {self.index} ({len(self.names)} tensors, {self.nbytes / 2**20:.1f} MiB: {span})"


def _aligned(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def buckets(named_tensors: Iterable[tuple[str, torch.Tensor]],
            bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of at most `bucket_bytes` (a tensor larger than that is a bucket of its own). Lazy, so a
    ZeRO-3 trainer that gathers module by module holds one bucket at a time."""
    group, size = [], 0
    for name, tensor in named_tensors:
        nbytes = _aligned(tensor.numel() * tensor.element_size())
        if group and size + nbytes > bucket_bytes:
            yield group
            group, size = [], 0
        group.append((name, tensor))
        size += nbytes
    if group:
        yield group


def pack(index: int, group: list[tuple[str, torch.Tensor]], device) -> tuple[BucketHeader, torch.Tensor]:
    """One flat uint8 tensor on `device` holding the group's tensors at aligned offsets, and its header."""
    offsets, total = [], 0
    for _, tensor in group:
        offsets.append(total)
        total += _aligned(tensor.numel() * tensor.element_size())
    flat = torch.empty(total, dtype=torch.uint8, device=device)
    for (_, tensor), offset in zip(group, offsets):
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        flat[offset:offset + raw.numel()].copy_(raw)
    header = BucketHeader(index, tuple(n for n, _ in group), tuple(tuple(t.shape) for _, t in group),
                          tuple(str(t.dtype).removeprefix("torch.") for _, t in group), tuple(offsets), total)
    return header, flat


def unpack(header: BucketHeader, flat: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Views into `flat` with the header's names, dtypes and shapes (no copy)."""
    out = []
    for name, shape, dtype_name, offset in zip(header.names, header.shapes, header.dtypes, header.offsets):
        dtype = getattr(torch, dtype_name)
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        out.append((name, flat[offset:offset + nbytes].view(dtype).view(shape)))
    return out


# ---- the channel -----------------------------------------------------------------------------------------------------
class BucketChannel:
    """Broadcasts of headers and flat buckets from group rank 0, each bounded by `timeout_s`. `device` is where the
    broadcast tensors live (a CUDA device for nccl, cpu for gloo); `ipc_device` is this member's GPU when buckets come
    as CUDA IPC handles (over a gloo group); `who` names this member in errors."""

    def __init__(self, group, device, timeout_s: float, who: str, ipc_device=None):
        self.group, self.device, self.timeout_s, self.who = group, torch.device(device), timeout_s, who
        self.ipc_device = ipc_device

    def _broadcast(self, tensor: torch.Tensor, what: str) -> None:
        import torch.distributed as dist

        options = dist.BroadcastOptions()
        options.rootRank = 0
        self._wait(lambda: self.group.broadcast([tensor], options), what)

    def _wait(self, collective, what: str) -> None:
        try:
            collective().wait(timedelta(seconds=self.timeout_s))
        except RuntimeError as exc:
            if any(word in str(exc).lower() for word in ("timed out", "timing out", "timeout")):  # gloo, nccl
                raise TimeoutError(f"{self.who}: weight broadcast of {what} did not complete within "
                                   f"{self.timeout_s:g}s (rollout.sync_timeout_s)") from exc
            raise RuntimeError(f"{self.who}: weight broadcast of {what} failed (a member of the weight-sync group "
                               f"died?): {exc}") from exc

    def send(self, header: BucketHeader | None, flat: torch.Tensor | None = None) -> None:
        """Rank 0: the header (None ends the stream), then the flat bucket (with IPC handles: the receivers' ack)."""
        data = header.to_json() if header is not None else b""
        what = header.describe() if header is not None else "the end-of-stream marker"
        self._broadcast(torch.tensor([len(data)], dtype=torch.int64, device=self.device), f"the header of {what}")
        if not data:
            return
        self._broadcast(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device), f"the header of {what}")
        if header.ipc_handles:
            self.barrier(f"the receivers' copy of {what}")  # only then may the trainer free or reuse the bucket
        else:
            self._broadcast(flat, what)

    def receive(self, index: int) -> tuple[BucketHeader, torch.Tensor] | None:
        """Other ranks: the next bucket (`index` is the one expected, for errors), or None at the end of the stream."""
        length = torch.zeros(1, dtype=torch.int64, device=self.device)
        self._broadcast(length, f"bucket {index}'s header")
        if int(length.item()) == 0:
            return None
        payload = torch.empty(int(length.item()), dtype=torch.uint8, device=self.device)
        self._broadcast(payload, f"bucket {index}'s header")
        header = BucketHeader.from_json(payload.cpu().numpy().tobytes())
        if header.ipc_handles:
            flat = open_ipc_handle(header.ipc_handles, self.ipc_device).clone()  # own copy: the trainer frees its bucket
            torch.cuda.current_stream(self.ipc_device).synchronize()  # the copy is done before the trainer hears so
            self.barrier(f"the receivers' copy of {header.describe()}")
            return header, flat
        flat = torch.empty(header.nbytes, dtype=torch.uint8, device=self.device)
        self._broadcast(flat, header.describe())
        return header, flat

    def barrier(self, what: str) -> None:
        """Every member reached this point (the IPC path: the receivers have copied the bucket out). An all-reduce:
        no member leaves it before all have entered."""
        flag = torch.zeros(1, dtype=torch.int64, device=self.device)
        self._wait(lambda: self.group.allreduce([flag]), what)


# ---- CUDA IPC (GPU only: not run on CPU) -----------------------------------------------------------------------------
def gpu_uuid(device) -> str:
    return str(torch.cuda.get_device_properties(torch.device(device)).uuid)


def ipc_handle(flat: torch.Tensor):
    """torch's (rebuild function, arguments) for sharing `flat` with another process on the same GPU."""
    from torch.multiprocessing.reductions import reduce_tensor

    torch.cuda.current_stream(flat.device).synchronize()  # the packing kernels are done before another process reads
    return reduce_tensor(flat)


def encode_ipc_handles(handles: dict) -> str:
    """{GPU UUID: ipc_handle(...)} -> header text. Pickle, as torch.multiprocessing itself sends these handles: they
    hold a function reference and raw bytes, and travel only between this run's own processes."""
    import base64
    import pickle

    return base64.b64encode(pickle.dumps(handles)).decode()


def open_ipc_handle(encoded: str, device) -> torch.Tensor:
    """The bucket shared by the trainer rank on this GPU: its handle is picked by the GPU's UUID (the processes see the
    card under different indices), rebuilt on this process's device index."""
    import base64
    import pickle

    handles = pickle.loads(base64.b64decode(encoded))
    uuid = gpu_uuid(device)
    if uuid not in handles:
        raise RuntimeError(f"rollout.weight_sync (CUDA IPC): no trainer rank shares GPU {uuid} with this engine; "
                           f"the trainer ranks are on {sorted(handles)}")
    rebuild, args = handles[uuid]
    args = list(args)
    args[6] = torch.device(device).index  # torch's rebuild_cuda_tensor: argument 6 is the device index
    return rebuild(*args)


def receive_all(channel: BucketChannel, progress: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (name, tensor) of the stream, bucket by bucket; `progress` counts buckets and bytes as they arrive."""
    index = 0
    while (received := channel.receive(index)) is not None:
        header, flat = received
        progress["buckets"], progress["bytes"] = index + 1, progress.get("bytes", 0) + header.nbytes
        yield from unpack(header, flat)
        index += 1


def send_all(channel: BucketChannel, named_tensors: Iterable[tuple[str, torch.Tensor]],
             bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> dict:
    """Rank 0: every (name, tensor) in buckets, then the end marker. Returns counts."""
    n_buckets = n_bytes = 0
    for index, group in enumerate(buckets(named_tensors, bucket_bytes)):
        header, flat = pack(index, group, channel.device)
        channel.send(header, flat)
        n_buckets, n_bytes = index + 1, n_bytes + header.nbytes
    channel.send(None)
    return {"buckets": n_buckets, "bytes": n_bytes}
