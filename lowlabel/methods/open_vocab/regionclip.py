"""``regionclip``: region-text pretraining of a CLIP image tower from a frozen CLIP teacher and image captions.

RegionCLIP (Zhong et al., CVPR 2022, arXiv:2112.09106; methods.md 4a). A teacher V_t (a ``clip`` run or a published
CLIP, frozen), a student V initialised from the same weights, the teacher's text tower L (frozen), a concept pool of
K concepts with embeddings T (K, D) (the prompt ensemble of each concept, computed once with L). For a batch of B
letterboxed images x with captions t, and the regions b of each image (a random ``num_sampled`` of the offline RPN's
proposals, in the letterboxed frame)::

    F = trunk(x)                              (B, C4, S/16, S/16)   stem..res4 (lowlabel.models.clip.c4_parts)
    r = RoIAlign(F, b, P x P, 1/16)           (R, C4, P, P)         aligned, adaptive sampling (detectron2 ROIAlignV2)
    v = attention_pool(res5(r))               (R, D)                P = 2 x the attention pool's grid: res5 halves P
                                                                    (RoI head: lowlabel.methods.open_vocab.roi)
    g = the same on the whole-canvas box      (B, D)                one box [0, 0, S, S] per image
    p = softmax(cos(v_t, T) / 0.01)           (R, K)                teacher's regions, no gradient
    keep = max_k p > 0.1;  c = argmax_k p                            (losses.regionclip.pseudo_concept_labels)
    L_dist   = KL(p || softmax(cos(v, T) / 0.01))                    kept regions, batch mean
    L_cntrst = -mean log sum_{r': c(r') = c(r)} softmax(cos(v_r, T[c(r')]) / 0.01)   kept regions of the batch
    L_img    = CLIP loss of (g, L(t)) at tau 0.01, gathered over processes
    L = w_dist L_dist + w_cntrst L_cntrst + w_img L_img              unit weights (methods.md 4a.7)

SGD lr 0.002, weight decay 1e-4, gradient norm clipped at 5 (``configs/pretrain/RegionCLIP_RN50.yaml``).

What trains: the student's image tower from res3 on (``model.freeze_at: 2`` freezes the stem and res2, detectron2's
``FREEZE_AT 2``), its attention pool included; every BatchNorm is frozen (eval-mode statistics, fixed affine: the
official ``FrozenBN``), which also makes the untrained student compute exactly the teacher's features, so L_dist
starts at 0. The student's text tower and logit scale are frozen copies of the teacher's, kept so that the saved
network ``model`` is a whole CLIP in open_clip's layout: a later stage reads it
(:func:`lowlabel.models.clip.read_clip_state`) as it reads a ``clip`` run.

Input: the images are letterboxed (:func:`lowlabel.methods.open_vocab.common.letterbox`, as the ``clip`` stage trains
and evaluates the teacher) to ``data.image_size``; proposals are computed on the original image by the detector's own
transform, once per image (cached in memory: a second epoch costs no RPN forward), and mapped into the letterboxed
frame. The whole-image box is the whole canvas, so for the student before training g is the CLIP image embedding of
the letterboxed image when ``data.image_size`` is the model's own size (tested).

Evaluation: zero-shot classification of the split's GT boxes by RoI features (not crops), every class competing,
accuracy on base / novel / all (``region_acc*``), and the whole-image mAP, for the student and, once per split, the
teacher (``teacher_*``).

    lowlabel train regionclip --config configs/regionclip/synth-full.yaml
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lowlabel.data.io import load_rgb
from lowlabel.errors import DataError, UserError
from lowlabel.losses.regionclip import (
    CONCEPT_THRESHOLD,
    MATCHING_TEMPERATURE,
    TEACHER_TEMPERATURE,
    concept_distillation_loss,
    extract_concepts,
    image_text_loss,
    pseudo_concept_labels,
    region_concept_contrastive_loss,
)
from lowlabel.methods.base import (
    EvalResult,
    Frozen,
    OptimConfig,
    StepOutput,
    TrainerConfig,
    build_optimizer,
    unwrap_module,
)
from lowlabel.methods.open_vocab.clip import SHAPESWORLD_TEMPLATES
from lowlabel.methods.open_vocab.common import (
    Categories,
    COCOFilesConfig,
    caption_dataset,
    categories,
    coco_path,
    coco_root,
    instance_dataset,
    letterbox,
    load_clip_stage,
    write_top_classes,
    zero_shot_metrics,
)
from lowlabel.methods.open_vocab.proposals import (
    ProposalConfig,
    Proposals,
    cached_proposals,
    load_proposer,
    sample_regions,
)
from lowlabel.methods.open_vocab.roi import (
    default_pool_size,
    flip_boxes,
    letterbox_boxes,
    per_image_region_accuracy,
    plain_boxes,
    region_embeddings,
    roi_zero_shot_scores,
    whole_boxes,
)
from lowlabel.models.clip import (
    c4_parts,
    prompt_embeddings,
    tokenize,
)
from lowlabel.structures import Classification

TEACHER_HINT = "train one with `lowlabel train clip --config configs/clip/synth-full.yaml`"


@dataclass
class RegionCLIPDataConfig(COCOFilesConfig):
    """Image-caption pairs to pretrain on, and the COCO-layout split (with boxes) to evaluate on."""

    train_split: str = "train"  # captions_{split}.json of data.root, unless train_images is given
    # "" = the COCO captions of train_split; else a folder in img2dataset's `files` layout (<shard>/<key>.jpg with
    # <key>.txt holding its caption), e.g. CC3M (Img2DatasetCaptions)
    train_images: str = ""
    image_size: int = 0  # letterbox side in pixels, a multiple of 32; 0 = the CLIP's own input size
    flip: bool = True  # mirror image and regions half of the time (captions say nothing about left and right)
    # proposals: the offline RPN's (`proposals.source`, RegionCLIP); gt: the train split's GT boxes (base categories
    # only in an OVD split), for tests and as a diagnostic, never a silent fallback
    regions: Literal["proposals", "gt"] = "proposals"
    # keep each image's proposals after its first RPN forward (36 MB for ShapesWorld's 6,000 images x 300 boxes);
    # false runs the RPN on every batch, as RegionCLIP does (CC3M's 3M images x 300 boxes would need 18 GB)
    cache_proposals: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < 0 or self.image_size % 32:
            raise ValueError(f"data.image_size must be 0 or a positive multiple of 32, got {self.image_size}")


@dataclass
class RegionCLIPModelConfig:
    """The CLIP architecture of teacher and student (weights: ``init_from``) and the RoI head."""

    arch: str = ""  # "" = the arch of the `clip` run in init_from; else as lowlabel.models.clip.arch_config takes it
    image_size: int = 0  # the CLIP's input size (its attention-pool grid = image_size / 32); 0 = the run's / arch's
    context_length: int = 0  # 0 = the run's / arch's
    freeze_at: int = 2  # stages frozen in the student: 0 none, 1 stem, 2 stem + res2 (detectron2 FREEZE_AT 2), ...
    pool_size: int = 0  # RoIAlign output on res4; 0 = 2 x the attention pool's grid (RN50 at 224: 14, the paper's)

    def __post_init__(self) -> None:
        if not 0 <= self.freeze_at <= 5:
            raise ValueError(f"model.freeze_at must be in 0..5, got {self.freeze_at}")
        if self.pool_size < 0 or self.pool_size % 2:
            raise ValueError(f"model.pool_size must be 0 or even (res5 halves it), got {self.pool_size}")


@dataclass
class ConceptConfig:
    """The concept pool and its text embeddings (methods.md 4a.3-4)."""

    # categories: the evaluation split's category names (data.names renames them), no synonyms;
    # shapesworld: ShapesWorld's 20 categories with their caption synonyms; or a file: .txt (one concept per line)
    # or .json ({concept: [synonyms]})
    vocabulary: str = "categories"
    from_captions: bool = True  # the pool = the vocabulary's concepts that some training caption names; False = all
    # "" = embed the pool with the teacher's text tower; else a file with a (K_vocab, D) tensor in vocabulary order
    # (RegionCLIP's *_emb.pth next to its concept list)
    embeddings: str = ""
    templates: list[str] = field(default_factory=lambda: ["openai-imagenet"])  # CLIP's 80 prompts, as RegionCLIP
    threshold: float = CONCEPT_THRESHOLD  # keep a region when its top concept probability exceeds this (0.1)
    temperature: float = TEACHER_TEMPERATURE  # the teacher's region-concept softmax (0.01)


@dataclass
class LossConfig:
    """Weights of the three terms (unit, methods.md 4a.7) and the student's temperature."""

    dist: float = 1.0
    cntrst: float = 1.0
    img: float = 1.0
    temperature: float = MATCHING_TEMPERATURE  # CLSS_TEMP 0.01


