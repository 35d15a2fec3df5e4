"""Unpaired image translation for cross-domain detection: the harness that CUT and LGCL share.

The setting (LGCL, BMVC 2024, arXiv:2410.05058; reference/methods.md section 1): a detector trained on the labelled
source domain stays frozen. Target-domain test images are translated into the source style, and the detector runs on
the translations. The translator trains on unlabelled images of both domains; it never sees a box.

Notation: ``x`` is a target image (the input; ShapesWorld ``domains/trainB``, foggy) and ``y`` a source image (the
style to reach; ``domains/trainA``, clear). CUT's "A -> B" is our target -> source. Images are in [-1, 1].

One training step, in ordered phases (CUT's order: D steps first, then G's loss sees the updated D)::

    fake = G(x);  idt = G(y) when nce_idt                          # one forward of the batch [x; y]
    phase "D":  L_D = 0.5 (mean (D(y) - 1)^2 + mean D(fake.detach())^2)                        LSGAN
    phase "G":  L_G = lambda_gan mean (D(fake) - 1)^2
                    + lambda_nce (PatchNCE(E(fake), E(x)) [+ PatchNCE(E(idt), E(y))]) / (1 [or 2])
                    + the method's extra generator loss (LGCL: the local-global loss on G_A)

PatchNCE is CUT's (``lowlabel.losses.lgcl.multilayer_patch_nce``): the translator's own encoder E tapped at CUT's
layers, 256 random locations per layer shared by query and key, negatives from the same image, tau = 0.07. The "G"
optimizer holds the translator, the PatchNCE heads and the method's heads; "D" the discriminator.

Evaluation scores the target test split. The results use the last checkpoint (CUT and LGCL report the final
epoch); the test split never picks a checkpoint. Metrics:

* ``mAP`` (and ``AP/<class>``): VOC mAP@0.5 of the frozen detector on the translations;
* ``mAP_source_only`` (the detector on the raw target images) and ``mAP_oracle`` (on their clean twins), from the
  same detector, as the paper's "Source" and "Target oracle" rows;
* ``PSNR``, ``SSIM`` of each translation against its clean twin, and ``PSNR_input``, ``SSIM_input`` of the raw target
  image, where clean twins exist (ShapesWorld): does the translation restore the scene, or only fool D?
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from lowlabel.data.io import load_rgb, to_image
from lowlabel.data.unpaired import UnpairedImages, list_images
from lowlabel.errors import DataError, UserError
from lowlabel.losses.lgcl import lsgan_d_loss, lsgan_g_loss, multilayer_patch_nce, sample_patch_ids
from lowlabel.methods.base import (
    EvalResult,
    Frozen,
    OptimConfig,
    StepOutput,
    TrainerConfig,
    build_optimizer,
    unwrap_module,
)
from lowlabel.methods.cross_domain.common import (
    DetectionSplit,
    SplitFolders,
    ap_metrics,
    coco_results,
    detect,
    draw_detections,
    eval_target,
    image_recall,
    load_detector,
    score_detections,
    to_inclusive,
)
from lowlabel.methods.predict import predict_files
from lowlabel.metrics.image_quality import psnr, ssim
from lowlabel.models.lgcl_nets import AttentionTranslator, PatchDiscriminator, ResnetGenerator, patch_heads
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import Detections
from lowlabel.structures import Image as ImagePrediction

SYNTH_FOLDERS = {  # ShapesWorld domains/ (DESIGN.md section 2)
    "target_train": "trainB",
    "source_train": "trainA",
    "target_test": "testB",
    "target_test_annotations": "annotations/testB.json",
    "target_test_clean": "testB_clean",
}


@dataclass
class TranslationDataConfig:
    """The unpaired training folders and the labelled target test split.

    ``root: synth:<preset>`` fills every empty folder field from ShapesWorld's ``domains/``; a real dataset names them
    (CUT-style ``trainA/ trainB/ testA/ testB`` folders, or any image folders, searched recursively). Foggy
    Cityscapes keeps three fog densities side by side and is boxed under the clean Cityscapes names: ``target_suffix``
    picks one density, ``annotated_suffix`` maps the annotated names to it (configs/lgcl/cityscapes-foggy.yaml).
    """

    root: str = "synth:quick"  # synth:<preset>[:<seed>] (ShapesWorld domains/), or "" with the folders below
    target_train: str = ""  # unlabelled target-domain images, the translator's input (ShapesWorld: trainB)
    source_train: str = ""  # unlabelled source-domain images, the style D learns (ShapesWorld: trainA)
    target_test: str = ""  # target test images (ShapesWorld: testB)
    target_test_annotations: str = ""  # their boxes: COCO JSON, or a VOC/KITTI label folder ("" = no detection score)
    target_test_clean: str = ""  # their clean twins, under the annotated names ("" = none; ShapesWorld: testB_clean)
    target_test_image_set: str = ""  # optional list of target test ids (file stems), one a line (VOC ImageSets)
    target_suffix: str = ""  # only target images (train and test) whose file name ends so ("" = all)
    annotated_suffix: str = ""  # the target test annotations name each file with this ending instead of target_suffix
    load_size: int = 0  # training: resize the shorter side to this first (0 = keep; LGCL: 600)
    crop: int = 0  # training: a random square crop of this side (0 = the whole image; CUT: 256); a multiple of 8
    flip: bool = True  # training: random horizontal flips (CUT's default)
    eval_size: int = 0  # evaluation: the shorter side the translator sees (0 = native; LGCL: full resolution)
    max_eval_images: int = 0  # 0 = the whole test split
    num_fixed_samples: int = 6
    num_worst_samples: int = 6

    def __post_init__(self) -> None:
        for key in ("load_size", "crop", "eval_size", "max_eval_images"):
            if getattr(self, key) < 0:
                raise ValueError(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if self.annotated_suffix and not self.target_suffix:
            raise ValueError("data.annotated_suffix needs data.target_suffix (the ending the target files have)")
        if self.crop % 8:
            raise ValueError(f"data.crop must be a multiple of 8 (the translator needs /4, the discriminator /8), "
                             f"got {self.crop}")

    def folders(self) -> dict[str, str]:
        """The five folder fields, ShapesWorld's filled in for a ``synth:`` root."""
        given = {key: getattr(self, key) for key in SYNTH_FOLDERS}
        if not self.root:
            return given
        from lowlabel.data import resolve_root

        base = Path(resolve_root(self.root, "domains"))
        return {key: value or str(base / SYNTH_FOLDERS[key]) for key, value in given.items()}


