"""``ovd``: open-vocabulary detection transfer of a CLIP image tower, and its zero-shot inference.

RegionCLIP (Zhong et al., CVPR 2022, arXiv:2112.09106; methods.md 4a', 4a'', 4b), ``CLIPFastRCNN``: a C4 Faster R-CNN
whose backbone and box head are a CLIP image tower (a ``regionclip`` run's student, or a ``clip`` run: the baseline
"initialised from the teacher" is this same stage with the teacher as ``init_from``), whose classifier is the frozen
text embeddings of the class names, and whose proposals come from a separate offline RPN trained on the base boxes
(``proposals.source``: a class-agnostic ``lowlabel train detector`` run, :mod:`.proposals`; the paper's way, so no RPN
is trained here). For a batch of B letterboxed images x with base-class GT boxes g::

    P = offline RPN proposals, plus g                    B x (P_i, 4)  detectron2's PROPOSAL_APPEND_GT
    match P to g at IoU 0.5; sample roi.batch_size_per_image, 25 % foreground     (torchvision Matcher, Sampler)
    F = trunk(x)                                          (B, C4, S/16, S/16)   stem..res4 of the CLIP tower
    v = attention_pool(res5(RoIAlign(F, rois, P x P)))    (R, D)                P = 2 x the pool's grid (14, RN50)
    z = [cos(v, T_base) / 0.01, 0]                        (R, C_base + 1)       frozen text T, zero background logit
    d = W v + b                                           (R, 4)                class-agnostic box deltas
    L = focal_CE(z, y; gamma 0.5, background x 0.2) + smooth_L1(d, encode(g, roi); beta 1/9) over foreground / R

Test (the generalised setting, methods.md 4b): every class's embedding competes (``eval.categories: all``); p =
softmax(z)[:, :C], boxes decoded from d, per-class NMS 0.5, score > ``roi.score_thresh``, the best
``roi.detections_per_img``; COCO AP50 over novel / base / all classes from one evaluation
(:func:`lowlabel.metrics.coco.coco_box_ap`, ``lowlabel score coco --split``). ``eval.categories: novel`` scores with
the novel embeddings alone, the protocol mistake behind near-zero novel AP (methods.md 4d, RegionCLIP issues #81, #98):
every base object must then be called some novel class, and those confident false positives outrank the true ones.

Zero-shot (methods.md 4a'', ``eval.zero_shot``; ``lowlabel evaluate ovd --ckpt <clip or regionclip run> --zero-shot
gt|proposals`` builds this stage on that run without training): ``gt`` classifies the GT boxes (RoI features, or with
``eval.zero_shot_regions: crop`` the teacher on letterboxed crops, :func:`.common.zero_shot_scores`): accuracy over
all / base / novel classes, every class competing; ``proposals`` detects from the RPN's proposals at NMS 0.9, without
box deltas (the untrained regressor is not used), scores softmax(cos / 0.01) over the classes (no background: a CLIP
never learnt what the zero logit stands for) times the objectness, class NMS 0.5.

Departures, for a CPU and a small model: the input is letterboxed to ``data.image_size`` (as the regionclip stage; the
paper resizes the shorter side to 800) and, with ``data.cache_proposals``, the proposals are computed once per training
image and kept (the offline RPN is frozen, so they never change; a flipped image flips them); the COCO and LVIS configs
run the RPN on every batch, as the paper. FrozenBN everywhere and ``FREEZE_AT 2`` (stem and res2 frozen) by default, as
the paper. The text tower never trains; the text embeddings are computed once, with CLIP's 80 ImageNet templates
(``text.templates``), and kept as a buffer of the network (checkpointed, so ``predict`` needs no recomputation).

Switches off the paper's path, for the failure benchmarks/README describes ("The OVD transfer on a second world":
every transfer that trains the tower collapses onto one novel class on ShapesWorld): ``model.freeze_at: 6`` (the
whole image tower frozen, attention pool included, as F-VLM), ``loss.distill_weight`` (ViLD-image's L1 toward the
frozen init tower's RoI embeddings), ``model.learn_background`` (a trained background embedding),
``model.head_steps`` (the head alone first) and ``roi.multiply_objectness`` (scores x RPN objectness, the LVIS
setting). The ShapesWorld configs take the first and the last, chosen on a second world (``synth:full:1``); the
COCO and LVIS configs keep the paper's transfer.

    lowlabel train ovd --config configs/ovd/synth-full.yaml --init_from runs/regionclip/full
    lowlabel evaluate ovd --ckpt runs/clip/full --zero-shot gt --method-config configs/ovd/synth-full.yaml
    lowlabel predict ovd --ckpt runs/ovd/full --input images/ --out out/ --classes "star, striped ring"
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher

from lowlabel.data.io import read_json
from lowlabel.errors import DataError, UserError
from lowlabel.losses.regionclip import (
    COCO_BACKGROUND_WEIGHT,
    FOCAL_GAMMA,
    OVD_TEMPERATURE,
    background_weighted_cross_entropy,
    focal_scaled_cross_entropy,
    ovd_logits,
    region_distillation_l1,
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
from lowlabel.methods.cross_domain.common import coco_results, draw_detections, image_recall, to_inclusive
from lowlabel.methods.open_vocab.common import (
    Categories,
    COCOFilesConfig,
    categories,
    coco_root,
    instance_dataset,
    letterbox,
    load_clip_stage,
    zero_shot_metrics,
    zero_shot_scores,
)
from lowlabel.methods.open_vocab.detection import (
    BOX_CODER_WEIGHTS,
    SMOOTH_L1_BETA,
    OVDNet,
    class_probabilities,
    novel_win_share,
    sample_rois,
    select_detections,
    unletterbox_boxes,
)
from lowlabel.methods.open_vocab.proposals import ProposalConfig, Proposals, cached_proposals, load_proposer, propose
from lowlabel.methods.open_vocab.regionclip import freeze_batchnorm, make_student
from lowlabel.methods.open_vocab.roi import (
    default_pool_size,
    flip_boxes,
    letterbox_boxes,
    per_image_region_accuracy,
    plain_boxes,
    region_embeddings,
    roi_zero_shot_scores,
)
from lowlabel.methods.predict import predict_files
from lowlabel.metrics.coco import coco_box_ap
from lowlabel.models.clip import (
    c4_parts,
    check_class_names,
    prompt_embeddings,
)
from lowlabel.models.weights import Weights
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import Detections

INIT_HINT = "train one with `lowlabel train regionclip` (or `lowlabel train clip` for the teacher baseline)"
# methods.md 4a'' (RegionCLIP issue #9, after ViLD): zero-shot detection keeps proposals up to IoU 0.9 and runs the
# class NMS at 0.5 on the unregressed boxes.
ZERO_SHOT_RPN_NMS = 0.9
ZERO_SHOT_CLASS_NMS = 0.5


# --- config ------------------------------------------------------------------------------------------------------


@dataclass
class OVDDataConfig(COCOFilesConfig):
    """The COCO-layout folder: training boxes (base classes only are used), evaluation split, the base/novel split."""

    train_split: str = "train"
    image_size: int = 0  # letterbox side in pixels, a multiple of 32; 0 = the CLIP's own input size
    flip: bool = True  # mirror image, boxes and proposals half of the time (detectron2's RandomFlip)
    # LVIS: no split file; the categories whose "frequency" is one of these are novel, the rest base (["r"]: the 337
    # rare ones novel, 866 frequent + common base, methods.md 4b). Needs ovd_split "".
    novel_frequencies: list[str] = field(default_factory=list)
    max_eval_images: int = 0  # 0 = the whole split
    # keep each train image's proposals after its first RPN forward (ShapesWorld's 6,000 images x 300 boxes: 36 MB);
    # false runs the RPN on every batch, as RegionCLIP's CLIPFastRCNN does (COCO's 118k x 1,000 boxes would be 2.4 GB)
    cache_proposals: bool = True
    num_fixed_samples: int = 6  # evaluation pictures for the report: the first images of the split ...
    num_worst_samples: int = 6  # ... and those with the lowest recall

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < 0 or self.image_size % 32:
            raise ValueError(f"data.image_size must be 0 or a positive multiple of 32, got {self.image_size}")
        if self.novel_frequencies and self.ovd_split:
            raise ValueError("data.novel_frequencies (LVIS) and data.ovd_split exclude each other; set ovd_split ''")


@dataclass
class OVDModelConfig:
    """The CLIP tower (weights: ``init_from``) and the RoI head."""

    arch: str = ""  # "" = the arch recorded by the init_from run (a regionclip run: its teacher's)
    image_size: int = 0  # the CLIP's input size (attention-pool grid = image_size / 32); 0 = the run's
    context_length: int = 0  # 0 = the run's
    # detectron2 FREEZE_AT 2 (stem and res2 frozen), RegionCLIP's transfer configs; 3, 4, 5 freeze res3, res4, res5
    # too, and 6 the attention pool as well: the whole image tower frozen, only the head trains (F-VLM's transfer)
    freeze_at: int = 2
    pool_size: int = 0  # RoIAlign side on res4; 0 = 2 x the attention-pool grid (RN50 at 224: 14, POOLER_RESOLUTION)
    # false: the paper's frozen zero background logit; true: the background embedding trains from 0 (the official
    # cls_bg_score with requires_grad, as ViLD's learnt background)
    learn_background: bool = False
    # the first head_steps steps train only the head (the background embedding, when learnt, and the box regressor)
    # on the frozen tower's RoI features, then everything from freeze_at on (LP-FT's order: a head fitted first sends
    # smaller gradients into the tower); 0 = the paper's, everything from step 0
    head_steps: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.freeze_at <= 6:
            raise ValueError(f"model.freeze_at must be in 0..6, got {self.freeze_at}")
        if self.pool_size < 0 or self.pool_size % 2:
            raise ValueError(f"model.pool_size must be 0 or even (res5 halves it), got {self.pool_size}")
        if self.head_steps < 0:
            raise ValueError(f"model.head_steps must be >= 0, got {self.head_steps}")


@dataclass
class TextConfig:
    """The frozen classifier: class-name embeddings by the init CLIP's text tower, or read from a file."""

    templates: list[str] = field(default_factory=lambda: ["openai-imagenet"])  # CLIP's 80 prompts (RegionCLIP)
    # "" = embed the category names; else a (C, D) tensor file, rows in category-id order of the evaluated classes
    # (RegionCLIP's TEXT_EMB_PATH / OPENSET_TEST_TEXT_EMB_PATH)
    embeddings: str = ""