@dataclass
class RegionEvalConfig:
    """Zero-shot region classification on the evaluation split's GT boxes."""

    templates: list[str] = field(default_factory=lambda: list(SHAPESWORLD_TEMPLATES))  # as the clip stage's eval
    batch_size: int = 32  # images per forward


def _optim() -> OptimConfig:
    # configs/pretrain/RegionCLIP_RN50.yaml: SGD lr 0.002 (batch 96), weight decay 1e-4, clip grad norm 5
    return OptimConfig(name="sgd", lr=0.002, momentum=0.9, weight_decay=1e-4, grad_clip=5.0)


@dataclass
class RegionCLIPConfig:
    """Config of ``lowlabel train regionclip``."""

    init_from: str = ""  # the teacher: a `clip` run folder, or a CLIP weights file (then model.arch)
    data: RegionCLIPDataConfig = field(default_factory=RegionCLIPDataConfig)
    model: RegionCLIPModelConfig = field(default_factory=RegionCLIPModelConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: RegionEvalConfig = field(default_factory=RegionEvalConfig)
    optim: OptimConfig = field(default_factory=_optim)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=1000, batch_size=32, eval_split="val", log_every=20, monitor="region_acc"))


CONFIG = RegionCLIPConfig


# --- the teacher -------------------------------------------------------------------------------------------------


