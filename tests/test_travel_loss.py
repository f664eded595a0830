"""The vectorised TraVeL losses against the references' pair-by-pair definitions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bicyclegan_pl.losses import pair_vectors, siamese_margin_loss, travel_loss


def naive_travel(source, translated, cosine_weight, l2_weight, reduction):
    terms = []
    for i in range(len(source)):
        for j in range(len(source)):
            if i == j:
                continue
            v_x, v_g = source[i] - source[j], translated[i] - translated[j]
            cos = torch.dot(v_x, v_g) / (v_x.norm() * v_g.norm())
            terms.append(cosine_weight * (1 - cos) + l2_weight * ((v_x - v_g) ** 2).mean())
    total = torch.stack(terms)
    return total.sum() if reduction == "sum" else total.mean()


def shifted_travel(source, translated):
    """CLIPTraVeLGAN's code: cyclic shifts 1..B-1 of the batch, Keras cosine loss (-cos) + 1, summed."""
    total = 0.0
    for shift in range(1, len(source)):
        order = torch.roll(torch.arange(len(source)), -shift)
        v_x, v_g = source - source[order], translated - translated[order]
        total = total + (1 - F.cosine_similarity(v_x, v_g, dim=1)).sum()
    return total


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, 1.0), (0.0, 2.0)])
def test_vectorised_travel_loss_equals_the_double_loop(reduction, weights):
    generator = torch.Generator().manual_seed(0)
    source, translated = torch.randn(6, 12, generator=generator, dtype=torch.float64), torch.randn(6, 12, generator=generator, dtype=torch.float64)
    ours = travel_loss(source, translated, *weights, reduction=reduction)
    assert torch.allclose(ours, naive_travel(source, translated, *weights, reduction), rtol=1e-12)


def test_sum_reduction_equals_the_papers_cyclic_shifts_and_vanishes_for_a_translation():
    generator = torch.Generator().manual_seed(1)
    source = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    translated = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    assert torch.allclose(travel_loss(source, translated), shifted_travel(source, translated), rtol=1e-12)
    # a translation (or positive scaling) of the embedding space keeps every transformation vector's direction
    assert travel_loss(source, 2.0 * source + 3.0) < 1e-12
    assert pair_vectors(source).shape == (20, 8)


def test_margin_loss_pushes_collapsed_embeddings_apart():
    collapsed = torch.zeros(4, 3, requires_grad=True)
    assert float(siamese_margin_loss(collapsed, margin=10.0)) == pytest.approx(10.0)
    embeddings = (torch.randn(4, 3, generator=torch.Generator().manual_seed(2)) * 0.01).requires_grad_(True)
    optimizer = torch.optim.SGD([embeddings], lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        siamese_margin_loss(embeddings).backward()
        optimizer.step()
    distances = pair_vectors(embeddings.detach()).pow(2).sum(dim=1)
    assert distances.min() >= 10.0 - 1e-3 and siamese_margin_loss(embeddings) < 1e-3


def test_scale_to_batch_keeps_lambda_meaning_across_batch_sizes():
    generator = torch.Generator().manual_seed(3)
    source, translated = torch.randn(6, 8, generator=generator, dtype=torch.float64), torch.randn(6, 8, generator=generator, dtype=torch.float64)
    plain = travel_loss(source, translated)
    # at its own batch size the scaled sum is the sum; at 128 it is the mean pair times 128 * 127
    assert torch.allclose(travel_loss(source, translated, scale_to_batch=6), plain, rtol=1e-12)
    assert torch.allclose(travel_loss(source, translated, scale_to_batch=128), plain / 30 * 16256, rtol=1e-12)
    with pytest.raises(ValueError, match="scale_to_batch"):
        travel_loss(source, translated, scale_to_batch=1)


def test_a_batch_of_one_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        travel_loss(torch.randn(1, 4), torch.randn(1, 4))