@dataclass
class OVDLossConfig:
    """Classification loss (methods.md 4a'): COCO focal-scaled CE, LVIS plain CE, both with a background weight."""

    kind: Literal["focal", "ce"] = "focal"
    gamma: float = FOCAL_GAMMA  # focal scaling (1 - p_t)^gamma (COCO 0.5)
    background_weight: float = COCO_BACKGROUND_WEIGHT  # COCO 0.2, LVIS 0.8
    temperature: float = OVD_TEMPERATURE  # cosine logits / 0.01
    box_weight: float = 1.0
    # ViLD-image distillation (not in RegionCLIP): w x the L1 distance between each sampled RoI's unit embedding and
    # the frozen init tower's on the same RoI (ViLD distils CLIP crop embeddings, w = 0.5); 0 = the paper's, no term
    distill_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.distill_weight < 0:
            raise ValueError(f"loss.distill_weight must be >= 0, got {self.distill_weight}")


@dataclass
class OVDRoIConfig:
    """RoI sampling for training and the test-time selection. Defaults: detectron2's ROI_HEADS."""

    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5  # IoU >= 0.5 with a GT box: foreground; below: background
    score_thresh: float = 0.05  # test: detections kept above this score
    nms_thresh: float = 0.5  # test: per-class NMS
    detections_per_img: int = 100
    multiply_objectness: bool = False  # score x RPN objectness (RegionCLIP's LVIS MULTIPLY_RPN_SCORE)


