"""RegionCLIP's losses and text helpers: hand-computed values, dense loops written out here, two gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lowlabel.losses import regionclip as R

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def dense_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: float) -> tuple[float, float]:
    """(image -> text, text -> image) InfoNCE, one pair at a time."""
    n = image.shape[0]
    sim = [[scale * float(F.cosine_similarity(image[i], text[j], dim=0)) for j in range(n)] for i in range(n)]
    rows = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    cols = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return rows, cols


# --- 1. image-text InfoNCE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 8])
def test_identical_features_give_log_n(n: int) -> None:
    feats = torch.ones(n, 5)
    assert float(R.clip_loss(feats, feats, 100.0)) == pytest.approx(math.log(n), abs=1e-6)


def test_perfect_alignment_gives_zero() -> None:
    """One-hot pairs at scale 100: the positive leads every other logit by 100, so the loss is ~(N - 1) e^-100."""
    feats = torch.eye(4) * 3.0  # the norm does not matter: cosine
    assert float(R.clip_loss(feats, feats, 100.0)) == pytest.approx(0.0, abs=1e-12)


def test_clip_loss_is_the_mean_of_the_two_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    image, text = torch.randn(5, 6, generator=gen, dtype=torch.float64), torch.randn(5, 6, generator=gen,
                                                                                    dtype=torch.float64)
    rows, cols = dense_clip_loss(image, text, 4.0)
    assert rows != pytest.approx(cols)  # the two directions differ, so the mean is a real check
    assert float(R.clip_loss(image, text, 4.0)) == pytest.approx((rows + cols) / 2, rel=1e-10)


def test_logit_scale_starts_at_clip_value_is_clipped_and_learns() -> None:
    assert R.LogitScale()().item() == pytest.approx(1 / 0.07, rel=1e-6)
    fixed = R.LogitScale(temperature=0.01, learnable=False)
    assert float(fixed()) == pytest.approx(100.0, rel=1e-6) and not list(fixed.parameters())
    big = R.LogitScale()
    with torch.no_grad():
        big.log_scale.fill_(10.0)
    assert big().item() == pytest.approx(100.0, rel=1e-6)

    gen = torch.Generator().manual_seed(1)
    image = torch.randn(6, 8, generator=gen, requires_grad=True)
    text = torch.randn(6, 8, generator=gen)
    scale = R.LogitScale()
    opt = torch.optim.SGD([image, *scale.parameters()], lr=0.5)
    losses = []
    for _ in range(5):
        loss = R.clip_loss(image, text, scale())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert scale.log_scale.item() != pytest.approx(math.log(1 / 0.07))


def test_gathered_loss_equals_plain_loss_in_one_process() -> None:
    gen = torch.Generator().manual_seed(2)
    image, text = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    plain = R.clip_loss(image, text, 7.0)
    for sync in (False, True):
        torch.testing.assert_close(R.gathered_clip_loss(image, text, 7.0, sync_grads=sync), plain)
    torch.testing.assert_close(R.image_text_loss(image, text), R.clip_loss(image, text, 100.0))
    assert R.gather_features(image) is image


def _gather_in_two_processes(rank: int, init_file: str) -> None:
    """Rank 0 holds pairs 0..2, rank 1 pairs 3..4: the loss equals the single-process loss on all 5 pairs; the local
    rows get that loss's gradient (sync_grads=False) or the sum of both ranks' gradients, twice it (True)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        gen = torch.Generator().manual_seed(5)
        image = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        text = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
        R.clip_loss(image, text, 3.0).backward()
        rows = slice(0, 3) if rank == 0 else slice(3, 5)
        torch.testing.assert_close(R.gather_features(image.detach()[rows]), image.detach())
        for sync, factor in ((False, 1.0), (True, 2.0)):
            x = image.detach()[rows].clone().requires_grad_()
            y = text.detach()[rows].clone().requires_grad_()
            loss = R.gathered_clip_loss(x, y, 3.0, sync_grads=sync)
            loss.backward()
            torch.testing.assert_close(loss, R.clip_loss(image, text, 3.0).detach())
            torch.testing.assert_close(x.grad, factor * image.grad[rows])
            torch.testing.assert_close(y.grad, factor * text.grad[rows])
    finally:
        dist.destroy_process_group()


