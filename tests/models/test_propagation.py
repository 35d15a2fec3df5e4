"""Label propagation: a dense re-derivation of one step (mutual matching, window, top-k with and without
renormalising, joint context), chunking changes nothing, labels follow features that move, the local window,
norm_mask, and the paper / CRW settings."""

from __future__ import annotations

import pytest
import torch

from lowlabel.models.propagation import (
    CRW,
    PAPER,
    PropagationConfig,
    norm_mask,
    propagate_step,
    propagate_video,
    to_label_map,
)


def dense_step(ref: torch.Tensor, labels: torch.Tensor, tgt: torch.Tensor, cfg: PropagationConfig,
               hw: tuple[int, int]) -> torch.Tensor:
    """The same step written densely from the formulas in the module docstring, one target cell at a time."""
    a = ref.t() @ tgt  # (N_ref, N)
    if cfg.mutual:
        a = a * (a / (a.max(dim=1, keepdim=True).values + 1e-5)) * (a / (a.max(dim=0, keepdim=True).values + 1e-5))
    a = a / cfg.temperature
    h, w = hw
    frames = ref.shape[1] // (h * w)
    out = torch.zeros(labels.shape[0], tgt.shape[1])
    for j in range(tgt.shape[1]):
        col = a[:, j].clone()
        if cfg.radius:
            for i in range(ref.shape[1]):
                cell = i % (h * w)
                if abs(cell // w - j // w) > cfg.radius or abs(cell % w - j % w) > cfg.radius:
                    col[i] = float("-inf")
        prob = torch.softmax(col, dim=0)
        keep = torch.argsort(prob, descending=True)[: cfg.topk]
        weights = prob[keep] / prob[keep].sum() if cfg.renormalize else prob[keep]
        out[:, j] = (labels[:, keep] * weights).sum(dim=1)
    assert frames >= 1
    return out


@pytest.mark.parametrize("cfg", [
    PropagationConfig(topk=3, chunk=5),
    PropagationConfig(topk=4, radius=1, temperature=0.5, normalize=False, mutual=False, renormalize=True, chunk=7),
    PropagationConfig(topk=2, mutual=True, radius=2, chunk=3),
], ids=["paper-like", "window-renormalised", "mutual-window"])
def test_one_step_matches_the_dense_formula(cfg: PropagationConfig) -> None:
    gen = torch.Generator().manual_seed(0)
    hw = (4, 5)
    ref, tgt = torch.randn(6, 20, generator=gen), torch.randn(6, 20, generator=gen)
    labels = torch.rand(3, 20, generator=gen)
    torch.testing.assert_close(propagate_step(ref, labels, tgt, cfg, hw), dense_step(ref, labels, tgt, cfg, hw))


def test_joint_context_ranks_the_cells_of_all_frames_together() -> None:
    gen = torch.Generator().manual_seed(1)
    hw = (3, 3)
    cfg = PropagationConfig(topk=4, radius=1, mutual=False, joint=True, renormalize=True, temperature=0.1, chunk=4)
    ref = torch.randn(5, 27, generator=gen)  # three reference frames of 9 cells
    labels, tgt = torch.rand(2, 27, generator=gen), torch.randn(5, 9, generator=gen)
    torch.testing.assert_close(propagate_step(ref, labels, tgt, cfg, hw), dense_step(ref, labels, tgt, cfg, hw))


def test_chunking_does_not_change_the_result() -> None:
    gen = torch.Generator().manual_seed(2)
    ref, tgt, labels = torch.randn(8, 48, generator=gen), torch.randn(8, 48, generator=gen), torch.rand(4, 48)
    for base in (PAPER, CRW):
        one = propagate_step(ref, labels, tgt, PropagationConfig(**{**base.__dict__, "chunk": 48}), (6, 8))
        many = propagate_step(ref, labels, tgt, PropagationConfig(**{**base.__dict__, "chunk": 5}), (6, 8))
        torch.testing.assert_close(one, many)


def moving_encoder(h: int, w: int):
    """Frame t's cell (y, x) carries the position code of (y, x - t): the content moves right one cell per frame.
    Cells entering from the left get codes no other cell has."""
    def encode(frame: torch.Tensor) -> torch.Tensor:
        t = int(frame[0, 0, 0])
        codes = torch.zeros(h * w + h * 8, h, w)
        for y in range(h):
            for x in range(w):
                src = x - t
                codes[y * w + src if src >= 0 else h * w + y * 8 + (-src), y, x] = 1.0
        return codes
    return encode


@pytest.mark.parametrize("cfg", [PAPER, CRW], ids=["paper", "crw"])
def test_labels_follow_the_features_through_the_video(cfg: PropagationConfig) -> None:
    h, w = 4, 8
    first = torch.zeros(h, w, dtype=torch.long)
    first[1:3, 0:2] = 1  # object 1 at the left, object 2 next to it
    first[0:2, 2:4] = 2
    frames = [torch.full((1, h, w), float(t)) for t in range(4)]
    out = list(propagate_video(moving_encoder(h, w), frames, first, cfg=cfg, stride=1))
    assert len(out) == 4 and torch.equal(out[0], first.to(torch.uint8))
    for t in range(1, 4):
        expected = torch.zeros(h, w, dtype=torch.uint8)
        expected[:, t:] = first[:, : w - t].to(torch.uint8)
        assert torch.equal(out[t][:, t:], expected[:, t:]), (t, out[t])


def test_the_local_window_keeps_a_far_better_match_out() -> None:
    """Reference cell 0 (label 1) matches target cell 3 best, but is 3 cells away; with radius 1 the label comes
    from the neighbour (label 2) instead."""
    ref = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]])  # (C=2, N=4): a 1 x 4 map
    tgt = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.3]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    far = propagate_step(ref, labels, tgt, PropagationConfig(topk=1, mutual=False), (1, 4))
    near = propagate_step(ref, labels, tgt, PropagationConfig(topk=1, mutual=False, radius=1), (1, 4))
    assert far[0, 3] > 0 and far[1, 3] == 0
    assert near[0, 3] == 0 and near[1, 3] > 0


def test_norm_mask_and_label_map() -> None:
    soft = torch.tensor([[[0.2, 0.4], [0.6, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.1, 0.1], [0.1, 0.3]]])
    normed = norm_mask(soft)
    torch.testing.assert_close(normed[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.equal(normed[1], soft[1])  # max not positive: unchanged
    torch.testing.assert_close(normed[2], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    ids = to_label_map(soft, stride=2, size=(3, 5))
    assert ids.shape == (3, 5) and ids.dtype == torch.uint8 and int(ids.max()) <= 2


def test_settings_are_the_papers() -> None:
    assert (PAPER.topk, PAPER.context, PAPER.radius, PAPER.mutual, PAPER.joint) == (5, 7, 0, True, False)
    assert (CRW.topk, CRW.context, CRW.radius, CRW.temperature, CRW.normalize) == (10, 20, 12, 0.05, True)
    with pytest.raises(ValueError):
        PropagationConfig(topk=0)