@dataclass
class OVDEvalConfig:
    """Evaluation: the generalised setting, or its two diagnostics, or zero-shot inference."""

    categories: Literal["all", "novel"] = "all"  # novel: the novel embeddings alone compete (methods.md 4d)
    zero_shot: Literal["off", "gt", "proposals"] = "off"  # off: the trained detector; see the module docstring
    zero_shot_regions: Literal["roi", "crop"] = "roi"  # gt: RoI features of the boxes, or the CLIP on their crops
    batch_size: int = 8  # images per forward


def _optim() -> OptimConfig:
    # CLIP_fast_rcnn_R_50_C4_ovd.yaml: SGD lr 0.002 (batch 16), weight decay 1e-4, steps at 60k/80k of 90k, warmup
    return OptimConfig(name="sgd", lr=0.002, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                       milestones=(60000, 80000), warmup_steps=5000)


@dataclass
class OVDConfig:
    """Config of ``lowlabel train ovd``."""

    init_from: str = ""  # a regionclip run (its student) or a clip run (the teacher baseline), or a CLIP weights file
    data: OVDDataConfig = field(default_factory=OVDDataConfig)
    model: OVDModelConfig = field(default_factory=OVDModelConfig)
    proposals: ProposalConfig = field(default_factory=lambda: ProposalConfig(post_nms_top_n=1000, nms_thresh=0.7))
    text: TextConfig = field(default_factory=TextConfig)
    loss: OVDLossConfig = field(default_factory=OVDLossConfig)
    roi: OVDRoIConfig = field(default_factory=OVDRoIConfig)
    eval: OVDEvalConfig = field(default_factory=OVDEvalConfig)
    optim: OptimConfig = field(default_factory=_optim)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=90000, batch_size=16, eval_split="val", log_every=20, monitor="AP50_novel"))


CONFIG = OVDConfig


def zero_shot_config(config: OVDConfig | None, *, init_from: str, mode: str) -> OVDConfig:
    """``config`` (default: the defaults) set up to evaluate the CLIP of ``init_from`` zero-shot (``mode`` gt or
    proposals), with RegionCLIP's zero-shot proposal and class NMS (methods.md 4a''). Used by ``lowlabel evaluate
    --zero-shot``."""
    if mode not in ("gt", "proposals"):
        raise UserError(f"--zero-shot must be gt or proposals, got {mode!r}")
    cfg = config if config is not None else OVDConfig()
    return dataclasses.replace(
        cfg, init_from=str(init_from),
        proposals=dataclasses.replace(cfg.proposals, nms_thresh=ZERO_SHOT_RPN_NMS),
        roi=dataclasses.replace(cfg.roi, nms_thresh=ZERO_SHOT_CLASS_NMS, multiply_objectness=True),
        eval=dataclasses.replace(cfg.eval, zero_shot=mode))  # type: ignore[arg-type]


# --- the CLIP to start from --------------------------------------------------------------------------------------


def load_init_clip(cfg: OVDConfig) -> tuple[nn.Module, Weights]:
    """The CLIP ``init_from`` names (a regionclip run's student, a clip run, or a weights file with ``model.arch``).

    Raises:
        UserError: one line: empty or missing, a run of another method, no arch, or weights that do not fit.
    """
    if not cfg.init_from:
        raise UserError(f"ovd: init_from is empty; name a regionclip or clip run ({INIT_HINT})")
    return load_clip_stage(cfg.init_from, stage="ovd", accepts=("clip", "regionclip"), hint=INIT_HINT,
                           arch=cfg.model.arch, image_size=cfg.model.image_size,
                           context_length=cfg.model.context_length)


