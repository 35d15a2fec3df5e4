"""LGCL's losses on hand cases, closed forms and loops written out here; one local-global step through the nets."""

from __future__ import annotations

import math

import pytest
import torch

from lowlabel.losses import lgcl as L
from lowlabel.models.lgcl_nets import AttentionTranslator, LocalGlobalHeads, lg_features

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def neg_log_softmax_first(logits: list[float]) -> float:
    """-log(exp(l_0) / sum_j exp(l_j)), computed with Python floats."""
    top = max(logits)
    return -(logits[0] - top) + math.log(sum(math.exp(v - top) for v in logits))


# ---------------------------------------------------------------- LSGAN


def test_lsgan_hand_values() -> None:
    real = torch.tensor([[1.5, 1.0]])  # (D(y) - 1)^2: 0.25, 0 -> mean 0.125
    fake = torch.tensor([[0.5, -1.0]])  # D(G(x))^2: 0.25, 1 -> mean 0.625; (D(G(x)) - 1)^2: 0.25, 4 -> mean 2.125
    assert float(L.lsgan_d_loss(real, fake)) == pytest.approx(0.5 * (0.125 + 0.625))
    assert float(L.lsgan_g_loss(fake)) == pytest.approx(2.125)


def test_lsgan_is_zero_at_its_targets() -> None:
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert float(L.lsgan_d_loss(ones, zeros)) == 0.0
    assert float(L.lsgan_g_loss(ones)) == 0.0
    assert float(L.lsgan_d_loss(zeros, ones)) == pytest.approx(1.0)  # the worst discriminator: 0.5 (1 + 1)


# ---------------------------------------------------------------- InfoNCE


def test_info_nce_is_log_k_plus_one_when_all_logits_are_equal() -> None:
    k_neg = 7
    same = unit(torch.ones(3, 4))
    assert float(L.info_nce(same, same, unit(torch.ones(k_neg, 4)))) == pytest.approx(math.log(k_neg + 1))
    # every dot product 0 (q orthogonal to its key and to all negatives): also log(K + 1)
    eye = torch.eye(10)
    assert float(L.info_nce(eye[:1], eye[1:2], eye[2:2 + k_neg])) == pytest.approx(math.log(k_neg + 1))


def test_info_nce_hand_value() -> None:
    q = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[-1.0, 0.0], [0.0, 1.0]])  # dot products -1 and 0; the positive 1; tau 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(-2.0) + 1.0))
    assert float(L.info_nce(q, q, negatives, tau=0.5)) == pytest.approx(expected)


def test_info_nce_matches_a_loop_and_only_queries_get_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    q = unit(torch.randn(4, 5, generator=gen)).requires_grad_()
    k = unit(torch.randn(4, 5, generator=gen)).requires_grad_()
    negatives = unit(torch.randn(6, 5, generator=gen)).requires_grad_()
    loss = L.info_nce(q, k, negatives, tau=0.2)
    qd, kd, nd = q.detach(), k.detach(), negatives.detach()
    expected = sum(neg_log_softmax_first([float(qd[i] @ kd[i]) / 0.2] + [float(qd[i] @ n) / 0.2 for n in nd])
                   for i in range(4)) / 4
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert q.grad is not None and float(q.grad.abs().sum()) > 0
    assert k.grad is None and negatives.grad is None


# ---------------------------------------------------------------- PatchNCE


def test_patch_nce_is_near_zero_when_the_positive_dominates() -> None:
    """Orthogonal patches, each equal to its key: positive logit 1/tau, negatives 0, the self pair -10/tau."""
    s, tau = 8, 0.07
    q = torch.eye(s, dtype=torch.float64)[None]  # (1, S, D=S); float64: the value is below float32's resolution of 1
    expected = math.log1p((s - 1) * math.exp(-1 / tau) + math.exp(-11 / tau))
    loss = float(L.patch_nce(q, q, tau))
    assert loss == pytest.approx(expected, rel=1e-6) and loss < 1e-5