def test_gathered_loss_over_two_gloo_processes(tmp_path) -> None:
    # fork, not spawn: the children skip re-importing torch (0.1 s instead of 5 s); they only run tiny
    # single-threaded ops, so no OpenMP pool is inherited in use
    torch.multiprocessing.start_processes(_gather_in_two_processes, args=(str(tmp_path / "init"),), nprocs=2,
                                          start_method="fork")


# --- 2. region-text pretraining ----------------------------------------------------------------------------------


def test_fill_templates_is_template_major() -> None:
    prompts = R.fill_templates(["a {}.", "the {}"], ["cat", "dog"])
    assert prompts == ["a cat.", "a dog.", "the cat", "the dog"]


def test_prompt_ensemble_averages_unit_vectors() -> None:
    """Concept 0: [3, 4] and [0, 10] -> mean of [0.6, 0.8] and [0, 1] = [0.3, 0.9], normalised (a raw mean
    would give the direction of [1.5, 7]). Concept 1: [1, 0] and [2, 0] -> [1, 0]."""
    text_emb = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 10.0], [2.0, 0.0]]])  # (T=2, C=2, D=2)
    want = torch.tensor([[0.3, 0.9], [1.0, 0.0]])
    torch.testing.assert_close(R.prompt_ensemble(text_emb), want / want.norm(dim=1, keepdim=True))


def threshold_case() -> tuple[torch.Tensor, torch.Tensor]:
    """20 concepts (one-hot in 21 dims). Regions: exactly concept 3; equally like every concept (p = 1/20); and two
    regions whose cosine with concept 0 leads the others (0) by tau * ln 2.2 and tau * ln 2.0, so their top
    probability is 2.2 / (2.2 + 19) = 0.1038 (kept) and 2 / 21 = 0.0952 (dropped). The 21st dimension makes
    each region a unit vector, so cosines are the coordinates."""
    concepts = torch.eye(20, 21)
    regions = torch.zeros(4, 21)
    regions[0, 3] = 1.0
    regions[1, :20] = 1.0
    for row, ratio in ((2, 2.2), (3, 2.0)):
        lead = 0.01 * math.log(ratio)
        regions[row, 0], regions[row, 20] = lead, math.sqrt(1 - lead**2)
    return regions, concepts


def test_confidence_filter_keeps_exactly_the_confident_regions() -> None:
    regions, concepts = threshold_case()
    labels = R.pseudo_concept_labels(regions, concepts)
    assert labels.keep.tolist() == [True, False, True, False]
    assert labels.concepts.tolist() == [3, 0]
    want = torch.full((20,), 1 / 21.2)
    want[0] = 2.2 / 21.2
    torch.testing.assert_close(labels.probs[1], want)
    assert float(labels.probs[0, 3]) == pytest.approx(1.0)


def test_when_no_region_passes_the_official_code_keeps_them_all() -> None:
    regions = torch.ones(3, 21)  # every concept equally likely: 1/20 < 0.1
    concepts = torch.eye(20, 21)
    assert R.pseudo_concept_labels(regions, concepts).keep.tolist() == [True, True, True]
    none = R.pseudo_concept_labels(regions, concepts, keep_all_if_none=False)
    assert none.keep.tolist() == [False, False, False] and none.probs.shape == (0, 20)


def test_distillation_is_zero_for_the_teachers_own_distribution() -> None:
    gen = torch.Generator().manual_seed(3)
    feats, concepts = torch.randn(6, 8, generator=gen), torch.randn(5, 8, generator=gen)
    labels = R.pseudo_concept_labels(feats, concepts, keep_all_if_none=True, threshold=0.0)
    kl = R.concept_distillation_loss(feats[labels.keep], concepts, labels.probs)
    assert float(kl) == pytest.approx(0.0, abs=1e-6)


def test_distillation_hand_value_and_batch_mean() -> None:
    """tau = 1, student e0 against concepts e0, e1: q = (e, 1) / (e + 1). Row 0 teacher (0.5, 0.5):
    KL = 0.5 ln(0.5 / q0) + 0.5 ln(0.5 / q1) = 0.1201145; row 1 teacher = q: 0. Batch mean over 2 rows."""
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    q0 = math.e / (math.e + 1)
    teacher = torch.tensor([[0.5, 0.5], [q0, 1 - q0]])
    kl = R.concept_distillation_loss(student, torch.eye(2), teacher, temperature=1.0)
    assert float(kl) == pytest.approx(0.1201145 / 2, rel=1e-5)
    assert float(kl) == pytest.approx((0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / (1 - q0))) / 2, rel=1e-5)