# --- data --------------------------------------------------------------------------------------------------------


class ClassView(Dataset):
    """A COCODetection seen with the labels of ``cat_to_class`` (category id -> class index); boxes of other
    categories (and, with ``drop_crowd``, crowd boxes) are dropped. Items keep the reader's keys."""

    def __init__(self, dataset: Any, cat_to_class: Mapping[int, int], *, drop_crowd: bool,
                 indices: Sequence[int]) -> None:
        self.dataset, self.cat_to_class = dataset, dict(cat_to_class)
        self.drop_crowd, self.indices = drop_crowd, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[self.indices[i]]
        cats = item["category_ids"].tolist()
        keep = [c in self.cat_to_class and not (self.drop_crowd and bool(crowd))
                for c, crowd in zip(cats, item["iscrowd"].tolist())]
        mask = torch.tensor(keep, dtype=torch.bool).reshape(-1)
        labels = torch.tensor([self.cat_to_class[c] for c, k in zip(cats, keep) if k], dtype=torch.int64)
        return {**item, "image": torch.as_tensor(item["image"]).as_subclass(Tensor),
                "boxes": plain_boxes(item["boxes"])[mask], "labels": labels,
                "iscrowd": item["iscrowd"][mask], "category_ids": item["category_ids"][mask]}


class OVDTrainSet(Dataset):
    """Letterboxed training images with their base-class boxes, the uint8 original (for the proposals), and the
    index that keys the proposal cache."""

    def __init__(self, view: ClassView, *, size: int, flip: bool) -> None:
        self.view, self.size, self.flip = view, size, flip

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.view[i]
        raw = item["image"]
        boxes = letterbox_boxes(item["boxes"], tuple(raw.shape[-2:]), self.size)
        image = letterbox(raw, self.size)
        flipped = self.flip and bool(torch.rand(()) < 0.5)
        if flipped:
            image, boxes = image.flip(-1), flip_boxes(boxes, self.size)
        return {"image": image, "raw": raw, "key": i, "flip": flipped, "boxes": boxes, "labels": item["labels"]}


