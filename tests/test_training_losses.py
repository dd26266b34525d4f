"""The training losses against plain references written here: InfoNCE worked out by hand,
NV-Embed's loss without in-batch negatives, Matryoshka as a sum, the straight-through sign, and
GradCache's gradients against the uncached loss's on a real model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llmvec import Encoder
from llmvec.training.grad_cache import cached_loss
from llmvec.training.losses import ContrastiveLoss, CoSENTLoss, straight_through_sign


def _unit(rows: list[list[float]]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows), dim=-1)


def test_info_nce_matches_a_hand_computed_example() -> None:
    # Two queries, two positives; cosines: q0.p0 = 1, q0.p1 = 0, q1.p0 = 0.6, q1.p1 = 0.8.
    queries = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    positives = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # not unit: the loss normalises
    loss = ContrastiveLoss(temperature=0.5)(queries, positives, None)
    row0 = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(0.0)))
    row1 = -math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_hard_negatives_join_the_in_batch_candidates() -> None:
    torch.manual_seed(0)
    q, p, n = torch.randn(3, 8), torch.randn(3, 8), torch.randn(6, 8)  # two negatives a query
    got = ContrastiveLoss(temperature=0.05)(q, p, n)
    qn, documents = F.normalize(q, dim=-1), F.normalize(torch.cat([p, n]), dim=-1)
    expected = 0.0
    for i in range(3):
        scores = qn[i] @ documents.T / 0.05
        expected += -(scores[i] - torch.logsumexp(scores, 0))
    assert got.item() == pytest.approx(expected.item() / 3, rel=1e-5)


def test_without_in_batch_negatives_each_query_sees_its_own_candidates() -> None:
    torch.manual_seed(1)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(8, 8)
    got = ContrastiveLoss(temperature=0.1, in_batch_negatives=False)(q, p, n)
    expected = 0.0
    for i in range(4):
        candidates = F.normalize(torch.stack([p[i], n[2 * i], n[2 * i + 1]]), dim=-1)
        scores = candidates @ F.normalize(q[i], dim=0) / 0.1
        expected += -(scores[0] - torch.logsumexp(scores, 0))
    assert got.item() == pytest.approx(expected.item() / 4, rel=1e-5)


def test_matryoshka_loss_is_the_sum_over_its_dimensions() -> None:
    torch.manual_seed(2)
    q, p, n = torch.randn(5, 16), torch.randn(5, 16), torch.randn(5, 16)
    got = ContrastiveLoss(matryoshka_dims=(4, 8, 16))(q, p, n)
    expected = sum(ContrastiveLoss()(q[:, :d], p[:, :d], n[:, :d]) for d in (4, 8, 16))
    assert got.item() == pytest.approx(float(expected), rel=1e-6)


def test_matryoshka_dimension_above_the_hidden_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Matryoshka dimensions \[128\] exceed .* 64"):
        ContrastiveLoss(matryoshka_dims=(32, 128)).check_dimension(64)


def test_straight_through_sign_forward_is_the_sign_backward_the_identity() -> None:
    x = torch.tensor([-1.5, -0.2, 0.0, 0.3, 2.0], requires_grad=True)
    y = straight_through_sign(x)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]  # zero reads as llmvec's "0" bit
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (y * weights).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, weights)


def test_binary_aware_loss_adds_the_loss_of_binarised_vectors() -> None:
    torch.manual_seed(3)
    q, p = torch.randn(4, 8), torch.randn(4, 8)
    got = ContrastiveLoss(binary=True)(q, p, None)
    plain = ContrastiveLoss()
    expected = plain(q, p, None) + plain(torch.sign(q), torch.sign(p), None)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def _reference_cosent(a: torch.Tensor, b: torch.Tensor, gold: list[float], scale: float) -> float:
    """CoSENT written out: log(1 + sum over ordered pairs i, j (gold i > gold j) of
    exp(scale * (cos j - cos i)))."""
    cosines = [F.cosine_similarity(a[i], b[i], dim=0).item() for i in range(len(gold))]
    terms = [
        math.exp(scale * (cosines[j] - cosines[i]))
        for i in range(len(gold))
        for j in range(len(gold))
        if gold[i] > gold[j]
    ]
    return math.log(1 + sum(terms))


def test_cosent_matches_a_plain_computation_and_ignores_tied_scores() -> None:
    torch.manual_seed(4)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    gold = [4.8, 0.2, 3.0, 3.0, 1.5, 5.0]
    got = CoSENTLoss(temperature=0.05)(a, b, torch.tensor(gold))
    assert got.item() == pytest.approx(_reference_cosent(a, b, gold, 20.0), rel=1e-5)
    # Only the order of the gold scores counts, not their scale.
    rescaled = CoSENTLoss()(a, b, torch.tensor(gold) / 5)
    assert rescaled.item() == pytest.approx(got.item(), rel=1e-6)


def test_cosent_is_small_when_cosines_follow_the_gold_order() -> None:
    a = torch.eye(4)
    # Pair i's second vector leans towards the first the more, the higher its gold score.
    b = torch.stack([a[i] * (i + 1) + a[(i + 1) % 4] * (4 - i) for i in range(4)])
    ordered = CoSENTLoss()(a, b, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    reversed_ = CoSENTLoss()(a, b, torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert ordered.item() < 0.1 and reversed_.item() > 10.0


def test_cosent_sums_matryoshka_prefixes_and_binary_terms() -> None:
    torch.manual_seed(5)
    a, b, gold = torch.randn(5, 16), torch.randn(5, 16), torch.rand(5)
    got = CoSENTLoss(matryoshka_dims=(4, 16), binary=True)(a, b, gold)
    plain = CoSENTLoss()
    expected = sum(
        plain(a[:, :d], b[:, :d], gold) + plain(torch.sign(a[:, :d]), torch.sign(b[:, :d]), gold)
        for d in (4, 16)
    )
    assert got.item() == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"matryoshka_dims": (0,)}, "positive integers"),
    ],
)
def test_cosent_refuses_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoSENTLoss(**options)  # type: ignore[arg-type]


def test_grad_cache_gradients_equal_the_uncached_gradients(tiny_llama: Path) -> None:
    encoder = Encoder(str(tiny_llama), pooling="mean", prefix_caching=False)
    model = encoder.backend.model  # type: ignore[union-attr]
    model.requires_grad_(True)
    texts = [f"sentence {i} about {topic}" for i, topic in enumerate("abcdefgh")]
    inputs = encoder.tokenize(texts)
    loss_of = ContrastiveLoss(temperature=0.05)

    def batch_loss(pooled: torch.Tensor) -> torch.Tensor:
        return loss_of(pooled[:4], pooled[4:], None)

    model.zero_grad()
    batch_loss(encoder.pool(inputs)).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    cached = cached_loss(encoder.pool, inputs, batch_loss, chunk_size=3)
    cached.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert plain.keys() == got.keys() and plain
    for name, grad in plain.items():
        # Chunked sums run in another order: float32 rounding on gradients of size up to 1.
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-5, msg=name)