@dataclass
class TranslatorConfig:
    """The networks. ``width=64, n_blocks=9, disc_width=64`` are CUT's and LGCL's (ngf = ndf = 64, resnet_9blocks)."""

    width: int = 64
    n_blocks: int = 9
    disc_width: int = 64
    disc_layers: int = 3  # 70 x 70 PatchGAN


@dataclass
class NCEConfig:
    """CUT's losses and their weights (CUT mode: lambda_GAN = lambda_NCE = 1 with identity NCE)."""

    lambda_gan: float = 1.0
    lambda_nce: float = 1.0
    nce_idt: bool = True  # the identity PatchNCE on (y, G(y)) (CUT; FastCUT turns it off)
    num_patches: int = 256  # CUT --num_patches
    tau: float = 0.07  # CUT --nce_T


def _adam(lr: float) -> OptimConfig:
    # CUT: Adam lr 2e-4, betas (0.5, 0.999), no weight decay
    return OptimConfig(name="adam", lr=lr, betas=(0.5, 0.999), weight_decay=0.0, schedule="constant")


@dataclass
class TranslationConfig:
    """The shared part of ``cut`` and ``lgcl`` configs."""

    data: TranslationDataConfig = field(default_factory=TranslationDataConfig)
    model: TranslatorConfig = field(default_factory=TranslatorConfig)
    nce: NCEConfig = field(default_factory=NCEConfig)
    detector: str = ""  # a `lowlabel train detector` run (or its checkpoint), frozen; "" = image quality only
    use_07_metric: bool = False  # VOC07 11-point AP instead of the all-point area (recorded in the metrics)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=1, eval_split="test"))
    optim_g: OptimConfig = field(default_factory=lambda: _adam(2e-4))
    optim_d: OptimConfig = field(default_factory=lambda: _adam(2e-4))