def test_patch_nce_of_identical_patches_is_log_s() -> None:
    """All dot products 1: the positive and S - 1 negatives tie, the self pair (-10) adds exp(-11 / tau) ~ 0."""
    s = 6
    same = unit(torch.ones(2, s, 3))
    expected = math.log(s + math.exp(-11 / 0.07))
    assert float(L.patch_nce(same, same)) == pytest.approx(expected, rel=1e-6)


def test_patch_nce_matches_a_loop_over_same_image_negatives() -> None:
    """The loop leaves the self pair out; CUT's -10 fill makes it count exp(-10 / tau) ~ 1e-62 relative: equal."""
    gen = torch.Generator().manual_seed(1)
    q = unit(torch.randn(2, 5, 4, generator=gen))
    k = unit(torch.randn(2, 5, 4, generator=gen))
    total = 0.0
    for b in range(2):
        for i in range(5):
            logits = [float(q[b, i] @ k[b, i]) / 0.07] + [float(q[b, i] @ k[b, j]) / 0.07 for j in range(5) if j != i]
            total += neg_log_softmax_first(logits)
    assert float(L.patch_nce(q, k)) == pytest.approx(total / 10, rel=1e-5)


def test_patch_nce_detaches_keys_and_decreases_under_sgd() -> None:
    gen = torch.Generator().manual_seed(2)
    raw = torch.randn(1, 6, 4, generator=gen, requires_grad=True)
    k = unit(torch.randn(1, 6, 4, generator=gen)).requires_grad_()
    opt = torch.optim.SGD([raw], lr=0.05)
    losses = []
    for _ in range(10):
        loss = L.patch_nce(unit(raw), k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert k.grad is None
    assert losses[-1] < 0.5 * losses[0]


def test_gather_patches_picks_row_major_locations() -> None:
    feat = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    ids = torch.tensor([5, 0, 19, 7])
    got = L.gather_patches(feat, ids)
    assert got.shape == (2, 4, 3)
    for b in range(2):
        for s, p in enumerate(ids.tolist()):
            assert torch.equal(got[b, s], feat[b, :, p // 5, p % 5])
    with pytest.raises(ValueError, match="patch ids"):
        L.gather_patches(feat, torch.tensor([20]))


def test_multilayer_patch_nce_is_the_layer_mean_at_explicit_ids() -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3, 6, 6), (2, 5, 3, 4)]
    feats_q = [torch.randn(s, generator=gen) for s in shapes]
    feats_k = [torch.randn(s, generator=gen) for s in shapes]
    projections = [torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)]
    heads = [lambda x, w=w: unit(x @ w) for w in projections]
    ids = [torch.tensor([0, 7, 35, 20]), torch.tensor([11, 2, 5])]
    expected = 0.0
    for f_q, f_k, w, layer_ids in zip(feats_q, feats_k, projections, ids):
        wide = f_q.shape[3]
        q = unit(torch.stack([f_q[:, :, p // wide, p % wide] for p in layer_ids.tolist()], dim=1) @ w)  # (B, S, D)
        k = unit(torch.stack([f_k[:, :, p // wide, p % wide] for p in layer_ids.tolist()], dim=1) @ w)
        layer = 0.0
        for b in range(2):
            for i in range(len(layer_ids)):
                logits = [float(q[b, i] @ k[b, j]) / 0.07 for j in [i] + [j for j in range(len(layer_ids)) if j != i]]
                layer += neg_log_softmax_first(logits)
        expected += layer / (2 * len(layer_ids))
    got = L.multilayer_patch_nce(feats_q, feats_k, ids, heads)
    assert float(got) == pytest.approx(expected / 2, rel=1e-5)
    other = [torch.tensor([1, 7, 35, 20]), torch.tensor([11, 2, 5])]
    assert float(L.multilayer_patch_nce(feats_q, feats_k, other, heads)) != pytest.approx(float(got))
    with pytest.raises(ValueError, match="one query map"):
        L.multilayer_patch_nce(feats_q, feats_k, ids[:1], heads)


def test_sample_patch_ids_are_distinct_capped_and_seeded() -> None:
    feats = [torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 20, 20)]
    ids = L.sample_patch_ids(feats, 256, torch.Generator().manual_seed(0))
    assert sorted(ids[0].tolist()) == list(range(12))  # fewer locations than 256: all of them
    assert len(set(ids[1].tolist())) == 256 and max(ids[1].tolist()) < 400
    again = L.sample_patch_ids(feats, 256, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(ids, again))


# ---------------------------------------------------------------- local-global loss


def test_local_global_loss_of_equal_logits_is_the_weight_sum_times_three_log_k_plus_one() -> None:
    k_neg, same = 5, unit(torch.ones(2, 3))
    layers = [same] * 4
    terms = L.local_global_loss(layers, layers, layers, layers, [unit(torch.ones(k_neg, 3))] * 4,
                                [unit(torch.ones(k_neg, 3))] * 4)
    assert float(terms.total) == pytest.approx((0.1 + 0.4 + 0.7 + 1.0) * 3 * math.log(k_neg + 1), rel=1e-6)
    torch.testing.assert_close(terms.gg, torch.full((4,), math.log(k_neg + 1)))


def test_local_global_loss_matches_a_loop_with_per_layer_weights() -> None:
    gen = torch.Generator().manual_seed(4)

    def emb(rows: int) -> list[torch.Tensor]:
        return [unit(torch.randn(rows, 6, generator=gen)) for _ in range(4)]

    q_g, q_l, k_g, k_l, neg_g, neg_l = emb(3), emb(3), emb(3), emb(3), emb(5), emb(5)

    def nce(q: torch.Tensor, k: torch.Tensor, negs: torch.Tensor) -> float:
        rows = [[float(q[i] @ k[i]) / 0.2] + [float(q[i] @ n) / 0.2 for n in negs] for i in range(q.shape[0])]
        return sum(neg_log_softmax_first(r) for r in rows) / q.shape[0]

    terms = L.local_global_loss(q_g, q_l, k_g, k_l, neg_g, neg_l)
    want_gg = [nce(q_g[i], k_g[i], neg_g[i]) for i in range(4)]
    want_gl = [nce(q_l[i], k_g[i], neg_g[i]) for i in range(4)]  # local query, global key, global negatives
    want_ll = [nce(q_l[i], k_l[i], neg_l[i]) for i in range(4)]
    torch.testing.assert_close(terms.gg, torch.tensor(want_gg))
    torch.testing.assert_close(terms.gl, torch.tensor(want_gl))
    torch.testing.assert_close(terms.ll, torch.tensor(want_ll))
    weights = (1.0, 0.7, 0.4, 0.1)  # the default: layer 0 (E_B, the largest stride) heaviest, G_A's logits lightest
    expected = sum(w * (a + b + c) for w, a, b, c in zip(weights, want_gg, want_gl, want_ll))
    assert float(terms.total) == pytest.approx(expected, rel=1e-5)
    only_last = L.local_global_loss(q_g, q_l, k_g, k_l, neg_g, neg_l, weights=(0, 0, 0, 1))
    assert float(only_last.total) == pytest.approx(want_gg[3] + want_gl[3] + want_ll[3], rel=1e-5)
    with pytest.raises(ValueError, match="4 layers"):
        L.local_global_loss(q_g[:3], q_l, k_g, k_l, neg_g, neg_l)


# ---------------------------------------------------------------- views, patches, momentum, queue


def test_sample_crop_boxes_cover_60_percent_inside_the_image() -> None:
    boxes = L.sample_crop_boxes(200, 96, 160, generator=torch.Generator().manual_seed(0))
    x0, y0, x1, y1 = boxes.unbind(1)
    assert boxes.dtype == torch.long and boxes.shape == (200, 4)
    assert bool(((x0 >= 0) & (y0 >= 0) & (x1 <= 160) & (y1 <= 96)).all())
    assert bool((((x1 - x0) * (y1 - y0)) >= 0.6 * 96 * 160).all())
    assert int((x1 - x0).min()) < 150 and int(x0.max()) > 0  # the sizes and positions vary
    assert torch.equal(boxes, L.sample_crop_boxes(200, 96, 160, generator=torch.Generator().manual_seed(0)))


def test_local_patches_are_the_grid_cells_in_shuffled_order() -> None:
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    boxes = torch.tensor([[0, 0, 8, 8], [4, 0, 12, 8]])  # 8 x 8 crops = 4 x 4 cells of 2 x 2: no resampling
    shuffles = torch.stack([torch.arange(16).flip(0), torch.tensor([5, 0, 15, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12,
                                                                      13, 14])])
    patches = L.local_patches(x, boxes, shuffles, patch_hw=(2, 2))
    assert patches.shape == (2, 16, 3, 2, 2)
    for b in range(2):
        x0 = int(boxes[b, 0])
        for j, cell in enumerate(shuffles[b].tolist()):
            r, c = divmod(cell, 4)
            assert torch.equal(patches[b, j], x[b, :, 2 * r:2 * r + 2, x0 + 2 * c:x0 + 2 * c + 2])


def test_local_patches_resize_the_crop() -> None:
    """A 12 x 12 crop of 4 x 4 constant blocks, resized to 8 x 8 bilinearly: every output pixel interpolates inside
    one block (centres at 0.25 and 1.75 of each 3-pixel block), so patch j is the constant ``shuffles[j]``."""
    x = torch.full((1, 1, 16, 16), -5.0)
    x[0, 0, 3:15, 2:14] = torch.arange(16.0).view(4, 4).repeat_interleave(3, 0).repeat_interleave(3, 1)
    shuffles = torch.randperm(16, generator=torch.Generator().manual_seed(0))[None]
    patches = L.local_patches(x, torch.tensor([[2, 3, 14, 15]]), shuffles, patch_hw=(2, 2))
    torch.testing.assert_close(patches[0, :, 0], shuffles[0].float()[:, None, None].expand(16, 2, 2))
    with pytest.raises(ValueError, match="permutation"):
        L.local_patches(x, torch.tensor([[2, 3, 14, 15]]), torch.zeros(1, 16, dtype=torch.long), patch_hw=(2, 2))
    with pytest.raises(ValueError, match="outside"):
        L.local_patches(x, torch.tensor([[2, 3, 17, 15]]), shuffles, patch_hw=(2, 2))


def test_ema_update_arithmetic_and_buffers() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = L.momentum_copy(net)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        ema[0].weight.fill_(1.0)
        net[0].weight.fill_(3.0)
        net[1].running_mean.fill_(7.0)
    L.ema_update(ema, net, momentum=0.9)
    assert float(ema[0].weight) == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)  # 1.2
    L.ema_update(ema, net, momentum=0.9)
    assert float(ema[0].weight) == pytest.approx(0.9 * 1.2 + 0.1 * 3.0)  # 1.38
    assert float(ema[1].running_mean) == 7.0  # buffers are copied
    assert float(net[0].weight.detach()) == 3.0  # the source is untouched
    L.ema_update(ema, net, momentum=0.0)
    assert float(ema[0].weight) == 3.0
    with pytest.raises(ValueError, match="same parameter"):
        L.ema_update(ema, torch.nn.Linear(1, 1), momentum=0.5)
    with pytest.raises(ValueError, match="momentum"):
        L.ema_update(ema, net, momentum=1.5)


def test_queue_wraps_around_in_fifo_order() -> None:
    queue = L.NegativeQueue(size=5, dim=1, generator=torch.Generator().manual_seed(0))
    initial = queue.entries.clone()
    assert torch.allclose(initial.abs(), torch.ones(5, 1))  # random unit vectors in 1-D: +-1
    out1 = queue.enqueue(torch.tensor([[1.0], [2.0], [3.0]]))
    assert torch.equal(out1, initial[:3]) and int(queue.ptr) == 3
    out2 = queue.enqueue(torch.tensor([[4.0], [5.0], [6.0]]))  # rows 3, 4, then wraps to row 0
    assert torch.equal(out2, torch.cat([initial[3:], torch.tensor([[1.0]])]))
    assert queue().flatten().tolist() == [6.0, 2.0, 3.0, 4.0, 5.0]
    assert queue.ordered().flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 6.0] and int(queue.ptr) == 1
    queue.enqueue(torch.arange(10.0, 15.0)[:, None])  # a full turn
    assert queue.ordered().flatten().tolist() == [10.0, 11.0, 12.0, 13.0, 14.0] and int(queue.ptr) == 1
    assert set(queue.state_dict()) == {"entries", "ptr"}
    assert set(L.NegativeQueue(size=2, dim=1, persistent=False).state_dict()) == set()
    with pytest.raises(ValueError, match="enqueue"):
        queue.enqueue(torch.zeros(6, 1))


def test_one_local_global_step_trains_e_b_g_a_and_heads_only() -> None:
    """Query branch (E_B, G_A, heads) on view 1 and its patches, momentum copies on view 2; then enqueue and EMA."""
    torch.manual_seed(0)
    translator = AttentionTranslator(width=4, n_blocks=1)
    heads = LocalGlobalHeads(in_channels=translator.lg_channels, hidden=8, dim=6)
    enc_m, att_m, heads_m = (L.momentum_copy(m) for m in (translator.encoder, translator.attention, heads))
    queues_g = [L.NegativeQueue(size=8, dim=6) for _ in range(4)]
    queues_l = [L.NegativeQueue(size=8, dim=6) for _ in range(4)]
    gen = torch.Generator().manual_seed(1)
    x1 = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    x2 = x1.flip(3)  # a stand-in for a second augmentation
    boxes = L.sample_crop_boxes(2, 32, 32, generator=gen)
    p1 = L.local_patches(x1, boxes, L.sample_shuffles(2, generator=gen), patch_hw=(8, 8))  # (2, 16, 3, 8, 8)
    p2 = L.local_patches(x2, boxes, L.sample_shuffles(2, generator=gen), patch_hw=(8, 8))
    q_g = heads.embed_global(translator.lg_features(x1))
    q_l = heads.embed_local(translator.lg_features(p1.flatten(0, 1)))  # (32, 3, 8, 8): patches one by one
    with torch.no_grad():
        k_g = heads_m.embed_global(lg_features(enc_m, att_m, x2))
        k_l = heads_m.embed_local(lg_features(enc_m, att_m, p2.flatten(0, 1)))
    terms = L.local_global_loss(q_g, q_l, k_g, k_l, [q() for q in queues_g], [q() for q in queues_l])
    assert torch.isfinite(terms.total) and terms.gg.shape == (4,)
    terms.total.backward()
    for module in (translator.encoder, translator.attention, heads):
        assert all(p.grad is not None for p in module.parameters())
    assert all(p.grad is None for p in translator.content.parameters())  # L_GA does not reach G_C
    before = queues_g[3].entries.clone()
    for queue, keys in zip(queues_g + queues_l, k_g + k_l):
        queue.enqueue(keys)
    assert torch.equal(queues_g[3].entries[:2], k_g[3]) and torch.equal(queues_g[3].entries[2:], before[2:])
    weight_m = att_m.out[1].weight.clone()
    with torch.no_grad():
        translator.attention.out[1].weight.add_(1.0)
    L.ema_update(att_m, translator.attention, momentum=0.999)
    torch.testing.assert_close(att_m.out[1].weight, weight_m + 0.001 * (translator.attention.out[1].weight - weight_m))