def collate_train(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Images stacked; originals, boxes, labels, keys and flips as lists."""
    out: dict[str, Any] = {"image": torch.stack([it["image"] for it in items])}
    for key in ("raw", "key", "flip", "boxes", "labels"):
        out[key] = [it[key] for it in items]
    return out


def frequency_split(ann_file: Path, novel_frequencies: Sequence[str]) -> dict[str, list[int]]:
    """LVIS: ``{"all", "base", "novel"}`` category ids from each category's ``frequency`` (r, c, f)."""
    data = read_json(ann_file)
    cats = data.get("categories", []) if isinstance(data, dict) else []
    missing = [c.get("id") for c in cats if "frequency" not in c]
    if missing or not cats:
        raise DataError(f"{ann_file}: data.novel_frequencies needs a 'frequency' on every category (LVIS), "
                        f"category {missing[0] if missing else '(none)'} has none")
    ids = sorted(int(c["id"]) for c in cats)
    novel = sorted(int(c["id"]) for c in cats if c["frequency"] in set(novel_frequencies))
    return {"all": ids, "novel": novel, "base": [i for i in ids if i not in set(novel)]}


def split_file_data(cfg: OVDDataConfig, root: Path) -> OVDDataConfig:
    """``cfg`` with ``ovd_split`` made absolute when it names a file relative to the working directory rather than
    to ``data.root`` (the shipped ``configs/ovd/coco-ovd-48-17.json``)."""
    path = Path(cfg.ovd_split)
    if cfg.ovd_split and not (root / path).exists() and path.is_file():
        return dataclasses.replace(cfg, ovd_split=str(path.resolve()))
    return cfg


def ovd_categories(dataset: Any, cfg: OVDDataConfig, root: Path, split: str) -> Categories:
    """The evaluated classes: the split file's ``all`` (COCO's 65 of 80) or every category, and which are novel.
    Prompts say a name's underscores as spaces (LVIS's ``aerosol_can``, ``bow_(weapon)``).

    Raises:
        DataError: a split id that the annotations do not have (one line naming the split file).
    """
    if cfg.novel_frequencies:
        from lowlabel.methods.open_vocab.common import coco_path

        ids = frequency_split(coco_path(root, cfg.instances, split), cfg.novel_frequencies)
        cats = categories(dataset, dataclasses.replace(cfg, ovd_split=""), root)
        cats = dataclasses.replace(cats, novel=torch.tensor([cid in set(ids["novel"]) for cid in cats.ids]))
    else:
        cats = categories(dataset, cfg, root)  # checks the split file's ids against the annotations
    if cfg.ovd_split:
        from lowlabel.data.coco import load_ovd_split

        used = set(load_ovd_split(root / cfg.ovd_split)["all"])
        keep = [i for i, cid in enumerate(cats.ids) if cid in used]
        cats = Categories(ids=[cats.ids[i] for i in keep], names=[cats.names[i] for i in keep],
                          prompt_names=[cats.prompt_names[i] for i in keep], novel=cats.novel[keep])
    return dataclasses.replace(cats, prompt_names=[name.replace("_", " ") for name in cats.prompt_names])


# --- the method --------------------------------------------------------------------------------------------------


class OVDMethod:
    """Open-vocabulary detection transfer of a CLIP image tower, and zero-shot inference (module docstring)."""

    name = "ovd"
    collate = staticmethod(collate_train)

    def __init__(self, *, config: OVDConfig) -> None:
        self.config = cfg = config
        self.root = coco_root(cfg.data)
        clip, self.init_weights = load_init_clip(cfg)
        self.image_size = cfg.data.image_size or int(clip.visual.image_size)
        self.clip_size = int(clip.visual.image_size)  # the crops' side in zero-shot crop mode
        self.pool_size = cfg.model.pool_size or default_pool_size(clip)
        eval_split = cfg.trainer.eval_split
        self.categories = ovd_categories(instance_dataset(self.root, cfg.data, eval_split),
                                         split_file_data(cfg.data, self.root), self.root, eval_split)
        self.base_cols = torch.nonzero(~self.categories.novel).flatten()  # (C_base,) the training classifier
        class_emb = self._text_embeddings(clip)
        self.model = OVDNet(clip=make_student(clip, freeze_at=cfg.model.freeze_at), class_emb=class_emb,
                            learn_background=cfg.model.learn_background)
        self.coder = BoxCoder(BOX_CODER_WEIGHTS)
        self.matcher = Matcher(cfg.roi.fg_iou_thresh, cfg.roi.fg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(cfg.roi.batch_size_per_image, cfg.roi.positive_fraction)
        self._proposer: Frozen | None = None
        self._reference: Frozen | None = None  # loss.distill_weight: the init tower, frozen, the distillation target
        if cfg.loss.distill_weight > 0:
            self._reference = Frozen(module=clip.requires_grad_(False).eval(), source=str(self.init_weights.file),
                                     sha256=self.init_weights.sha256())
        self._proposals: dict[int, Proposals] = {}  # the training images' proposals, computed once each

    def _text_embeddings(self, clip: nn.Module) -> Tensor:
        """(C, D) unit class embeddings: the prompt ensemble of the category names, or ``text.embeddings``.

        Raises:
            UserError: a missing or malformed file, its row count, or a width other than the init CLIP's.
        """
        width = int(clip.text_projection.shape[-1])
        path = self.config.text.embeddings
        if not path:
            with torch.no_grad():
                return prompt_embeddings(clip, self.categories.prompt_names, self.config.text.templates)
        if not Path(path).is_file():
            raise UserError(f"{path}: no such text embedding file (text.embeddings)")
        emb = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(emb, dict):
            emb = emb.get("embeddings", emb.get("weight"))
        if not isinstance(emb, Tensor) or emb.dim() != 2:
            raise UserError(f"{path}: expected a (classes, width) tensor of text embeddings")
        if emb.shape[1] != width:
            raise UserError(f"{self.init_weights.file}: embedding width {width} does not match the text embeddings' "
                            f"{emb.shape[1]} ({path}); use the CLIP the embeddings were made with")
        if emb.shape[0] != len(self.categories.ids):
            raise UserError(f"{path}: {emb.shape[0]} text embeddings for the {len(self.categories.ids)} classes")
        return F.normalize(emb.float(), dim=-1)

    # -- networks
    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def frozen_networks(self) -> dict[str, Frozen]:
        if self.config.eval.zero_shot == "gt":  # GT boxes: no proposals needed
            return {}
        if self._proposer is None:
            self._proposer = load_proposer(self.config.proposals.source)
        if self._reference is None or self.config.eval.zero_shot != "off":
            return {"proposer": self._proposer}
        return {"proposer": self._proposer, "reference": self._reference}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        params = [p for p in nets["model"].parameters() if p.requires_grad]
        return {"model": build_optimizer(params, self.config.optim)}

    # -- data
    def _view(self, split: str, *, train: bool) -> ClassView:
        dataset = instance_dataset(self.root, self.config.data, split)
        if train:  # the base classes, numbered as the training classifier's columns; images with a base box
            cat_to_class = {self.categories.ids[int(c)]: k for k, c in enumerate(self.base_cols)}
            indices = [i for i, img_id in enumerate(dataset.ids)
                       if any(a["category_id"] in cat_to_class and not a.get("iscrowd", 0)
                              for a in dataset.annotations[img_id])]
            if not indices:
                raise DataError(f"{dataset.image_dir}: no training image has a box of a base category")
        else:
            cat_to_class = {cid: k for k, cid in enumerate(self.categories.ids)}
            limit = self.config.data.max_eval_images or len(dataset)
            indices = list(range(min(limit, len(dataset))))
        return ClassView(dataset, cat_to_class, drop_crowd=train, indices=indices)

    def train_dataset(self) -> Dataset:
        return OVDTrainSet(self._view(self.config.data.train_split, train=True), size=self.image_size,
                           flip=self.config.data.flip)

    # -- training
    def _train_proposals(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Any]) -> list[Tensor]:
        """Each image's proposals in its letterboxed (and possibly flipped) frame, cached per image unless
        ``data.cache_proposals`` is off."""
        found = cached_proposals(nets["proposer"], batch["key"], batch["raw"], self.config.proposals,
                                 self._proposals if self.config.data.cache_proposals else {})
        device, out = batch["image"].device, []
        for props, raw, flipped in zip(found, batch["raw"], batch["flip"]):
            boxes = letterbox_boxes(props.boxes, tuple(raw.shape[-2:]), self.image_size).to(device)
            out.append(flip_boxes(boxes, self.image_size) if flipped else boxes)
        return out

    def training_step(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Any],
                      step: int) -> Iterator[StepOutput]:
        # One phase, yielded: the network's parts are called directly (not its forward), so the engine's phased path
        # averages the gradients over processes itself (as the regionclip stage).
        cfg, net = self.config, unwrap_module(nets["model"])
        freeze_batchnorm(net.clip)
        x = batch["image"]  # (B, 3, S, S)
        gt = [b.to(x.device) for b in batch["boxes"]]
        rois, labels, targets = sample_rois(
            self._train_proposals(nets, batch), gt, [lab.to(x.device) for lab in batch["labels"]],
            num_classes=len(self.base_cols), matcher=self.matcher, sampler=self.sampler, coder=self.coder)
        with torch.set_grad_enabled(step >= cfg.model.head_steps):  # model.head_steps: no gradient to the tower yet
            feats = net.region_features(x, rois, pool_size=self.pool_size)  # (R, D)
        # every class's logit, background last (R, C_all + 1); training scores the base columns and the background
        every = ovd_logits(feats, net.class_emb, temperature=cfg.loss.temperature, background=net.background)
        trained = torch.cat([self.base_cols, torch.tensor([every.shape[1] - 1])]).to(x.device)
        logits = every[:, trained]  # (R, C_base + 1)
        if cfg.loss.kind == "focal":
            l_cls = focal_scaled_cross_entropy(logits, labels, gamma=cfg.loss.gamma,
                                               background_weight=cfg.loss.background_weight)
        else:
            l_cls = background_weighted_cross_entropy(logits, labels, background_weight=cfg.loss.background_weight)
        fg = labels < len(self.base_cols)
        deltas = net.bbox_pred(feats)  # (R, 4) class-agnostic
        # torchvision's fastrcnn_loss: smooth L1 summed over the foreground RoIs, divided by all sampled RoIs
        l_box = F.smooth_l1_loss(deltas[fg], targets[fg], beta=SMOOTH_L1_BETA, reduction="sum") / max(len(labels), 1)
        loss = l_cls + cfg.loss.box_weight * l_box
        logs = {}
        if cfg.loss.distill_weight > 0:  # ViLD-image toward the init tower's RoI embeddings
            with torch.no_grad():
                reference = nets["reference"]
                target = region_embeddings(reference, c4_parts(reference).trunk(x), rois, pool_size=self.pool_size)
            l_distill = region_distillation_l1(feats, target)
            loss = loss + cfg.loss.distill_weight * l_distill
            logs["loss_distill"] = float(l_distill.detach())
        with torch.no_grad():
            hits = logits.argmax(1) == labels
            acc = 100.0 * float(hits.float().mean()) if len(labels) else 0.0
            acc_fg = 100.0 * float(hits[fg].float().mean()) if bool(fg.any()) else 0.0  # the base classes alone
            feat_norm = float(feats.detach().norm(dim=1).mean()) if len(feats) else 0.0
            # label-free collapse signal: the share of sampled RoIs that a novel class (never a training label) would
            # win against every base class and the background at test time
            novel_share = novel_win_share(every, self.categories.novel.to(x.device))
        yield StepOutput(losses={"model": loss}, logs={
            "loss": float(loss.detach()), "loss_cls": float(l_cls.detach()), "loss_box": float(l_box.detach()),
            "fg_share": 100.0 * float(fg.float().mean()) if len(labels) else 0.0, "roi_acc": acc,
            "roi_acc_fg": acc_fg, "roi_feat_norm": feat_norm, "novel_win_share": novel_share,
            "background_logit": float(logits.detach()[:, -1].abs().max()) if len(labels) else 0.0, **logs})

    # -- inference
    @torch.no_grad()
    def detect(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor], class_emb: Tensor,
               class_names: Sequence[str] = ()) -> list[Detections]:
        """Detections of ``class_emb``'s classes ((C, D) unit rows) on uint8 ``(3, H, W)`` images, in their pixels:
        the trained detector, or zero-shot (``eval.zero_shot``: no box deltas, no background, see the module
        docstring)."""
        cfg, net = self.config, unwrap_module(nets["model"])
        zero_shot = cfg.eval.zero_shot != "off"
        device = class_emb.device
        props, boxes, feats, probs = self.proposal_scores(nets, images, class_emb)
        flat = torch.cat(boxes) if boxes else feats.new_zeros(0, 4)
        regressed = flat if zero_shot else self.coder.decode_single(net.bbox_pred(feats), flat)  # (R, 4)
        if cfg.roi.multiply_objectness:
            probs = probs * torch.cat([p.scores.to(device) for p in props])[:, None]
        out = []
        for img, b, p in zip(images, regressed.split([len(b) for b in boxes]), probs.split([len(b) for b in boxes])):
            b = unletterbox_boxes(b, tuple(img.shape[-2:]), self.image_size)
            kept = select_detections(b, p, score_thresh=cfg.roi.score_thresh, nms_thresh=cfg.roi.nms_thresh,
                                     max_dets=cfg.roi.detections_per_img)
            out.append(Detections(boxes=kept[0].float().cpu(), scores=kept[1].float().cpu(),
                                  labels=kept[2].long().cpu(), class_names=tuple(class_names)))
        return out

    @torch.no_grad()
    def proposal_scores(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor],
                        class_emb: Tensor) -> tuple[list[Proposals], list[Tensor], Tensor, Tensor]:
        """Before box regression and NMS: each uint8 ``(3, H, W)`` image's RPN proposals and their boxes in the
        letterbox frame, and over all of them the (R, D) RoI embeddings and (R, C) class scores (with the background
        column dropped, or zero-shot without background, as :meth:`detect` scores them)."""
        cfg, net = self.config, unwrap_module(nets["model"])
        device = class_emb.device
        props = propose(nets["proposer"], list(images), cfg.proposals)
        x = torch.stack([letterbox(img, self.image_size) for img in images]).to(device)  # (B, 3, S, S)
        boxes = [letterbox_boxes(p.boxes.to(device), tuple(img.shape[-2:]), self.image_size)
                 for p, img in zip(props, images)]
        feats = net.region_features(x, boxes, pool_size=self.pool_size)  # (R, D)
        probs = class_probabilities(feats, class_emb, temperature=cfg.loss.temperature,
                                    background=cfg.eval.zero_shot == "off", background_emb=net.background)
        return props, boxes, feats, probs

    def eval_classes(self, net: OVDNet) -> tuple[Tensor, Tensor]:
        """The competing classes' embeddings and their class indices: all (the generalised setting) or, with
        ``eval.categories: novel``, the novel ones alone."""
        cols = torch.arange(len(self.categories.ids))
        if self.config.eval.categories == "novel":
            cols = torch.nonzero(self.categories.novel).flatten()
            if not len(cols):
                raise UserError("eval.categories: novel, but the split has no novel category")
        return net.class_emb[cols.to(net.class_emb.device)], cols

    # -- evaluation
    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        view = self._view(split, train=False)
        if [c for c in view.dataset.cat_ids if c in set(self.categories.ids)] != self.categories.ids:
            raise UserError(f"{view.dataset.image_dir}: the {split} annotations lack categories of the "
                            f"{self.config.trainer.eval_split} ones the model was built with")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.config.eval.zero_shot == "gt":
            return self._evaluate_regions(nets, view, out)
        return self._evaluate_detections(nets, view, out)

    def _evaluate_regions(self, nets: Mapping[str, nn.Module], view: ClassView, out: Path) -> EvalResult:
        """Zero-shot classification of the GT boxes (RoI features or crops), every class competing."""
        net = unwrap_module(nets["model"])
        class_emb = net.class_emb
        if self.config.eval.zero_shot_regions == "crop":  # the CLIP on letterboxed crops at its own input size
            scores = zero_shot_scores(net.clip, view, class_emb, size=self.clip_size,
                                      batch_size=self.config.eval.batch_size)
            dataset = view.dataset
            counts = [sum(a["category_id"] in view.cat_to_class for a in dataset.annotations[dataset.ids[i]])
                      for i in view.indices]  # the GT boxes of each image, as the view yields them
        else:
            scores, counts = roi_zero_shot_scores(net.clip, view, class_emb, size=self.image_size,
                                                  pool_size=self.pool_size, batch_size=self.config.eval.batch_size)
        metrics, per_class = zero_shot_metrics(scores, self.categories.novel)
        write_per_image(out, list(zip(map(str, scores.image_ids), per_image_region_accuracy(scores, counts))))
        names = self.categories.names
        return EvalResult(metrics=metrics, per_class={k: dict(zip(names, v)) for k, v in per_class.items()},
                          monitor="region_acc")

    def _evaluate_detections(self, nets: Mapping[str, nn.Module], view: ClassView, out: Path) -> EvalResult:
        """COCO AP50 over novel / base / all classes from one evaluation, per-class AP50, per-image recall."""
        class_emb, cols = self.eval_classes(unwrap_module(nets["model"]))
        ids, names = self.categories.ids, self.categories.names
        rows: list[dict[str, Any]] = []
        per_image: list[tuple[str, float]] = []
        data = self.config.data
        keeper = SampleKeeper([str(view.dataset.ids[i]) for i in view.indices], num_fixed=data.num_fixed_samples,
                              num_worst=data.num_worst_samples)
        step = self.config.eval.batch_size
        for start in range(0, len(view), step):
            items = [view[i] for i in range(start, min(start + step, len(view)))]
            found = self.detect(nets, [it["image"] for it in items], class_emb)
            for item, dets in zip(items, found):
                dets = Detections(boxes=dets.boxes, scores=dets.scores, labels=cols[dets.labels],
                                  class_names=tuple(names))
                rows += [{**r, "category_id": ids[r["category_id"] - 1]}
                         for r in coco_results(dets, image_id=int(item["image_id"]), file_name=item["file_name"],
                                               class_names=names)]
                target = {"boxes": item["boxes"], "labels": item["labels"], "difficult": item["iscrowd"]}
                per_image.append((str(item["image_id"]), 100.0 * image_recall(dets, target)))
                keeper.offer(per_image[-1][0], per_image[-1][1], (item["image"], target, dets))
        novel = self.categories.novel.numpy()
        for image_id, (image, target, dets) in keeper.chosen():  # the report draws novel classes highlighted
            save_sample(out, image_id, "detection", image.permute(1, 2, 0).numpy(),
                        gt_boxes=to_inclusive(target["boxes"]).astype(np.float32), gt_labels=target["labels"].numpy(),
                        pred_boxes=to_inclusive(dets.boxes).astype(np.float32), pred_scores=dets.scores.numpy(),
                        pred_labels=dets.labels.numpy(), class_names=np.asarray(names), novel_classes=novel)
        write_per_image(out, per_image)
        (out / "detections.json").write_text(json.dumps(rows))
        subsets = {"all": ids, "novel": [c for c, n in zip(ids, novel.tolist()) if n],
                   "base": [c for c, n in zip(ids, novel.tolist()) if not n]}
        scored = coco_box_ap(ground_truth(view, ids), rows, {k: v for k, v in subsets.items() if v})
        metrics: dict[str, float] = {}
        for subset in subsets:
            for key in ("AP50", "AP"):
                value = scored.get(subset, {}).get(key, float("nan"))
                if value == value:  # a subset without GT boxes (NaN) is left out
                    metrics[f"{key}_{subset}"] = value
        per_class = {"AP50": {n: _finite(scored["per_class"][c]["AP50"]) for c, n in zip(ids, names)},
                     "AP": {n: _finite(scored["per_class"][c]["AP"]) for c, n in zip(ids, names)}}
        monitor = "AP50_novel" if "AP50_novel" in metrics else "AP50_all"
        return EvalResult(metrics=metrics, per_class=per_class, monitor=monitor)

    # -- prediction
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Detections]:
        """One :class:`~lowlabel.structures.Detections` per uint8 ``(3, H, W)`` image over every class (or the novel
        ones, ``eval.categories``), in its pixels."""
        class_emb, cols = self.eval_classes(unwrap_module(nets["model"]))
        names = tuple(self.categories.names)
        return [Detections(boxes=d.boxes, scores=d.scores, labels=cols[d.labels], class_names=names)
                for d in self.detect(nets, images, class_emb)]

    @torch.no_grad()
    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path,
                classes: Sequence[str] | None = None) -> None:
        """``<name>.png``: each input with its detections (score >= 0.5) drawn; ``detections.json``: all of them as a
        COCO results list (the detector's rows: ``category_id`` = label + 1 in the class list, ``category_name``).

        Args:
            classes: the class names to detect (any words: open vocabulary), embedded with ``text.templates`` by the
                network's text tower; None = the categories it was trained and evaluated with.

        Raises:
            UserError: ``classes`` given but empty, a name listed twice, or a name too long for the text tower
                (:func:`lowlabel.models.clip.check_class_names`).
        """
        net = unwrap_module(nets["model"])
        if classes is None:
            names, class_emb = list(self.categories.names), net.class_emb
        else:
            names = [n.strip() for n in classes if n.strip()]
            if not names:
                raise UserError("--classes: the class list is empty; give names separated by commas, "
                                "e.g. --classes \"star, striped ring\"")
            check_class_names(names, self.config.text.templates, int(net.clip.context_length))
            class_emb = prompt_embeddings(net.clip, names, self.config.text.templates)
        results: list[dict[str, Any]] = []

        def detect(nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Detections]:
            return self.detect(nets, images, class_emb, names)

        def write(folder: Path, source: Path, stem: str, array: Any, dets: Detections) -> int:
            from PIL import Image as PILImage

            PILImage.fromarray(draw_detections(array, dets, names)).save(folder / f"{stem}.png")
            image_id = image_ids.setdefault(str(source), len(image_ids) + 1)  # 1-based, in input order
            results.extend(coco_results(dets, image_id=image_id, file_name=str(source), class_names=names))
            return image_id

        image_ids: dict[str, int] = {}
        predict_files(detect, nets, Path(inputs), Path(out), write)
        (Path(out) / "detections.json").write_text(json.dumps(results, indent=1))