def test_multi_positive_nce_hand_case() -> None:
    """softmax of [0, ln 2, ln 3] = (1, 2, 3) / 6: positives {0, 2} -> -ln(4/6); positive {1} -> -ln(2/6)."""
    row = torch.tensor([0.0, math.log(2), math.log(3)])
    logits = torch.stack([row, row])
    positives = torch.tensor([[True, False, True], [False, True, False]])
    want = (math.log(1.5) + math.log(3.0)) / 2
    assert float(R.multi_positive_nce(logits, positives)) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        R.multi_positive_nce(logits, torch.tensor([[True, False, False], [False, False, False]]))


def test_region_concept_contrastive_equals_a_dense_loop() -> None:
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    concept_emb = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    concepts = torch.tensor([2, 0, 2, 3, 0, 2])  # regions 0, 2, 5 share concept 2; 1 and 4 share 0
    total = 0.0
    for r in range(6):
        logit = [float(F.cosine_similarity(feats[r], concept_emb[concepts[s]], dim=0)) / 0.01 for s in range(6)]
        top = max(logit)
        pos = sum(math.exp(v - top) for s, v in enumerate(logit) if concepts[s] == concepts[r])
        total += -math.log(pos / sum(math.exp(v - top) for v in logit))
    got = R.region_concept_contrastive_loss(feats, concept_emb, concepts)
    assert float(got) == pytest.approx(total / 6, rel=1e-9)
    assert R.concept_positive_mask(concepts)[0].tolist() == [True, False, True, False, False, True]


def test_region_losses_go_down_under_sgd_and_handle_no_region() -> None:
    gen = torch.Generator().manual_seed(6)
    teacher, concept_emb = torch.randn(8, 6, generator=gen), torch.randn(5, 6, generator=gen)
    labels = R.pseudo_concept_labels(teacher, concept_emb, threshold=0.0)
    student = torch.randn(8, 6, generator=gen, requires_grad=True)
    opt = torch.optim.SGD([student], lr=0.01)
    losses = []
    for _ in range(5):
        loss = (R.concept_distillation_loss(student, concept_emb, labels.probs)
                + R.region_concept_contrastive_loss(student, concept_emb, labels.concepts))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    empty = student[:0]
    zero = R.concept_distillation_loss(empty, concept_emb, labels.probs[:0])
    zero = zero + R.region_concept_contrastive_loss(empty, concept_emb, labels.concepts[:0])
    assert zero.item() == 0.0 and zero.requires_grad


# --- 3. open-vocabulary detection transfer -----------------------------------------------------------------------


def test_ovd_logits_cosine_over_tau_and_zero_background_last() -> None:
    """Regions [2, 0] and [0, 3] against classes [1, 0] and [1, 1]: cosines (1, 1/sqrt 2) and (0, 1/sqrt 2)."""
    logits = R.ovd_logits(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(logits, torch.tensor([[100.0, 100 * s, 0.0], [0.0, 100 * s, 0.0]]))
    assert logits.shape == (2, 3) and torch.equal(logits[:, 2], torch.zeros(2))  # background = column C = 2
    # a trainable background vector (0.3, -0.4), not normalised: its dot product with the unit regions / tau
    learnt = R.ovd_logits(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
                          background=torch.tensor([0.3, -0.4]))
    torch.testing.assert_close(learnt[:, 2], torch.tensor([30.0, -40.0]))
    torch.testing.assert_close(learnt[:, :2], logits[:, :2])


def test_focal_scaling_hand_case() -> None:
    """C = 1, logits (ln 3, 0): p = (0.75, 0.25). A class-0 row: CE ln(4/3), factor 0.25^0.5 = 0.5. A background
    row: CE ln 4, factor 0.75^0.5, weight 0.2. Plain mean over the 2 rows."""
    logits = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0]])
    targets = torch.tensor([0, 1])
    want = (0.5 * math.log(4 / 3) + 0.2 * math.sqrt(0.75) * math.log(4)) / 2
    assert float(R.focal_scaled_cross_entropy(logits, targets)) == pytest.approx(want, rel=1e-6)
    plain = R.focal_scaled_cross_entropy(logits, targets, gamma=0.0, background_weight=1.0)
    torch.testing.assert_close(plain, F.cross_entropy(logits, targets))


