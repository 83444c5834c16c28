"""Token log-probabilities against hand-computed values and against an unchunked log_softmax."""
import math

import pytest
import torch

from rl.algo.logprobs import token_logprobs


def test_token_logprobs_hand_computed():
    # logits [0, ln 3] -> softmax [0.25, 0.75]: log p(1) = ln 0.75 = -0.2876821, log p(0) = ln 0.25 = -1.3862944.
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    out = token_logprobs(logits, torch.tensor([[1, 0]]))
    torch.testing.assert_close(out, torch.tensor([[-0.2876821, -1.3862944]]))


def test_token_logprobs_temperature():
    # Temperature 2: logits [0, ln 3 / 2] -> p(1) = sqrt(3) / (1 + sqrt(3)) = 0.6339746, ln = -0.4557464.
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    torch.testing.assert_close(token_logprobs(logits, torch.tensor([[1]]), temperature=2.0), torch.tensor([[-0.4557464]]))


def test_token_logprobs_chunking_matches_full_log_softmax_and_gradient():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    labels = torch.randint(0, 11, (3, 5))
    chunked = token_logprobs(logits, labels, chunk_rows=4)  # 15 rows -> chunks of 4, 4, 4, 3
    reference = torch.log_softmax(logits, dim=-1).gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(chunked, reference)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), logits)
    (grad_reference,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(grad_chunked, grad_reference)


def test_token_logprobs_bf16_logits_give_fp32():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7).to(torch.bfloat16)
    labels = torch.randint(0, 7, (2, 3))
    out = token_logprobs(logits, labels)
    assert out.dtype == torch.float32
    reference = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None]).squeeze(-1)
    torch.testing.assert_close(out, reference)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="labels"):
        token_logprobs(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))