class GeneratorExtra(Protocol):
    """A method's addition to the harness (LGCL's local-global loss): more networks and a generator loss term."""

    def networks(self) -> dict[str, nn.Module]: ...

    def trainable(self) -> list[str]:
        """Names among ``networks()`` whose parameters the "G" optimizer holds."""
        ...

    def generator_loss(self, nets: Mapping[str, nn.Module], x: Tensor) -> tuple[Tensor, dict[str, float]]: ...

    def after_optimizer_step(self, nets: Mapping[str, nn.Module], step: int) -> None: ...


# ---------------------------------------------------------------- data


def _to_unit_range(image: Tensor) -> Tensor:
    """uint8 (3, H, W) -> float (3, H, W) in [-1, 1]."""
    return image.float().div(127.5).sub(1.0)


def _to_uint8(x: Tensor) -> Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8, rounded."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


class TrainTransform:
    """One training image: optional shorter-side resize, optional random square crop, random flip, then [-1, 1]."""

    def __init__(self, *, load_size: int, crop: int, flip: bool) -> None:
        self.load_size, self.crop, self.flip = load_size, crop, flip

    def __call__(self, image: Tensor) -> Tensor:
        if self.load_size:
            image = TF.resize(image, [self.load_size], antialias=True)
        if self.crop:
            h, w = image.shape[-2:]
            if h < self.crop or w < self.crop:
                raise DataError(f"an image of {h} x {w} px is smaller than data.crop = {self.crop}")
            top = int(torch.randint(h - self.crop + 1, ()))
            left = int(torch.randint(w - self.crop + 1, ()))
            image = image[..., top : top + self.crop, left : left + self.crop]
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return _to_unit_range(image)