def _finite(value: float) -> float | None:
    return None if value != value else float(value)


def ground_truth(view: ClassView, cat_ids: Sequence[int]) -> dict[str, Any]:
    """The COCO GT dict of ``view``'s images with the boxes of ``cat_ids`` (what :func:`coco_box_ap` scores)."""
    dataset, keep = view.dataset, set(cat_ids)
    image_ids = [dataset.ids[i] for i in view.indices]
    images = [{"id": i, "width": int(dataset.images[i]["width"]), "height": int(dataset.images[i]["height"]),
               "file_name": dataset.images[i]["file_name"]} for i in image_ids]
    anns = []
    for img_id in image_ids:
        for ann in dataset.annotations[img_id]:
            if ann["category_id"] in keep:
                x, y, w, h = ann["bbox"]
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": ann["category_id"],
                             "bbox": [x, y, w, h], "area": float(ann.get("area", w * h)),
                             "iscrowd": int(ann.get("iscrowd", 0))})
    cats = [{"id": c, "name": n} for c, n in zip(dataset.cat_ids, dataset.class_names) if c in keep]
    return {"images": images, "annotations": anns, "categories": cats}


def build(cfg: OVDConfig) -> OVDMethod:
    """The one place that reads the config."""
    return OVDMethod(config=cfg)