def load_teacher(cfg: RegionCLIPConfig) -> tuple[nn.Module, Frozen]:
    """The CLIP that ``init_from`` names, frozen, and its :class:`Frozen` record.

    Raises:
        UserError: one line: init_from empty or missing (naming the command that makes a teacher), not a clip run,
            no arch for a bare weights file, or weights that do not fit (e.g. another embedding width).
    """
    if not cfg.init_from:
        raise UserError(f"regionclip: init_from is empty; name the CLIP teacher, a clip run folder ({TEACHER_HINT}) "
                        "or a CLIP weights file")
    model, weights = load_clip_stage(cfg.init_from, stage="regionclip", accepts=("clip",), hint=TEACHER_HINT,
                                     arch=cfg.model.arch, image_size=cfg.model.image_size,
                                     context_length=cfg.model.context_length)
    model.requires_grad_(False).eval()
    return model, Frozen(module=model, source=str(weights.file), sha256=weights.sha256())


def make_student(teacher: nn.Module, *, freeze_at: int) -> nn.Module:
    """A copy of ``teacher`` whose image tower trains from stage ``freeze_at`` on (module docstring: 0 stem, 1 res2,
    ..., 4 res5, 5 the attention pool; 6 = nothing trains); BatchNorm parameters, the text tower and the logit scale
    stay frozen."""
    if not 0 <= freeze_at <= 6:
        raise ValueError(f"freeze_at must be in 0..6, got {freeze_at}")
    student = copy.deepcopy(teacher).requires_grad_(False).train()
    v = student.visual
    stages: list[list[nn.Module]] = [[v.conv1, v.bn1, v.conv2, v.bn2, v.conv3, v.bn3], [v.layer1], [v.layer2],
                                     [v.layer3], [v.layer4], [v.attnpool]]
    for stage in stages[freeze_at:]:
        for module in stage:
            module.requires_grad_(True)
    for module in v.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.requires_grad_(False)
    return student