def collate_pairs(items: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
    """Stack ``a`` (target) and ``b`` (source) images; ``DataError`` naming two files when sizes differ."""
    for key in ("a", "b"):
        first = items[0][key].shape
        for item in items[1:]:
            if item[key].shape != first:
                raise DataError(f"images of different sizes in one batch: {items[0][key + '_path']} is "
                                f"{tuple(first[-2:])}, {item[key + '_path']} is {tuple(item[key].shape[-2:])}; "
                                "set data.crop (or data.load_size) so that the training images share one size")
    x, y = torch.stack([it["a"] for it in items]), torch.stack([it["b"] for it in items])  # (B, 3, H, W) each
    for name, t in (("target", x), ("source", y)):
        if t.shape[-2] % 8 or t.shape[-1] % 8:
            raise DataError(f"{name} training images of {tuple(t.shape[-2:])} px: the translator needs sides "
                            "divisible by 4 and the discriminator by 8; set data.crop (a multiple of 8)")
    return {"x": x, "y": y}


def train_set(cfg: TranslationDataConfig) -> UnpairedImages:
    folders = cfg.folders()
    return UnpairedImages(dir_a=folders["target_train"], dir_b=folders["source_train"], suffix_a=cfg.target_suffix,
                          transforms=TrainTransform(load_size=cfg.load_size, crop=cfg.crop, flip=cfg.flip))


def target_test_split(cfg: TranslationDataConfig, folders: Mapping[str, str], classes: Sequence[str] = (),
                      detector: str = "") -> DetectionSplit:
    """The labelled target test split with the labels of ``classes`` (a detector's; [] = the annotations' own).

    Raises:
        UserError: the annotations lack a class of the detector (one line naming both), or no image matches.
    """
    split = SplitFolders(images=folders["target_test"], annotations=folders["target_test_annotations"],
                         image_set=cfg.target_test_image_set, file_suffix=cfg.target_suffix,
                         annotated_suffix=cfg.annotated_suffix)
    return DetectionSplit(name="target_test", folders=split, classes=classes, limit=cfg.max_eval_images,
                          classes_from=f"the detector {detector}" if detector else "data.classes")


# ---------------------------------------------------------------- networks


def build_translator(kind: Literal["plain", "attention"], cfg: TranslatorConfig) -> nn.Module:
    if kind == "attention":
        return AttentionTranslator(width=cfg.width, n_blocks=cfg.n_blocks)
    return ResnetGenerator(width=cfg.width, n_blocks=cfg.n_blocks)


# Phased steps average gradients themselves, so calling a wrapped network's submodules directly is safe under DDP.
plain = unwrap_module


def translate_any_size(translator: nn.Module, x: Tensor) -> Tensor:
    """G(x) for (B, 3, H, W) of any size: reflection-padded to multiples of 4 (the translator's stride), then
    cropped back."""
    h, w = x.shape[-2:]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return translator(x)[..., :h, :w]


# ---------------------------------------------------------------- the method


class Translator:
    """An unpaired translator (module docstring) with an optional generator-loss extension."""

    def __init__(self, *, name: str, config: TranslationConfig, generator: Literal["plain", "attention"],
                 extra_factory: Any = None) -> None:
        self.name, self.config = name, config
        self.generator = generator
        m = config.model
        self.G = build_translator(generator, m)
        self.D = PatchDiscriminator(width=m.disc_width, n_layers=m.disc_layers)
        encoder = self.G.encoder
        self.nce_layers = encoder.nce_layers
        self.F = patch_heads([encoder.channels[i] for i in self.nce_layers])
        self.extra: GeneratorExtra | None = None if extra_factory is None else extra_factory(self.G)
        self._detector: tuple[Frozen, list[str]] | None = None
        self._folders: dict[str, str] | None = None
        self._test_split: DetectionSplit | None = None

    # -- protocol

    def networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {"G": self.G, "D": self.D, "F": self.F}
        if self.extra is not None:
            nets.update(self.extra.networks())
        return nets

    def frozen_networks(self) -> dict[str, Frozen]:
        return {"detector": self.detector()[0]} if self.config.detector else {}

    def detector(self) -> tuple[Frozen, list[str]]:
        """The frozen detector and its class names, loaded once (:func:`common.load_detector`). A detector of
        classes the target test annotations lack is refused here, before any training (one line naming both)."""
        if self._detector is None:
            frozen, classes = load_detector(self.config.detector)
            if self.folders()["target_test_annotations"]:
                self._test_split = target_test_split(self.config.data, self.folders(), classes, frozen.source)
            self._detector = frozen, classes
        return self._detector

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        g_nets = ["G", "F"] + (self.extra.trainable() if self.extra is not None else [])
        g_params = [p for name in g_nets for p in nets[name].parameters()]
        return {"D": build_optimizer(nets["D"].parameters(), self.config.optim_d),
                "G": build_optimizer(g_params, self.config.optim_g)}

    def optim_configs(self) -> dict[str, OptimConfig]:
        return {"D": self.config.optim_d, "G": self.config.optim_g}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return train_set(self.config.data)

    collate = staticmethod(collate_pairs)

    def training_step(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Tensor],
                      step: int) -> Iterator[StepOutput]:
        cfg = self.config.nce
        x, y = batch["x"], batch["y"]  # (B, 3, H, W) each, target and source
        b = x.shape[0]
        both = torch.cat([x, y]) if cfg.nce_idt else x  # one forward for fake and idt, as CUT
        out = nets["G"](both)
        fake, idt = out[:b], (out[b:] if cfg.nce_idt else None)

        d_real, d_fake = nets["D"](y), nets["D"](fake.detach())
        loss_d = lsgan_d_loss(d_real, d_fake)
        yield StepOutput(losses={"D": loss_d}, logs={"loss_D": float(loss_d.detach()),
                                                     "D_real": float(d_real.detach().mean()),
                                                     "D_fake": float(d_fake.detach().mean())})

        loss_gan = lsgan_g_loss(nets["D"](fake))
        loss_nce = self.patch_nce(nets, x, fake)
        logs = {"loss_G_GAN": float(loss_gan.detach()), "loss_NCE": float(loss_nce.detach())}
        if idt is not None:
            loss_idt = self.patch_nce(nets, y, idt)
            logs["loss_NCE_Y"] = float(loss_idt.detach())
            loss_nce = 0.5 * (loss_nce + loss_idt)
        loss_g = cfg.lambda_gan * loss_gan + cfg.lambda_nce * loss_nce
        if self.extra is not None:
            loss_extra, extra_logs = self.extra.generator_loss(nets, x)
            loss_g = loss_g + loss_extra
            logs.update(extra_logs)
        logs["loss_G"] = float(loss_g.detach())
        yield StepOutput(losses={"G": loss_g}, logs=logs)

    def patch_nce(self, nets: Mapping[str, nn.Module], src: Tensor, out: Tensor) -> Tensor:
        """CUT's multi-layer PatchNCE between a translation ``out`` (queries) and its input ``src`` (keys)."""
        encoder = plain(nets["G"]).encoder
        _, feats_q = encoder.forward_intermediates(out, self.nce_layers, stop_early=True)
        _, feats_k = encoder.forward_intermediates(src, self.nce_layers, stop_early=True)
        ids = sample_patch_ids(feats_k, self.config.nce.num_patches)
        return multilayer_patch_nce(feats_q, feats_k, ids, plain(nets["F"]), self.config.nce.tau)

    def after_optimizer_step(self, nets: Mapping[str, nn.Module], step: int) -> None:
        if self.extra is not None:
            self.extra.after_optimizer_step(nets, step)

    # -- evaluation

    def folders(self) -> dict[str, str]:
        if self._folders is None:
            self._folders = self.config.data.folders()
        return self._folders

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        if split not in ("test", "target_test"):
            raise UserError(f"{self.name} evaluates the target test split (data.target_test): use --split test, "
                            f"not {split!r}")
        detector = nets.get("detector")
        class_names = self.detector()[1] if detector is not None else []
        split = self._test_split if detector is not None else None
        if split is None and self.folders()["target_test_annotations"]:
            split = target_test_split(self.config.data, self.folders())
        return evaluate_translator(lambda x: translate_any_size(nets["G"], x), config=self.config,
                                   folders=self.folders(), detector=detector, class_names=class_names,
                                   test_split=split, out_dir=out_dir)

    # -- inference

    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[ImagePrediction]:
        """Each uint8 (3, H, W) target image translated into the source style, at its own size."""
        out = []
        for image in images:
            x = _to_unit_range(image)[None]  # (1, 3, H, W)
            out.append(ImagePrediction(image=_to_uint8(translate_any_size(nets["G"], x))[0]))
        return out

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """Translated images (``<name>.png``) and ``translations.json`` (``[{"image_id", "input", "translated"}]``,
        image ids 1-based in sorted input order). With a detector, also its detections before and after the
        translation, drawn (``<name>_before.png``, ``<name>_after.png``) and as COCO results lists
        (``detections_before.json``, ``detections_after.json``: the detector's own ``predict`` format)."""
        detector = nets.get("detector")
        class_names = self.detector()[1] if detector is not None else []
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}

        def write(folder: Path, source: Path, stem: str, array: np.ndarray, pred: ImagePrediction) -> Any:
            from PIL import Image as PILImage

            translated = pred.image.permute(1, 2, 0).numpy()  # (H, W, 3) uint8
            PILImage.fromarray(translated).save(folder / f"{stem}.png")
            row: dict[str, Any] = {"image_id": len(rows) + 1, "input": str(source), "translated": f"{stem}.png"}
            rows.append(row)
            if detector is not None:
                raw = torch.from_numpy(array).permute(2, 0, 1)
                found = detect(detector, [raw.float() / 255, pred.image.float() / 255], class_names)
                for tag, image, dets in zip(("before", "after"), (array, translated), found):
                    PILImage.fromarray(draw_detections(image, dets, class_names)).save(folder / f"{stem}_{tag}.png")
                    results[tag] += coco_results(dets, image_id=row["image_id"], file_name=str(source),
                                                 class_names=class_names)
            return row

        rows: list[dict[str, Any]] = []
        predict_files(self.predict_batch, nets, inputs, out, write, batch_size=1)
        out = Path(out)
        (out / "translations.json").write_text(json.dumps(rows, indent=1))
        if detector is not None:
            for tag, listed in results.items():
                (out / f"detections_{tag}.json").write_text(json.dumps(listed, indent=1))


