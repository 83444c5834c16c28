"""The broadcast weight sync's protocol over a real gloo group (two members in threads of this process): buckets
arrive bit-exact, in order, whatever the mix of dtypes; a stalled or vanished sender is an error naming the bucket
within the timeout, never a hang."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from rollouts.weight_buckets import (
    BucketChannel, buckets, connect_store, join_group, open_store, pack, receive_all, send_all, unpack,
)


def _weights() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        ("embed.weight", torch.randn(7, 5, generator=g)),
        ("norm.weight", torch.randn(3, generator=g).to(torch.bfloat16)),  # 6 bytes: the next one must be re-aligned
        ("layer.0.weight", torch.randn(4, 9, generator=g)),
        ("step", torch.tensor(5, dtype=torch.int64)),  # 0-d
        ("layer.1.weight", torch.randn(33, generator=g).to(torch.bfloat16)),
    ]


def test_pack_unpack_is_bit_exact_for_mixed_dtypes():
    weights = _weights()
    header, flat = pack(3, weights, "cpu")
    assert header.index == 3 and flat.dtype == torch.uint8 and all(o % 16 == 0 for o in header.offsets)
    out = unpack(type(header).from_json(header.to_json()), flat)
    assert [n for n, _ in out] == [n for n, _ in weights]
    for (_, a), (_, b) in zip(weights, out):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_buckets_hold_at_most_the_byte_budget_and_keep_order():
    weights = [(f"w{i}", torch.zeros(10)) for i in range(7)]  # 40 bytes, 48 aligned
    groups = list(buckets(weights, bucket_bytes=100))
    assert [[n for n, _ in g] for g in groups] == [["w0", "w1"], ["w2", "w3"], ["w4", "w5"], ["w6"]]
    big = list(buckets([("small", torch.zeros(1)), ("huge", torch.zeros(1000))], bucket_bytes=100))
    assert [[n for n, _ in g] for g in big] == [["small"], ["huge"]]  # larger than a bucket: a bucket of its own


def _group_of_two(timeout_s: float):
    """(sender channel, receiver channel) of one real gloo group; both join concurrently."""
    store = open_store("127.0.0.1", 2, timeout_s)
    channels = {}

    def join(rank: int) -> None:
        member_store = store if rank == 0 else connect_store("127.0.0.1", store.port, 2, timeout_s)
        group = join_group(member_store, rank, 2, "gloo", timeout_s)
        channels[rank] = BucketChannel(group, "cpu", timeout_s, "trainer rank 0" if rank == 0 else "rollout engine 0")

    threads = [threading.Thread(target=join, args=(r,)) for r in (0, 1)]
    [t.start() for t in threads]
    [t.join(timeout=30) for t in threads]
    return channels[0], channels[1], store


def test_a_stream_of_buckets_arrives_complete_and_in_order():
    sender, receiver, _store = _group_of_two(timeout_s=20)
    weights = _weights() * 3
    sent = {}
    thread = threading.Thread(target=lambda: sent.update(send_all(sender, iter(weights), bucket_bytes=256)))
    thread.start()
    progress = {}
    received = [(n, t.clone()) for n, t in receive_all(receiver, progress)]
    thread.join(timeout=30)
    assert sent["buckets"] == progress["buckets"] > 1 and sent["bytes"] == progress["bytes"]
    assert [n for n, _ in received] == [n for n, _ in weights]
    assert all(torch.equal(a, b) and a.dtype == b.dtype for (_, a), (_, b) in zip(weights, received))


def test_a_sender_that_stops_mid_stream_is_a_timeout_naming_the_bucket():
    sender, receiver, _store = _group_of_two(timeout_s=2)
    header, flat = pack(0, _weights(), "cpu")
    release = threading.Event()

    def send_one_then_stall():
        sender.send(header, flat)  # bucket 0, then nothing: a trainer stuck mid-sync
        release.wait(30)

    thread = threading.Thread(target=send_one_then_stall)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"rollout engine 0: .*bucket 1.* within 2s \(rollout.sync_timeout_s\)"):
            list(receive_all(receiver, {}))
        assert time.monotonic() - start < 15
    finally:
        release.set()
        thread.join(timeout=30)


def test_a_receiver_that_never_comes_is_a_timeout_for_the_sender():
    sender, _receiver, _store = _group_of_two(timeout_s=2)
    with pytest.raises(TimeoutError, match=r"trainer rank 0: .*bucket 0 .*embed.weight .. layer.1.weight"):
        send_all(sender, iter(_weights()))


def test_the_barrier_holds_every_member_until_all_have_entered():
    sender, receiver, _store = _group_of_two(timeout_s=10)
    left = {}

    def late_receiver():
        time.sleep(1.0)
        receiver.barrier("the receivers' copy of bucket 0")
        left["receiver"] = time.monotonic()

    thread = threading.Thread(target=late_receiver)
    start = time.monotonic()
    thread.start()
    sender.barrier("the receivers' copy of bucket 0")
    assert time.monotonic() - start >= 0.9  # the sender waited for the late receiver
    thread.join(timeout=30)
    assert "receiver" in left