def freeze_batchnorm(model: nn.Module) -> None:
    """Every BatchNorm of ``model`` to eval mode: running statistics used, never updated (``FrozenBN``)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


# --- data --------------------------------------------------------------------------------------------------------


class Img2DatasetCaptions:
    """Image-caption pairs in img2dataset's ``files`` output (``--output_format files``, the usual local copy of
    CC3M): ``<root>/<shard>/<key>.jpg`` with ``<key>.txt`` holding the caption (``<key>.json``, its metadata, is not
    read). Mirrors the parts of :class:`~lowlabel.data.coco.COCODetection` the pairs need: ``ids``, ``captions``,
    ``image_dir`` and items with ``image`` and ``captions``."""

    SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

    def __init__(self, root: str | Path) -> None:
        self.image_dir = Path(root)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such img2dataset folder (data.train_images)")
        self.files = sorted(p for p in self.image_dir.glob("*/*") if p.suffix.lower() in self.SUFFIXES)
        if not self.files:
            raise DataError(f"{self.image_dir}: no <shard>/<key>.jpg images (img2dataset --output_format files)")
        self.ids = list(range(len(self.files)))
        self.captions: dict[int, list[str]] = {}
        for i, path in enumerate(self.files):
            text = path.with_suffix(".txt")
            if not text.is_file():
                raise DataError(f"{path}: no caption file {text.name} next to it")
            self.captions[i] = [text.read_text(encoding="utf-8").strip()]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(load_rgb(self.files[index])).permute(2, 0, 1)  # (3, H, W) uint8
        return {"image": image, "captions": self.captions[index], "image_id": index,
                "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


class RegionCaptionPairs(Dataset):
    """One item per image with a caption: the letterboxed image, one of its captions drawn at random (tokens), the
    image's index (the proposal cache's key), and either its uint8 original (proposals are computed on it) or its
    GT boxes in the letterboxed frame. A flipped item's regions are flipped in :meth:`RegionCLIPMethod.regions`."""

    def __init__(self, dataset: Any, *, size: int, context_length: int, flip: bool, gt_boxes: bool) -> None:
        self.dataset, self.size, self.context_length = dataset, size, context_length
        self.flip, self.gt_boxes = flip, gt_boxes
        self.indices = [i for i, img_id in enumerate(dataset.ids) if dataset.captions[img_id]]
        if not self.indices:
            raise DataError(f"{dataset.image_dir}: no image of this split has a caption")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[self.indices[i]]
        raw = torch.as_tensor(item["image"])
        captions = item["captions"]
        text = captions[int(torch.randint(len(captions), ()))]
        out = {"image": letterbox(raw, self.size), "tokens": tokenize([text], self.context_length)[0],
               "key": self.indices[i], "flip": self.flip and bool(torch.rand(()) < 0.5)}
        if self.gt_boxes:
            out["boxes"] = letterbox_boxes(plain_boxes(item["boxes"]), tuple(raw.shape[-2:]), self.size)
        else:
            out["raw"] = raw
        if out["flip"]:
            out["image"] = out["image"].flip(-1)
        return out


def collate_pairs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Images and tokens stacked; originals, boxes, keys and flips as lists (their sizes differ)."""
    out: dict[str, Any] = {"image": torch.stack([it["image"] for it in items]),
                           "tokens": torch.stack([it["tokens"] for it in items])}
    for key in ("key", "flip", "raw", "boxes"):
        if key in items[0]:
            out[key] = [it[key] for it in items]
    return out


# --- the concept pool --------------------------------------------------------------------------------------------


def shapesworld_vocabulary() -> dict[str, list[str]]:
    """ShapesWorld's categories as captions name them: spoken name -> synonyms (``coco_task.class_words``)."""
    from lowlabel.data.synth.classes import VOC_NAMES
    from lowlabel.data.synth.coco_task import class_words

    return {words[0]: words[1:] for words in (class_words(k) for k in range(len(VOC_NAMES)))}


def read_vocabulary(spec: str, cats: Categories) -> dict[str, list[str]]:
    """concept name -> synonyms, from ``concepts.vocabulary`` (see :class:`ConceptConfig`).

    Raises:
        UserError: a missing or malformed file, or an empty vocabulary (naming the file).
    """
    if spec == "categories":
        return {name: [] for name in cats.prompt_names}
    if spec == "shapesworld":
        return shapesworld_vocabulary()
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"{path}: no such concept vocabulary file (concepts.vocabulary: categories, shapesworld, "
                        "a .txt with one concept per line or a .json of concept -> synonyms)")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: malformed JSON ({err})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str | list) for v in data.values()):
            raise UserError(f"{path}: expected a JSON object of concept -> synonym or list of synonyms")
        vocab = {str(k): [v] if isinstance(v, str) else [str(s) for s in v] for k, v in data.items()}
    else:
        vocab = {line.strip(): [] for line in path.read_text().splitlines() if line.strip()}
    if not vocab:
        raise UserError(f"{path}: the concept vocabulary is empty")
    return vocab