# ---------------------------------------------------------------- evaluation


@dataclass
class _Tally:
    """Running sums of one evaluation."""

    detections: dict[str, list[Detections]] = field(default_factory=lambda: {"translated": [], "raw": [], "clean": []})
    targets: list[dict[str, Tensor]] = field(default_factory=list)
    quality: dict[str, list[float]] = field(default_factory=lambda: {"PSNR": [], "SSIM": [], "PSNR_input": [],
                                                                     "SSIM_input": []})


def _eval_items(config: TranslationConfig, folders: Mapping[str, str],
                test_split: DetectionSplit | None) -> Iterator[tuple[str, Tensor, dict | None]]:
    """(annotated file name, uint8 image, target or None) of the target test split, up to ``data.max_eval_images``."""
    if test_split is not None:
        for i in range(len(test_split)):
            item = test_split[i]
            yield str(item["file_name"]), item["image"].as_subclass(Tensor), eval_target(item)
        return
    data = config.data
    root = Path(folders["target_test"])
    for path in list_images(root, suffix=data.target_suffix)[: data.max_eval_images or None]:
        name = str(path.relative_to(root))
        if data.annotated_suffix:  # the clean twin's name
            name = name[: len(name) - len(data.target_suffix)] + data.annotated_suffix
        yield name, to_image(load_rgb(path)).as_subclass(Tensor), None


