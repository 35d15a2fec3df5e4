"""RegionCLIP's losses and text-side helpers as tensor operations (Zhong et al., CVPR 2022, arXiv:2112.09106;
``microsoft/RegionCLIP``). Constants and formulas follow the reference notes, methods.md section 4.

Pretraining (student V, frozen CLIP teacher V_t and text encoder L; v = region features, T = concept embeddings):

* :func:`prompt_ensemble`: T (K, D) = normalize(mean over templates of normalize(L(template(concept)))).
* :func:`pseudo_concept_labels`: p = softmax(cos(V_t(r), T) / 0.01); a region is kept when max_k p > 0.1 and its
  concept is c(r) = argmax_k p.
* :func:`concept_distillation_loss`: KL(p || softmax(cos(V(r), T) / 0.01)), batch mean over the kept regions.
* :func:`region_concept_contrastive_loss`: logits cos(v_r, T[c(r')]) / 0.01 over the kept regions (R x R); every r'
  with c(r') = c(r) is a positive (:func:`multi_positive_nce`, the official ``MILCrossEntropy``).
* :func:`image_text_loss`: CLIP's symmetric InfoNCE (:func:`clip_loss`) between whole-image embeddings and captions,
  gathered across processes (:func:`gathered_clip_loss`).
* The total is L_dist + L_cntrst + L_img with unit weights.

Transfer to open-vocabulary detection (``CLIPFastRCNN``):

* :func:`ovd_logits`: cos(region, class text) / 0.01 for the C classes, then a zero background logit (column C).
* :func:`focal_scaled_cross_entropy` (COCO: gamma 0.5, background rows x 0.2) and
  :func:`background_weighted_cross_entropy` (LVIS: plain CE, background class weight 0.8).
* :func:`classifier_categories`: the text classifier over the base classes (training) or all classes (test).

Concept pool: :func:`extract_concepts` finds vocabulary concepts (names and synonyms) in captions.

Shapes: R regions, K concepts, C classes, N image-caption pairs, D embedding dim, T prompt templates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

# CLIP (Radford et al., ICML 2021, arXiv:2103.00020, section 2.5): the temperature starts at 0.07 and the logit
# scale 1 / tau is clipped so that it never exceeds 100.
CLIP_INIT_TEMPERATURE = 0.07
CLIP_MAX_LOGIT_SCALE = 100.0
# methods.md 4a.4 (``get_psuedo_concept_labels(s_temp=0.01)``): the teacher's region-concept softmax temperature.
TEACHER_TEMPERATURE = 0.01
# methods.md 4a.5-6 (``MODEL.CLIP.CLSS_TEMP``): the student's distillation, contrastive and image-text temperature.
MATCHING_TEMPERATURE = 0.01
# methods.md 4a.4 (``MODEL.CLIP.CONCEPT_THRES``): a region is kept when its top concept probability exceeds this.
CONCEPT_THRESHOLD = 0.1
# methods.md 4a' (``CLSS_TEMP`` in ``FastRCNNOutputLayers``): cosine logits of the OVD classifier are divided by it.
OVD_TEMPERATURE = 0.01
# methods.md 4a' (COCO OVD config: ``FOCAL_SCALED_LOSS 0.5``, ``BG_CLS_LOSS_WEIGHT 0.2``).
FOCAL_GAMMA = 0.5
COCO_BACKGROUND_WEIGHT = 0.2
# methods.md 4a' (LVIS config: no focal scaling, ``BG_CLS_LOSS_WEIGHT 0.8``).
LVIS_BACKGROUND_WEIGHT = 0.8


def _check_pairs(image: Tensor, text: Tensor) -> None:
    if image.dim() != 2 or image.shape != text.shape:
        raise ValueError(f"need two (N, D) tensors of one shape, got {tuple(image.shape)} and {tuple(text.shape)}")


# --- 1. image-text InfoNCE ---------------------------------------------------------------------------------------


class LogitScale(nn.Module):
    """CLIP's logit scale 1 / tau, stored as log(1 / tau) and clipped at ``max_scale`` when read.

    ``LogitScale()`` is CLIP's learnable scale (starts at 1 / 0.07). RegionCLIP fixes tau = 0.01:
    ``LogitScale(temperature=MATCHING_TEMPERATURE, learnable=False)`` returns 100.
    """

    log_scale: Tensor

    def __init__(self, *, temperature: float = CLIP_INIT_TEMPERATURE, learnable: bool = True,
                 max_scale: float = CLIP_MAX_LOGIT_SCALE) -> None:
        super().__init__()
        if temperature <= 0.0 or max_scale <= 0.0:
            raise ValueError(f"temperature and max_scale must be positive, got {temperature}, {max_scale}")
        self.max_log_scale = math.log(max_scale)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self) -> Tensor:
        """The scalar scale exp(min(log_scale, log(max_scale)))."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()


