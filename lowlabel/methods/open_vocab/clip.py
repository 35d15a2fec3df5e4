"""``clip``: a CLIP trained from scratch on image-caption pairs, the teacher RegionCLIP starts from.

CLIP (Radford et al., ICML 2021, arXiv:2103.00020), as the teacher of RegionCLIP (Zhong et al., CVPR 2022,
arXiv:2112.09106; methods.md 4a.1). With a batch of N pairs, images x (letterboxed, CLIP-normalised) and captions t
(BPE tokens, one caption per image drawn at random):

    v = normalize(V(x))                      (N, D)  ModifiedResNet + attention pooling (lowlabel.models.clip)
    w = normalize(L(t))                      (N, D)  text transformer at the end token
    s = min(exp(logit_scale), 100)                   CLIP's learned 1 / tau, starting at 1 / 0.07, capped at 100
    logits = s * v w^T                       (N, N)
    loss = (CE(logits, arange N) + CE(logits^T, arange N)) / 2

(:func:`lowlabel.losses.regionclip.gathered_clip_loss`: with several processes the pairs of all of them are the
negatives, and each process's embeddings get the gradient of the whole batch.) Optimiser as CLIP's section 2.5:
AdamW with beta2 0.98, cosine schedule with warm-up, no weight decay on gains, biases, positional embeddings and the
logit scale (every parameter with fewer than 2 dimensions, and the two positional embeddings).

Evaluation is zero-shot: each class name goes through a prompt-template ensemble (methods.md 4a.3) into a text
embedding, and images and GT-box crops of the split are classified by cosine similarity
(:func:`lowlabel.methods.open_vocab.common.zero_shot_metrics`: image mAP and top-1, region accuracy on base and
novel classes).

The same method measures a published CLIP instead of one it trained: with ``model.arch: RN50-quickgelu``,
``lowlabel evaluate clip --ckpt RN50.pt --method-config configs/clip/openai-rn50.yaml`` scores OpenAI's file, and
``model.pretrained`` starts training from it (see that config).

    lowlabel train clip --config configs/clip/synth-full.yaml
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lowlabel.errors import UserError
from lowlabel.losses.regionclip import gathered_clip_loss
from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.open_vocab.common import (
    CaptionPairs,
    Categories,
    COCOFilesConfig,
    caption_dataset,
    categories,
    coco_root,
    image_recall_at_k,
    instance_dataset,
    letterbox,
    write_top_classes,
    zero_shot_metrics,
    zero_shot_scores,
)
from lowlabel.models.clip import (
    TORCHSCRIPT_EXTRAS,
    build_clip,
    expand_templates,
    image_embeddings,
    load_clip_state,
    logit_scale,
    prompt_embeddings,
)
from lowlabel.structures import Classification

# Default prompts for ShapesWorld: CLIP's plainest template and four in the style of the captions ("A photo of a
# cow.", "There is a small coach."), as CLIP's own templates follow the style of web alt-text.
SHAPESWORLD_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a {}.", "there is a {}.", "a picture showing a {}.", "a {} in the scene.",
)


@dataclass
class CLIPDataConfig(COCOFilesConfig):
    """The COCO-layout folder (images, captions, instances, split file) and the training input."""

    train_split: str = "train"
    flip: bool = True  # mirror training images half of the time; no crops or colour jitter: captions name colours


@dataclass
class CLIPModelConfig:
    """The CLIP (:func:`lowlabel.models.clip.build_clip`)."""

    arch: str = "tiny"  # tiny (ShapesWorld), an open_clip ResNet (RN50-quickgelu for OpenAI's weights) or a .json
    image_size: int = 0  # input side, a multiple of 32; 0 = the arch's (tiny 96, RN50 224)
    context_length: int = 0  # tokens per caption; 0 = the arch's (tiny 48, RN50 77)
    pretrained: str = ""  # "" = random; a weights file, a clip run folder, or an open_clip tag (downloads)


@dataclass
class ZeroShotConfig:
    """Zero-shot evaluation."""

    templates: list[str] = field(default_factory=lambda: list(SHAPESWORLD_TEMPLATES))  # or [openai-imagenet]
    region_context: float = 1.0  # a GT-box crop is the box scaled by this about its centre (ViLD also uses 1.5)
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.region_context <= 0:
            raise ValueError(f"eval.region_context must be > 0, got {self.region_context}")
        if self.batch_size < 1:
            raise ValueError(f"eval.batch_size must be >= 1, got {self.batch_size}")


def _optim() -> OptimConfig:
    # CLIP section 2.5 / appendix F: Adam with decoupled weight decay 0.2, beta2 0.98, cosine decay with warm-up
    return OptimConfig(name="adamw", lr=5e-4, betas=(0.9, 0.98), weight_decay=0.2, schedule="cosine",
                       warmup_steps=100)


@dataclass
class CLIPConfig:
    """Config of ``lowlabel train clip``."""

    data: CLIPDataConfig = field(default_factory=CLIPDataConfig)
    model: CLIPModelConfig = field(default_factory=CLIPModelConfig)
    eval: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    optim: OptimConfig = field(default_factory=_optim)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=1000, batch_size=128, eval_every=0, eval_split="val", log_every=20, monitor="image_mAP"))


CONFIG = CLIPConfig


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Parameters CLIP trains without weight decay: gains, biases, the logit scale (all under 2-D) and the
    positional embeddings of the text tower and the attention pool."""
    return param.ndim < 2 or name.endswith("positional_embedding")