def evaluate_translator(translate: Any, *, config: TranslationConfig, folders: Mapping[str, str],
                        detector: nn.Module | None, class_names: Sequence[str], out_dir: Path,
                        test_split: DetectionSplit | None = None) -> EvalResult:
    """Translate the target test split and score it (module docstring). ``test_split``: its boxes with the
    detector's labels (:func:`target_test_split`); None = unlabelled images (image quality only)."""
    clean_dir = Path(folders["target_test_clean"]) if folders["target_test_clean"] else None
    if detector is None and clean_dir is None:
        raise UserError("nothing to evaluate: set `detector` (a detector run) or data.target_test_clean (clean twins)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tally = _Tally()
    names: list[str] = []
    keeper = SampleKeeper([], num_fixed=0, num_worst=config.data.num_worst_samples)
    per_image: list[tuple[str, float]] = []
    for n, (name, image, target) in enumerate(_eval_items(config, folders, test_split)):
        names.append(name)
        x = _to_unit_range(_resize_short(image, config.data.eval_size))[None]  # (1, 3, h, w)
        translated = _to_uint8(translate(x))[0]  # (3, h, w) uint8
        if translated.shape[-2:] != image.shape[-2:]:
            translated = TF.resize(translated, list(image.shape[-2:]), antialias=True)
        clean = None
        if clean_dir is not None:
            clean = to_image(load_rgb(clean_dir / name)).as_subclass(Tensor)
            if clean.shape != image.shape:
                raise DataError(f"{clean_dir / name}: clean twin of {tuple(clean.shape[-2:])} px, its target image "
                                f"has {tuple(image.shape[-2:])}")
            t_hwc, c_hwc = translated.permute(1, 2, 0).numpy(), clean.permute(1, 2, 0).numpy()
            x_hwc = image.permute(1, 2, 0).numpy()
            tally.quality["PSNR"].append(psnr(t_hwc, c_hwc))
            tally.quality["SSIM"].append(ssim(t_hwc, c_hwc))
            tally.quality["PSNR_input"].append(psnr(x_hwc, c_hwc))
            tally.quality["SSIM_input"].append(ssim(x_hwc, c_hwc))
        dets: dict[str, Detections] = {}
        if detector is not None and target is not None:
            batch = {"translated": translated, "raw": image} | ({"clean": clean} if clean is not None else {})
            found = detect(detector, [v.float() / 255 for v in batch.values()], class_names)
            dets = dict(zip(batch, found))
            for key, d in dets.items():
                tally.detections[key].append(d)
            tally.targets.append(target)
        if clean is not None:
            score = tally.quality["SSIM"][-1]
        elif "translated" in dets and target is not None:
            score = image_recall(dets["translated"], target)
        else:
            score = 1.0
        image_id = str(Path(name).with_suffix(""))
        per_image.append((image_id, score))
        payload = (image, translated, clean, target, dets)
        if n < config.data.num_fixed_samples:
            _save_translation_sample(out_dir, image_id, payload, class_names)
        else:
            keeper.offer(image_id, score, payload)
    if not names:
        raise DataError(f"{folders['target_test']}: no test images")
    for image_id, payload in keeper.chosen():
        _save_translation_sample(out_dir, image_id, payload, class_names)
    write_per_image(out_dir, per_image)
    return _metrics(tally, class_names, config.use_07_metric, out_dir)


def _resize_short(image: Tensor, size: int) -> Tensor:
    return TF.resize(image, [size], antialias=True) if size else image


def _metrics(tally: _Tally, class_names: Sequence[str], use_07: bool, out_dir: Path) -> EvalResult:
    metrics: dict[str, float] = {}
    per_class: dict[str, dict[str, float | None]] = {}
    if tally.targets:
        for key, metric in (("translated", "mAP"), ("raw", "mAP_source_only"), ("clean", "mAP_oracle")):
            if len(tally.detections[key]) != len(tally.targets):
                continue
            scored = score_detections(tally.detections[key], tally.targets, class_names, use_07_metric=use_07)
            metrics[metric] = float(scored["mAP"])
            per_class["AP" if key == "translated" else f"AP_{key}"] = dict(scored["AP"])
        metrics.update(ap_metrics(per_class.get("AP", {})))
        metrics["use_07_metric"] = float(use_07)
    for key, values in tally.quality.items():
        if values:
            finite = [v for v in values if np.isfinite(v)]
            metrics[key] = float(np.mean(finite)) if finite else float("inf")
    with open(out_dir / "metrics_by_input.csv", "w", newline="") as handle:  # the comparison in one small table
        writer = csv.writer(handle)
        writer.writerow(["input", "mAP", "PSNR", "SSIM"])
        writer.writerow(["translated", metrics.get("mAP", ""), metrics.get("PSNR", ""), metrics.get("SSIM", "")])
        writer.writerow(["raw target (source-only)", metrics.get("mAP_source_only", ""), metrics.get("PSNR_input", ""),
                         metrics.get("SSIM_input", "")])
        if "mAP_oracle" in metrics:
            writer.writerow(["clean twin (oracle)", metrics["mAP_oracle"], "", ""])
    monitor = "mAP" if "mAP" in metrics else "SSIM"
    return EvalResult(metrics=metrics, per_class=per_class, monitor=monitor)


def _save_translation_sample(out_dir: Path, name: str, payload: tuple, class_names: Sequence[str]) -> None:
    """A "translation" sample: the target image, its translation and clean twin, GT boxes and each one's detections
    (boxes as inclusive xyxy pixels, like the other panels)."""
    image, translated, clean, target, dets = payload
    arrays: dict[str, Any] = {"translated": translated.permute(1, 2, 0).numpy()}
    if clean is not None:
        arrays["clean"] = clean.permute(1, 2, 0).numpy()
    if target is not None:
        arrays["gt_boxes"] = to_inclusive(target["boxes"]).astype(np.float32)
        arrays["gt_labels"] = target["labels"].numpy()
    for key, d in dets.items():
        arrays[f"{key}_boxes"] = to_inclusive(d.boxes).astype(np.float32)
        arrays[f"{key}_scores"] = d.scores.numpy()
        arrays[f"{key}_labels"] = d.labels.numpy()
    if class_names:
        arrays["class_names"] = np.asarray(list(class_names))
    save_sample(out_dir, name, "translation", image.permute(1, 2, 0).numpy(), **arrays)