def clip_loss(image: Tensor, text: Tensor, scale: Tensor | float) -> Tensor:
    """CLIP's symmetric InfoNCE: pair i is the positive of row i and of column i.

    ``logits = scale * cos(image_i, text_j)`` (N, N); the loss is
    ``(CE(logits, arange(N)) + CE(logits^T, arange(N))) / 2``, each CE a mean over N.

    Args:
        image: (N, D) image embeddings (normalised here).
        text: (N, D) caption embeddings of the same N pairs (normalised here).
        scale: 1 / tau, a float or a scalar tensor (e.g. ``LogitScale()()``, which then learns).
    """
    _check_pairs(image, text)
    logits = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()  # (N_image, N_text)
    labels = torch.arange(image.shape[0], device=image.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def _world() -> tuple[int, int]:
    """(world size, rank); (1, 0) when torch.distributed is absent or not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _all_gather_rows(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """Every rank's ``x`` (``sizes[i]`` rows on rank i), without gradient; shards are padded to one size to travel."""
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [part[:n] for part, n in zip(parts, sizes)]


class _GatherSumGrads(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient of this rank's rows (diffdist's ``all_gather``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat(_all_gather_rows(x, sizes))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()  # all_reduce works in place
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None, None


def gather_features(x: Tensor, *, sync_grads: bool = False) -> Tensor:
    """The rows of ``x`` from every process, in rank order; ``x`` itself when not distributed (world size 1).

    Ranks may hold different numbers of rows (the official ``gather_tensors`` instead cuts every shard to the
    smallest one). Gradients:

    * ``sync_grads=False``: only the local shard carries gradient (the other shards are constants), as open_clip
      does by default. After DDP averages the ranks, a parameter receives 1 / world_size of the full-batch gradient.
    * ``sync_grads=True``: backward sums, over all ranks, the gradient of this rank's rows (diffdist's
      ``all_gather``, which RegionCLIP uses). After DDP averaging, that is the full-batch loss's gradient.

    Args:
        x: (n_rank, ...) this process's rows.

    Returns:
        (sum of n_rank, ...).
    """
    world, rank = _world()
    if world == 1:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    if sync_grads:
        return _GatherSumGrads.apply(x, sizes, rank)
    parts = _all_gather_rows(x, sizes)
    parts[rank] = x  # the local shard keeps its graph
    return torch.cat(parts)


def gathered_clip_loss(image: Tensor, text: Tensor, scale: Tensor | float, *, sync_grads: bool = False) -> Tensor:
    """:func:`clip_loss` over the pairs of all processes (each computes the same full-batch value); equal to
    :func:`clip_loss` in a single process. See :func:`gather_features` for ``sync_grads``."""
    _check_pairs(image, text)
    return clip_loss(gather_features(image, sync_grads=sync_grads), gather_features(text, sync_grads=sync_grads),
                     scale)


def image_text_loss(image: Tensor, text: Tensor, *, temperature: float = MATCHING_TEMPERATURE, gather: bool = True,
                    sync_grads: bool = True) -> Tensor:
    """RegionCLIP's L_img (methods.md 4a.6): :func:`clip_loss` at a fixed tau = 0.01 between the whole-image box
    embeddings (N, D) and the captions' EOT embeddings (N, D), gathered across processes (``GATHER_GPUS``) with the
    gradients summed back to each shard as the official diffdist gather does."""
    if gather:
        return gathered_clip_loss(image, text, 1.0 / temperature, sync_grads=sync_grads)
    return clip_loss(image, text, 1.0 / temperature)


# --- 2. region-text pretraining ----------------------------------------------------------------------------------


def fill_templates(templates: Sequence[str], names: Sequence[str]) -> list[str]:
    """The T * C prompts ``template.format(name)``, template-major, so that their (T * C, D) text embeddings reshape
    to the (T, C, D) that :func:`prompt_ensemble` takes."""
    return [template.format(name) for template in templates for name in names]


def prompt_ensemble(text_emb: Tensor) -> Tensor:
    """One embedding per concept from its prompt templates (methods.md 4a.3).

    Args:
        text_emb: (T, C, D) text embeddings, one per template and concept.

    Returns:
        (C, D) unit vectors: the mean over templates of the unit-normalised embeddings, normalised again.
    """
    if text_emb.dim() != 3:
        raise ValueError(f"text_emb must be (T, C, D), got {tuple(text_emb.shape)}")
    return F.normalize(F.normalize(text_emb, dim=-1).mean(dim=0), dim=-1)  # (T, C, D) -> (C, D)


class ConceptLabels(NamedTuple):
    """Pseudo region-concept labels from the teacher (:func:`pseudo_concept_labels`)."""

    keep: Tensor  # (R,) bool: the regions that pass the confidence filter
    concepts: Tensor  # (R_keep,) long: c(r) = argmax_k p of each kept region
    probs: Tensor  # (R_keep, K): the teacher's distribution p of each kept region (the distillation target)


@torch.no_grad()
def pseudo_concept_labels(teacher_feats: Tensor, concept_emb: Tensor, *, temperature: float = TEACHER_TEMPERATURE,
                          threshold: float = CONCEPT_THRESHOLD, keep_all_if_none: bool = True) -> ConceptLabels:
    """The teacher's region-concept matching (methods.md 4a.4), without gradient.

    p = softmax(cos(teacher_feats, concept_emb) / temperature) over the K concepts; a region is kept when
    max_k p > threshold (strictly). When no region passes, the official code keeps them all
    (``keep_all_if_none=True``); with False the result is then empty.

    Args:
        teacher_feats: (R, D) the frozen teacher's region embeddings.
        concept_emb: (K, D) concept text embeddings (:func:`prompt_ensemble`).
    """
    if teacher_feats.dim() != 2 or concept_emb.dim() != 2 or teacher_feats.shape[1] != concept_emb.shape[1]:
        raise ValueError(f"need (R, D) and (K, D), got {tuple(teacher_feats.shape)}, {tuple(concept_emb.shape)}")
    cos = F.normalize(teacher_feats, dim=-1) @ F.normalize(concept_emb, dim=-1).t()  # (R, K)
    probs = torch.softmax(cos / temperature, dim=1)
    top, concepts = probs.max(dim=1)  # (R,), (R,)
    keep = top > threshold
    if keep_all_if_none and not bool(keep.any()):
        keep = torch.ones_like(keep)
    return ConceptLabels(keep, concepts[keep], probs[keep])


def concept_positive_mask(concepts: Tensor) -> Tensor:
    """(R, R) bool Y with Y[r, r'] = [c(r) = c(r')], for (R,) concept indices."""
    return concepts[:, None] == concepts[None, :]


def concept_distillation_loss(student_feats: Tensor, concept_emb: Tensor, teacher_probs: Tensor, *,
                              temperature: float = MATCHING_TEMPERATURE) -> Tensor:
    """L_dist = KL(p_teacher || softmax(cos(student_feats, concept_emb) / temperature)), summed over concepts and
    averaged over regions (``F.kl_div(..., reduction='batchmean')``; methods.md 4a.5).

    Args:
        student_feats: (R, D) the student's embeddings of the kept regions.
        concept_emb: (K, D) concept embeddings.
        teacher_probs: (R, K) ``ConceptLabels.probs``.

    Returns:
        A scalar; 0 (attached to the graph) when R = 0.
    """
    logits = F.normalize(student_feats, dim=-1) @ F.normalize(concept_emb, dim=-1).t() / temperature  # (R, K)
    if teacher_probs.shape != logits.shape:
        raise ValueError(f"teacher_probs {tuple(teacher_probs.shape)} do not match logits {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.kl_div(F.log_softmax(logits, dim=1), teacher_probs, reduction="batchmean")


def multi_positive_nce(logits: Tensor, positives: Tensor) -> Tensor:
    """-mean_r log sum_{j positive for r} softmax(logits_r)_j: InfoNCE with several positives per row, their
    probabilities summed (the official ``MILCrossEntropy`` with ``avg_positives=False``).

    Args:
        logits: (R, M).
        positives: (R, M) bool; every row needs at least one positive.

    Returns:
        A scalar; 0 (attached to the graph) when R = 0.
    """
    if positives.shape != logits.shape or positives.dtype != torch.bool:
        raise ValueError(f"positives must be a bool tensor shaped like logits {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if not bool(positives.any(dim=1).all()):
        raise ValueError("every row of positives needs at least one True (else its loss is infinite)")
    pos = logits.masked_fill(~positives, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(pos, dim=1)).mean()


def region_concept_contrastive_loss(student_feats: Tensor, concept_emb: Tensor, concepts: Tensor, *,
                                    temperature: float = MATCHING_TEMPERATURE) -> Tensor:
    """L_cntrst (methods.md 4a.5): region r against the target concepts of all kept regions of the batch.

    logits[r, r'] = cos(student_feats_r, concept_emb[c(r')]) / temperature (R, R); the positives of r are all r' with
    c(r') = c(r) (itself included), scored by :func:`multi_positive_nce`.

    Args:
        student_feats: (R, D) the student's embeddings of the kept regions.
        concept_emb: (K, D) concept embeddings.
        concepts: (R,) long ``ConceptLabels.concepts``.
    """
    if concepts.shape != student_feats.shape[:1]:
        raise ValueError(f"concepts {tuple(concepts.shape)} do not match student_feats {tuple(student_feats.shape)}")
    targets = F.normalize(concept_emb[concepts], dim=-1)  # (R, D)
    logits = F.normalize(student_feats, dim=-1) @ targets.t() / temperature  # (R, R)
    return multi_positive_nce(logits, concept_positive_mask(concepts))


# --- 3. open-vocabulary detection transfer -----------------------------------------------------------------------


def ovd_logits(region_feats: Tensor, class_emb: Tensor, *, temperature: float = OVD_TEMPERATURE,
               background: Tensor | None = None) -> Tensor:
    """The OVD classifier with frozen text weights (methods.md 4a').

    Args:
        region_feats: (R, D) box-head embeddings.
        class_emb: (C, D) class text embeddings (:func:`classifier_categories`).
        background: None for the official zero, frozen background embedding; else a (D,) vector, not normalised,
            whose dot product with the unit region embedding is the background's cosine (the official
            ``cls_bg_score`` linear layer with its weight left trainable, initialised at 0).

    Returns:
        (R, C + 1): cos(region, class) / temperature in columns 0..C-1 and the background logit in column C
        (detectron2's background-last convention), always 0 unless ``background`` is given.
    """
    if region_feats.dim() != 2 or class_emb.dim() != 2 or region_feats.shape[1] != class_emb.shape[1]:
        raise ValueError(f"need (R, D) and (C, D), got {tuple(region_feats.shape)}, {tuple(class_emb.shape)}")
    unit = F.normalize(region_feats, dim=-1)  # (R, D)
    cos = unit @ F.normalize(class_emb, dim=-1).t()  # (R, C)
    bg = cos.new_zeros(cos.shape[0], 1) if background is None else unit @ background.reshape(-1, 1)  # (R, 1)
    return torch.cat([cos, bg], dim=1) / temperature  # (R, C + 1)


def region_distillation_l1(region_feats: Tensor, target_feats: Tensor) -> Tensor:
    """ViLD-image's distillation: the L1 distance between unit region embeddings and unit targets, summed over the
    embedding and averaged over the regions (0 for no regions).

    Args:
        region_feats: (R, D) the trained box head's embeddings.
        target_feats: (R, D) the targets of the same regions (no gradient flows into them).
    """
    if region_feats.shape != target_feats.shape or region_feats.dim() != 2:
        raise ValueError(f"need two (R, D) of one shape, got {tuple(region_feats.shape)}, {tuple(target_feats.shape)}")
    if len(region_feats) == 0:
        return region_feats.sum() * 0.0
    diff = F.normalize(region_feats, dim=-1) - F.normalize(target_feats.detach(), dim=-1)
    return diff.abs().sum(dim=1).mean()


def _check_targets(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 2 or logits.shape[1] < 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits (R, C + 1) with C >= 1 and targets (R,), got {tuple(logits.shape)}, "
                         f"{tuple(targets.shape)}")


def focal_scaled_cross_entropy(logits: Tensor, targets: Tensor, *, gamma: float = FOCAL_GAMMA,
                               background_weight: float = COCO_BACKGROUND_WEIGHT) -> Tensor:
    """mean_r w_r * CE_r * (1 - p_t)^gamma, w_r = background_weight on background rows, else 1 (methods.md 4a').

    A plain mean over all R regions, as the official ``focal_loss`` (not normalised by the weights). The factor is
    computed as exp(gamma * log sum_{k != t} p_k), the same value as ``(1 - p_t) ** gamma`` but with a finite gradient
    when p_t rounds to 1 (at tau = 0.01 a cosine lead of ~0.17 does that in float32, and the official expression then
    back-propagates NaN).

    Args:
        logits: (R, C + 1) from :func:`ovd_logits`, background last.
        targets: (R,) long in [0, C]; C is background.

    Returns:
        A scalar; 0 (attached to the graph) when R = 0.
    """
    _check_targets(logits, targets)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    target_logit = logits.gather(1, targets[:, None])[:, 0]  # (R,)
    total = torch.logsumexp(logits, dim=1)  # (R,)
    others = logits.scatter(1, targets[:, None], float("-inf"))  # (R, C + 1), the target column removed
    log_rest = torch.logsumexp(others, dim=1) - total  # log(1 - p_t)
    loss = (total - target_logit) * torch.exp(gamma * log_rest)  # CE * (1 - p_t)^gamma
    weight = torch.where(targets == logits.shape[1] - 1, background_weight, 1.0).to(loss.dtype)
    return (loss * weight).mean()


def background_weighted_cross_entropy(logits: Tensor, targets: Tensor, *,
                                      background_weight: float = LVIS_BACKGROUND_WEIGHT) -> Tensor:
    """The plain CE with a class weight on background (the official non-focal branch, LVIS).

    ``F.cross_entropy(weight=...)``: sum_r w_r CE_r / sum_r w_r, a weighted mean, unlike
    :func:`focal_scaled_cross_entropy`'s plain mean.

    Args:
        logits: (R, C + 1), background last.
        targets: (R,) long in [0, C].
    """
    _check_targets(logits, targets)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    weight = torch.ones(logits.shape[1], dtype=logits.dtype, device=logits.device)
    weight[-1] = background_weight
    return F.cross_entropy(logits, targets, weight=weight)


def classifier_categories(class_emb: Tensor, is_base: Tensor, *,
                          categories: Literal["base", "all"]) -> tuple[Tensor, Tensor]:
    """The classes the OVD classifier scores: "base" for training, "all" (base + novel) for testing.

    There is no novel-only option: a classifier over the novel classes alone labels every base object as some novel
    class, which gives near-zero AP (RegionCLIP issues #81, #98); the generalised test scores all classes jointly
    and splits the AP by class afterwards.

    Args:
        class_emb: (C_all, D) text embeddings of every class of the dataset.
        is_base: (C_all,) bool, True on the base (training) classes.
        categories: "base" or "all".

    Returns:
        ((C', D) embeddings, (C',) long indices into ``class_emb``, which map the classifier's columns back to the
        dataset's classes).
    """
    if is_base.shape != class_emb.shape[:1] or is_base.dtype != torch.bool:
        raise ValueError(f"is_base must be a bool (C_all,) mask, got {is_base.dtype} {tuple(is_base.shape)}")
    if categories == "base":
        ids = torch.nonzero(is_base).flatten()
    elif categories == "all":
        ids = torch.arange(class_emb.shape[0], device=class_emb.device)
    else:
        raise ValueError(f"categories must be 'base' or 'all', got {categories!r}: evaluating with the novel classes "
                         "alone gives near-zero AP (RegionCLIP issues #81, #98); use 'all' and split the AP")
    return class_emb[ids], ids


# --- 4. concept pool from captions -------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Lowercase words; apostrophes are dropped ("dog's" -> "dogs"), any other non-alphanumeric character splits."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return "".join(ch if ch.isalnum() else " " for ch in text).split()


def _singulars(word: str) -> list[str]:
    """Candidate singulars of an English plural, tried in order: -ies -> -y, -(s|x|z|ch|sh)es -> drop -es, -s."""
    forms = []
    if len(word) > 3 and word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith(("ses", "xes", "zes", "ches", "shes")):
        forms.append(word[:-2])
    if len(word) > 1 and word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    return forms


def concept_lookup(vocabulary: Mapping[str, str | Sequence[str]]) -> dict[tuple[str, ...], str]:
    """Every surface form (concept name or synonym, as a tuple of :func:`_words`) -> its concept name.

    Raises ``ValueError`` when a form has no words or names two concepts.
    """
    lookup: dict[tuple[str, ...], str] = {}
    for concept, synonyms in vocabulary.items():
        for surface in (concept, *([synonyms] if isinstance(synonyms, str) else synonyms)):
            words = tuple(_words(surface))
            if not words:
                raise ValueError(f"concept {concept!r}: the form {surface!r} has no words")
            owner = lookup.setdefault(words, concept)
            if owner != concept:
                raise ValueError(f"{surface!r} names both {owner!r} and {concept!r}")
    return lookup


def _match_at(words: list[str], start: int, lookup: dict[tuple[str, ...], str], longest: int,
              plurals: bool) -> tuple[str, int] | None:
    """The (concept, number of words) of the longest form starting at ``words[start]``; plurals on the last word."""
    for n in range(min(longest, len(words) - start), 0, -1):
        head, last = words[start:start + n - 1], words[start + n - 1]
        for form in (last, *(_singulars(last) if plurals else ())):
            concept = lookup.get((*head, form))
            if concept is not None:
                return concept, n
    return None


def extract_concepts(captions: Sequence[str], vocabulary: Mapping[str, str | Sequence[str]], *,
                     plurals: bool = True) -> list[list[str]]:
    """The vocabulary concepts each caption mentions, in order of first mention, each once.

    Captions and forms are lowercased and split at punctuation (:func:`_words`). The caption is scanned left to
    right and the longest form starting at each word wins ("hot dog" before "dog"); the words it covers are used up.
    With ``plurals``, the last word of a form may also appear as a regular English plural ("buses", "puppies",
    "traffic lights"); irregular ones ("people", "mice") need synonyms.

    Args:
        captions: the captions.
        vocabulary: concept name -> its synonyms (a string or a sequence of strings, possibly multi-word).
        plurals: also match regular plurals.

    Returns:
        One list of concept names (vocabulary keys) per caption.
    """
    lookup = concept_lookup(vocabulary)
    longest = max((len(form) for form in lookup), default=0)
    found_per_caption: list[list[str]] = []
    for caption in captions:
        words, i = _words(caption), 0
        found: list[str] = []
        while i < len(words):
            match = _match_at(words, i, lookup, longest, plurals)
            if match is None:
                i += 1
                continue
            concept, length = match
            if concept not in found:
                found.append(concept)
            i += length
        found_per_caption.append(found)
    return found_per_caption