def test_focal_equals_the_direct_formula_and_keeps_finite_gradients_when_saturated() -> None:
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(6, 4, generator=gen) * 3
    targets = torch.tensor([0, 3, 1, 3, 2, 0])
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_t = torch.softmax(logits, dim=1)[torch.arange(6), targets]
    weight = torch.where(targets == 3, 0.2, 1.0)
    direct = (ce * (1 - p_t) ** 0.5 * weight).mean()
    torch.testing.assert_close(R.focal_scaled_cross_entropy(logits, targets), direct)

    cos = torch.tensor([[0.5, 0.2]], requires_grad=True)  # a cosine lead of 0.3: p_t rounds to 1 in float32
    R.focal_scaled_cross_entropy(R.ovd_logits(cos, torch.eye(2)), torch.tensor([0])).backward()
    assert torch.isfinite(cos.grad).all()


def test_background_weighted_cross_entropy_is_a_weighted_mean() -> None:
    logits = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0]])
    got = R.background_weighted_cross_entropy(logits, torch.tensor([0, 1]))
    assert float(got) == pytest.approx((math.log(4 / 3) + 0.8 * math.log(4)) / 1.8, rel=1e-6)


def test_region_distillation_l1_hand_values() -> None:
    a = torch.tensor([[3.0, 0.0], [0.0, 2.0]], requires_grad=True)
    target = torch.tensor([[0.0, 5.0], [0.0, 1.0]])  # unit: (0, 1) twice
    # region 0: |1 - 0| + |0 - 1| = 2; region 1: identical directions, 0; mean over the regions: 1
    loss = R.region_distillation_l1(a, target)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert a.grad is not None and target.grad is None
    assert R.region_distillation_l1(a[:0], target[:0]).item() == 0.0  # no region
    with pytest.raises(ValueError, match="one shape"):
        R.region_distillation_l1(a, target[:1])


def test_classifier_categories_are_base_or_all_never_novel_only() -> None:
    emb = torch.arange(8.0).view(4, 2)
    is_base = torch.tensor([True, False, True, False])
    base, base_ids = R.classifier_categories(emb, is_base, categories="base")
    assert base_ids.tolist() == [0, 2] and torch.equal(base, emb[[0, 2]])
    every, all_ids = R.classifier_categories(emb, is_base, categories="all")
    assert all_ids.tolist() == [0, 1, 2, 3] and torch.equal(every, emb)
    with pytest.raises(ValueError, match="near-zero AP"):
        R.classifier_categories(emb, is_base, categories="novel")  # type: ignore[arg-type]


# --- 4. concept pool from captions -------------------------------------------------------------------------------

VOCAB = {
    "person": ["man", "woman", "people"],
    "dog": [],
    "hot dog": ["hotdog"],
    "traffic light": [],
    "bus": [],
    "puppy": [],
    "glasses": ["spectacles"],
    "box": "crate",
}


def test_extract_concepts_synonyms_plurals_punctuation_and_bigrams() -> None:
    captions = [
        "A man walks his dog, next to two buses.",
        "Hot-dog stand; PEOPLE eating hot dogs and a hotdog!",
        "Puppies near the traffic lights... the dog's glasses",
        "The bus stops at a crate of boxes",
        "A dog in a hot tub",
        "Two women",  # irregular plural without a synonym: not found
        "",
    ]
    assert R.extract_concepts(captions, VOCAB) == [
        ["person", "dog", "bus"],
        ["hot dog", "person"],
        ["puppy", "traffic light", "dog", "glasses"],
        ["bus", "box"],
        ["dog"],
        [],
        [],
    ]
    assert R.extract_concepts(["two buses and dogs, one bus"], VOCAB, plurals=False) == [["bus"]]


def test_extract_concepts_rejects_ambiguous_or_empty_forms() -> None:
    with pytest.raises(ValueError, match="names both"):
        R.extract_concepts(["x"], {"cat": ["kitty"], "kitten": ["Kitty!"]})
    with pytest.raises(ValueError, match="no words"):
        R.extract_concepts(["x"], {"cat": ["..."]})