class CLIPMethod:
    """Contrastive image-caption training of a CLIP; zero-shot classification of images and GT-box regions."""

    name = "clip"

    def __init__(self, *, config: CLIPConfig) -> None:
        self.config = config
        self.templates = expand_templates(config.eval.templates)
        self.root = coco_root(config.data)
        self.model = build_clip(arch=config.model.arch, image_size=config.model.image_size,
                                context_length=config.model.context_length, pretrained=config.model.pretrained)
        self.image_size = int(self.model.visual.image_size)
        self.categories: Categories = categories(instance_dataset(self.root, config.data, config.trainer.eval_split),
                                                 config.data, self.root)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        decay, plain = [], []
        for name, param in nets["model"].named_parameters():
            if param.requires_grad:
                (plain if no_decay(name.removeprefix("module."), param) else decay).append(param)
        groups = [{"params": decay}, {"params": plain, "weight_decay": 0.0}]
        return {"model": build_optimizer(groups, self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        cfg = self.config
        return CaptionPairs(caption_dataset(self.root, cfg.data, cfg.data.train_split), size=self.image_size,
                            context_length=int(self.model.context_length), flip=cfg.data.flip)

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        image_emb, text_emb, scale = nets["model"](batch["image"], batch["tokens"])  # (N, D), (N, D) unit; ()
        scale = scale.clamp(max=100.0)  # CLIP's cap on 1 / tau (no gradient beyond it)
        loss = gathered_clip_loss(image_emb, text_emb, scale, sync_grads=True)
        with torch.no_grad():
            logits = image_emb @ text_emb.t()  # (N, N) local pairs
            labels = torch.arange(len(logits), device=logits.device)
            hits = (logits.argmax(1) == labels).float().mean() + (logits.argmax(0) == labels).float().mean()
            acc = 50.0 * float(hits)  # percent of images finding their caption and captions their image
        return StepOutput(losses={"model": loss},
                          logs={"loss": float(loss.detach()), "logit_scale": float(scale.detach()), "pair_acc": acc})

    def class_embeddings(self, model: nn.Module, names: Sequence[str] | None = None) -> torch.Tensor:
        """(C, D) prompt-ensemble embeddings of ``names`` (default: the categories' prompt names)."""
        return prompt_embeddings(model, list(names) if names is not None else self.categories.prompt_names,
                                 self.templates)

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        model, cfg = nets["model"], self.config
        dataset = instance_dataset(self.root, cfg.data, split)
        if dataset.cat_ids != self.categories.ids:
            raise UserError(f"{dataset.image_dir}: the {split} annotations have other categories than the "
                            f"{cfg.trainer.eval_split} ones the model was built with")
        scores = zero_shot_scores(model, dataset, self.class_embeddings(model), size=self.image_size,
                                  context=cfg.eval.region_context, batch_size=cfg.eval.batch_size)
        metrics, per_class = zero_shot_metrics(scores, self.categories.novel)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "per_image.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "score"])
            writer.writerows(zip(scores.image_ids, image_recall_at_k(scores).tolist()))
        names = self.categories.names
        tables = {key: dict(zip(names, values)) for key, values in per_class.items()}
        return EvalResult(metrics=metrics, per_class=tables, monitor="image_mAP")

    def load_foreign_weights(self, nets: Mapping[str, nn.Module], state: Mapping[str, torch.Tensor], *,
                             source: Path) -> None:
        """Load a published CLIP's state dict (OpenAI's TorchScript archive, open_clip's file) into ``model``."""
        state = {k: v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}
        load_clip_state(nets["model"], state, source=source)  # type: ignore[arg-type]

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[torch.Tensor]) -> list[Classification]:
        """One :class:`~lowlabel.structures.Classification` over the categories per uint8 ``(3, H, W)`` image:
        softmax of CLIP's scaled cosine similarities (nets in eval mode)."""
        return self._classify(nets["model"], images, self.class_embeddings(nets["model"]))

    def _classify(self, model: nn.Module, images: Sequence[torch.Tensor],
                  class_emb: torch.Tensor) -> list[Classification]:
        x = torch.stack([letterbox(img, self.image_size) for img in images])  # (B, 3, S, S)
        probs = (logit_scale(model) * image_embeddings(model, x) @ class_emb.t()).float().softmax(1).cpu()  # (B, C)
        return [Classification(label=int(p.argmax()), score=float(p.max()), probs=p) for p in probs]

    @torch.no_grad()
    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``predictions.json``: the five most likely categories (names and probabilities) of every image."""
        names = self.categories.names
        class_emb = self.class_embeddings(nets["model"])  # (C, D), once for all images

        def classify(nets: Mapping[str, nn.Module], images: Sequence[torch.Tensor]) -> list[Classification]:
            return self._classify(nets["model"], images, class_emb)

        write_top_classes(classify, names, nets, inputs, out)


def build(cfg: CLIPConfig) -> CLIPMethod:
    """The one place that reads the config."""
    return CLIPMethod(config=cfg)