def concept_pool(vocabulary: Mapping[str, list[str]], captions: Sequence[str], *, source: str,
                 from_captions: bool) -> tuple[list[str], Counter[str]]:
    """The pool (concept names in vocabulary order) and how many captions name each concept.

    Raises:
        UserError: ``from_captions`` and no caption names any concept (naming ``source``).
    """
    try:
        found = extract_concepts(captions, vocabulary)
    except ValueError as err:
        raise UserError(f"concept vocabulary: {err}") from None
    counts: Counter[str] = Counter(c for per in found for c in per)
    if not from_captions:
        return list(vocabulary), counts
    pool = [name for name in vocabulary if counts[name]]
    if not pool:
        example = f" (e.g. {captions[0]!r})" if captions else ""
        raise UserError(f"{source}: none of its {len(captions)} captions names a concept of the vocabulary"
                        f"{example}; set concepts.vocabulary to one with the captions' words")
    return pool, counts


# --- the method --------------------------------------------------------------------------------------------------


class RegionCLIPMethod:
    """Region-text pretraining of a CLIP student from a frozen CLIP teacher (module docstring)."""

    name = "regionclip"
    collate = staticmethod(collate_pairs)

    def __init__(self, *, config: RegionCLIPConfig) -> None:
        self.config = cfg = config
        if cfg.data.train_images and cfg.data.regions == "gt":
            raise UserError("data.regions: gt needs COCO instances for the training images; data.train_images has "
                            "captions only (use regions: proposals)")
        self.teacher, self.teacher_record = load_teacher(cfg)  # first: a missing teacher fails before any data work
        self.root = coco_root(cfg.data)
        self.model = make_student(self.teacher, freeze_at=cfg.model.freeze_at)
        self.image_size = cfg.data.image_size or int(self.teacher.visual.image_size)
        self.pool_size = cfg.model.pool_size or default_pool_size(self.teacher)
        split_file = cfg.data.ovd_split  # under data.root, else relative to the working directory (a shipped split)
        files = cfg.data
        if split_file and not (self.root / split_file).exists() and Path(split_file).is_file():
            files = dataclasses.replace(cfg.data, ovd_split=str(Path(split_file).resolve()))
        self.categories: Categories = categories(instance_dataset(self.root, cfg.data, cfg.trainer.eval_split),
                                                 files, self.root)
        self.train_data = self._train_source()
        vocabulary = read_vocabulary(cfg.concepts.vocabulary, self.categories)
        captions = [c for img_id in self.train_data.ids for c in self.train_data.captions[img_id]]
        self.concepts, self.concept_counts = concept_pool(
            vocabulary, captions, source=str(self._captions_source()), from_captions=cfg.concepts.from_captions)
        self._concept_emb = self._read_concept_embeddings(list(vocabulary))
        self._proposer: Frozen | None = None
        self._proposals: dict[int, Proposals] = {}  # the training images' RPN proposals, computed once each
        self._teacher_metrics: dict[str, tuple[dict[str, float], dict[str, list[float | None]]]] = {}

    # -- data
    def _captions_source(self) -> Path:
        data = self.config.data
        return Path(data.train_images) if data.train_images else coco_path(self.root, data.captions, data.train_split)

    def _train_source(self) -> Any:
        data = self.config.data
        if data.train_images:
            return Img2DatasetCaptions(data.train_images)
        if data.regions == "gt":
            from lowlabel.data.coco import COCODetection

            boxes = instance_dataset(self.root, data, data.train_split)
            return COCODetection(image_dir=boxes.image_dir, ann_file=coco_path(self.root, data.instances,
                                 data.train_split), captions_file=self._captions_source())
        return caption_dataset(self.root, data, data.train_split)

    def train_dataset(self) -> Dataset:
        return RegionCaptionPairs(self.train_data, size=self.image_size, context_length=int(self.model.context_length),
                                  flip=self.config.data.flip, gt_boxes=self.config.data.regions == "gt")

    # -- networks
    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def frozen_networks(self) -> dict[str, Frozen]:
        frozen = {"teacher": self.teacher_record}
        if self.config.data.regions == "proposals":
            if self._proposer is None:
                self._proposer = load_proposer(self.config.proposals.source)
            frozen["proposer"] = self._proposer
        return frozen

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        params = [p for p in nets["model"].parameters() if p.requires_grad]
        return {"model": build_optimizer(params, self.config.optim)}

    # -- concepts
    def _read_concept_embeddings(self, vocabulary: list[str]) -> Tensor | None:
        """The pool's rows of ``concepts.embeddings`` (checked against the vocabulary and the teacher's width)."""
        path = self.config.concepts.embeddings
        if not path:
            return None
        if not Path(path).is_file():
            raise UserError(f"{path}: no such concept embedding file (concepts.embeddings)")
        emb = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(emb, dict):
            emb = emb.get("embeddings", emb.get("weight"))
        if not isinstance(emb, Tensor) or emb.dim() != 2:
            raise UserError(f"{path}: expected a (concepts, width) tensor of concept embeddings")
        width = int(self.teacher.text_projection.shape[-1])
        if emb.shape[1] != width:
            raise UserError(f"{path}: embedding width {emb.shape[1]} does not match the teacher's {width}")
        if emb.shape[0] != len(vocabulary):
            raise UserError(f"{path}: {emb.shape[0]} embeddings for the {len(vocabulary)} concepts of "
                            f"{self.config.concepts.vocabulary}")
        rows = [vocabulary.index(name) for name in self.concepts]
        return torch.nn.functional.normalize(emb[rows].float(), dim=-1)

    def concept_embeddings(self, teacher: nn.Module) -> Tensor:
        """T (K, D): the pool's prompt-ensemble embeddings by the frozen text tower, computed once."""
        device = teacher.logit_scale.device
        if self._concept_emb is None:
            with torch.no_grad():
                self._concept_emb = prompt_embeddings(teacher, self.concepts, self.config.concepts.templates)
        self._concept_emb = self._concept_emb.to(device)
        return self._concept_emb

    # -- training
    def regions(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Any]) -> list[Tensor]:
        """Each image's regions in its letterboxed (and possibly flipped) frame: ``num_sampled`` random proposals
        (cached per image unless ``data.cache_proposals`` is off) or the GT boxes."""
        size, device = self.image_size, batch["image"].device
        if "boxes" in batch:
            boxes = [b.to(device) for b in batch["boxes"]]
        else:
            found = cached_proposals(nets["proposer"], batch["key"], batch["raw"], self.config.proposals,
                                     self._proposals if self.config.data.cache_proposals else {})
            boxes = []
            for props, raw in zip(found, batch["raw"]):
                picked = sample_regions(props, self.config.proposals.num_sampled)
                boxes.append(letterbox_boxes(picked.boxes, tuple(raw.shape[-2:]), size).to(device))
        return [flip_boxes(b, size) if flipped else b for b, flipped in zip(boxes, batch["flip"])]

    def training_step(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Any],
                      step: int) -> Iterator[StepOutput]:
        # One phase, yielded: the student's parts are called directly (not its forward), so the engine's phased
        # path averages the gradients over processes itself (DDP's reducer only sees a module's forward; returned
        # instead of yielded, two processes end with different students: tests/.../test_regionclip_ddp.py).
        cfg, model, teacher = self.config, unwrap_module(nets["model"]), nets["teacher"]
        freeze_batchnorm(model)
        x = batch["image"]  # (B, 3, S, S)
        boxes = self.regions(nets, batch)  # B x (R_i, 4)
        concept_emb = self.concept_embeddings(teacher)  # (K, D)
        with torch.no_grad():
            teacher_feats = region_embeddings(teacher, c4_parts(teacher).trunk(x), boxes, pool_size=self.pool_size)
            text = teacher.encode_text(batch["tokens"])  # (B, D) at the end token
        labels = pseudo_concept_labels(teacher_feats, concept_emb, temperature=cfg.concepts.temperature,
                                       threshold=cfg.concepts.threshold)
        res4 = c4_parts(model).trunk(x)  # (B, C4, S / 16, S / 16)
        n_regions = teacher_feats.shape[0]
        with_whole = [torch.cat([b, w]) for b, w in zip(boxes, whole_boxes(len(x), self.image_size, x.device))]
        feats = region_embeddings(model, res4, with_whole, pool_size=self.pool_size)  # (R + B, D): regions, canvas
        last = torch.tensor([len(b) for b in boxes], device=x.device).add(1).cumsum(0) - 1  # (B,) canvas rows
        is_whole = torch.zeros(len(feats), dtype=torch.bool, device=x.device).index_fill_(0, last, True)
        region_feats, image_feats = feats[~is_whole], feats[is_whole]  # (R, D), (B, D)
        kept = region_feats[labels.keep]
        tau = cfg.loss.temperature
        l_dist = concept_distillation_loss(kept, concept_emb, labels.probs, temperature=tau)
        l_cntrst = region_concept_contrastive_loss(kept, concept_emb, labels.concepts, temperature=tau)
        l_img = image_text_loss(image_feats, text, temperature=tau, gather=True)
        loss = cfg.loss.dist * l_dist + cfg.loss.cntrst * l_cntrst + cfg.loss.img * l_img
        kept_share = 100.0 * float(labels.keep.float().mean()) if n_regions else 0.0
        yield StepOutput(losses={"model": loss}, logs={
            "loss": float(loss.detach()), "loss_dist": float(l_dist.detach()), "loss_cntrst": float(l_cntrst.detach()),
            "loss_img": float(l_img.detach()), "kept": kept_share, "regions_per_image": n_regions / len(x)})

    # -- evaluation
    def class_embeddings(self, nets: Mapping[str, nn.Module]) -> Tensor:
        """(C, D) prompt-ensemble embeddings of the categories by the frozen text tower (``eval.templates``)."""
        return prompt_embeddings(nets["teacher"], self.categories.prompt_names, self.config.eval.templates)

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        cfg = self.config
        dataset = instance_dataset(self.root, cfg.data, split)
        if dataset.cat_ids != self.categories.ids:
            raise UserError(f"{dataset.image_dir}: the {split} annotations have other categories than the "
                            f"{cfg.trainer.eval_split} ones the model was built with")
        class_emb = self.class_embeddings(nets)
        kwargs = {"size": self.image_size, "pool_size": self.pool_size, "batch_size": cfg.eval.batch_size}
        scores, counts = roi_zero_shot_scores(unwrap_module(nets["model"]), dataset, class_emb, **kwargs)
        metrics, per_class = zero_shot_metrics(scores, self.categories.novel)
        if split not in self._teacher_metrics:  # the teacher never changes: once per split
            teacher_scores, _ = roi_zero_shot_scores(nets["teacher"], dataset, class_emb, **kwargs)
            self._teacher_metrics[split] = zero_shot_metrics(teacher_scores, self.categories.novel)
        teacher_metrics, teacher_per_class = self._teacher_metrics[split]
        metrics.update({f"teacher_{k}": v for k, v in teacher_metrics.items()})
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "per_image.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "score"])
            writer.writerows(zip(scores.image_ids, per_image_region_accuracy(scores, counts)))
        names = self.categories.names
        tables = {key: dict(zip(names, values)) for key, values in per_class.items()}
        tables["teacher_region_acc"] = dict(zip(names, teacher_per_class["region_acc"]))
        return EvalResult(metrics=metrics, per_class=tables, monitor="region_acc")

    # -- inference
    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Classification]:
        """One :class:`~lowlabel.structures.Classification` over the categories per uint8 ``(3, H, W)`` image: the
        whole-image box through the RoI head, softmax of cosine similarities / 0.01 (RegionCLIP's temperature)."""
        return self._classify(nets, images, self.class_embeddings(nets))

    def _classify(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor],
                  class_emb: Tensor) -> list[Classification]:
        model = unwrap_module(nets["model"])
        device = class_emb.device
        x = torch.stack([letterbox(img, self.image_size) for img in images]).to(device)  # (B, 3, S, S)
        emb = region_embeddings(model, c4_parts(model).trunk(x), whole_boxes(len(x), self.image_size, device),
                                pool_size=self.pool_size)  # (B, D)
        cos = torch.nn.functional.normalize(emb, dim=-1) @ class_emb.t()  # (B, C)
        probs = (cos / self.config.loss.temperature).float().softmax(1).cpu()
        return [Classification(label=int(p.argmax()), score=float(p.max()), probs=p) for p in probs]

    @torch.no_grad()
    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``predictions.json``: the five most likely categories (names and probabilities) of every image."""
        names = self.categories.names
        class_emb = self.class_embeddings(nets)

        def classify(nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Classification]:
            return self._classify(nets, images, class_emb)

        write_top_classes(classify, names, nets, inputs, out)


def build(cfg: RegionCLIPConfig) -> RegionCLIPMethod:
    """The one place that reads the config."""
    return RegionCLIPMethod(config=cfg)


