"""The method contract, over every entry of ``METHODS`` and every one of its real config files.

For each (method, config): the config is pointed at a tiny dataset written in the layout it reads, shrunk to a
few pixels and one step (the networks stay the configured ones, without downloaded weights), then

* one training step through the engine: every parameter an optimizer holds receives a gradient, a frozen
  network's weights do not change, the checkpoint holds exactly ``networks()`` (no frozen network);
* the engine's evaluation: metrics with a finite monitor value;
* ``predict_batch`` of the reloaded run on two images of different sizes: one typed prediction each, at the
  image's size.

A new method joins by having configs under ``configs/<method>/`` and a data preparer in :data:`PREPARERS`;
until then this test fails for it.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from lowlabel.engine import fit, load_method_from_run
from lowlabel.engine.checkpoint import load_checkpoint
from lowlabel.engine.config import config_to_dict, load_config_file
from lowlabel.methods import METHODS, method_module
from lowlabel.models.weights import CHECKPOINT_FORMAT
from lowlabel.structures import Classification, Detections, Image, Localization, Segmentation
from tests.methods.cross_domain.detection_fake import rebase
from tests.methods.wsol.wsol_fake import write_wsol
from tests.methods.wsss.wsss_configs import fake_root_for

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CASES = [(name, path.stem) for name in METHODS for path in sorted((CONFIGS / name).glob("*.yaml"))]
TRAINER = {"max_steps": 1, "batch_size": 2, "accumulate": 1, "eval_every": 0, "num_workers": 0, "devices": 1,
           "accelerator": "cpu", "strategy": "auto", "num_nodes": 1, "precision": "32-true", "log_every": 1}


def prepare_wsol(cfg: Any, tmp: Path) -> Any:
    """A wsolevaluation-layout dataset (boxes on val/test, masks where the config scores PxAP)."""
    layout = cfg.data.dataset if cfg.data.dataset in ("CUB", "ILSVRC", "OpenImages") else "CUB"
    data_root, meta = write_wsol(tmp, layout, size=40)
    mask_root = str(data_root) if layout == "OpenImages" else ""
    cfg.data = dataclasses.replace(cfg.data, root="", data_root=str(data_root), metadata_root=str(meta),
                                   mask_root=mask_root, resize_size=72, crop_size=64)
    cfg.model = dataclasses.replace(cfg.model, pretrained="")
    cfg.eval = dataclasses.replace(cfg.eval, cam_curve_interval=0.1)
    return cfg


def prepare_wsss(cfg: Any, tmp: Path) -> Any:
    """A VOC-layout dataset (or COCO converted to it, with an 80-class label file) as the config names."""
    root, label_list = fake_root_for(cfg.data, tmp)
    cfg.data = dataclasses.replace(cfg.data, root=str(root), label_list=label_list, crop=32, long_side=(32, 48))
    cfg.infer = dataclasses.replace(cfg.infer, scales=tuple(cfg.infer.scales[:2]), rw_log2_steps=2)
    cfg.model = dataclasses.replace(cfg.model, pretrained="")
    return cfg


def prepare_seg(cfg: Any, tmp: Path) -> Any:
    """The VOC-layout dataset and a seed-stage run holding pseudo masks of the training split (``init_from``)."""
    root, label_list = fake_root_for(cfg.data, tmp)
    cfg.data = dataclasses.replace(cfg.data, root=str(root), label_list=label_list, crop=32, long_side=(32, 48))
    run = tmp / "sipe-run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "method": "sipe", "config": {}, "nets": {}},
               run / "checkpoints" / "last.ckpt")
    pseudo = run / "eval" / cfg.data.train_split / "pseudo"
    pseudo.mkdir(parents=True)
    masks = sorted((root / "SegmentationClass").glob("*.png"))
    for image_id in (root / "ImageSets" / "Segmentation" / f"{cfg.data.train_split}.txt").read_text().split():
        own = root / "SegmentationClass" / f"{image_id}.png"
        shutil.copy(own if own.is_file() else masks[0], pseudo / f"{image_id}.png")
    cfg.init_from, cfg.pseudo_dir = str(run), ""
    cfg.model = dataclasses.replace(cfg.model, pretrained_backbone="")
    return cfg


def prepare_classify(cfg: Any, tmp: Path) -> Any:
    """An ImageNet-layout folder: three classes of noise images, two per class and split."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (tmp / "inet" / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8, generator=gen).numpy()
                Image.fromarray(pixels).save(tmp / "inet" / split / name / f"{i}.jpg")
    # torchvision ResNets end at stride 32: 64 px keeps BatchNorm's last maps at 2 x 2 (1 x 1 with a batch of 2
    # normalises two values and one SGD step can overflow)
    crop = 16 if cfg.model.backbone == "resnet_small" else 64
    cfg.data = dataclasses.replace(cfg.data, root=str(tmp / "inet"), crop=crop)
    cfg.model = dataclasses.replace(cfg.model, pretrained="")
    return cfg


def prepare_open_vocab(cfg: Any, tmp: Path) -> Any:
    """A COCO-layout folder with captions and a base/novel split (three colour categories, one novel)."""
    from lowlabel.models.clip import expand_templates
    from tests.methods.open_vocab.coco_fake import write_coco

    cfg.data = dataclasses.replace(cfg.data, root=str(write_coco(tmp / "coco")), names={})
    cfg.model = dataclasses.replace(cfg.model, pretrained="")
    # two prompt templates: openai-imagenet's 80 would run RN50's text tower 240 times per evaluation
    cfg.eval = dataclasses.replace(cfg.eval, templates=expand_templates(cfg.eval.templates)[:2])
    return cfg


def prepare_regionclip(cfg: Any, tmp: Path) -> Any:
    """The fake COCO (three colour categories, one novel) for evaluation and, for a config with ``train_images``, its
    train split again in img2dataset's files layout; a random teacher of the configured arch (a ``clip`` run of
    ``tiny`` when the config takes the arch from the run, else a bare state dict as a published file is); a tiny
    class-agnostic RPN run; the concept vocabulary (and embedding) files a config names."""
    import json

    from lowlabel.methods.cross_domain import detector
    from lowlabel.models.clip import build_clip, expand_templates
    from tests.methods.open_vocab.coco_fake import write_coco
    from tests.methods.open_vocab.test_regionclip import write_clip_run

    coco = write_coco(tmp / "coco")
    data = dataclasses.replace(cfg.data, root=str(coco), images="{split}2017", names={}, image_size=64,
                               instances="annotations/instances_{split}.json", ovd_split="annotations/ovd_split.json",
                               captions="annotations/captions_{split}.json")
    if data.train_images:
        captions = json.loads((coco / "annotations" / "captions_train.json").read_text())
        files = {img["id"]: img["file_name"] for img in captions["images"]}
        shard = tmp / "cc3m" / "00000"
        shard.mkdir(parents=True)
        for ann in captions["annotations"]:
            if not (shard / f"{ann['image_id']:09d}.txt").exists():  # one caption per key, as img2dataset writes
                shutil.copy(coco / "train2017" / files[ann["image_id"]], shard / f"{ann['image_id']:09d}.png")
                (shard / f"{ann['image_id']:09d}.txt").write_text(ann["caption"])
        data = dataclasses.replace(data, train_images=str(tmp / "cc3m"))
    cfg.data = data
    if cfg.model.arch:
        teacher = build_clip(arch=cfg.model.arch, image_size=cfg.model.image_size)
        torch.save(teacher.state_dict(), tmp / "clip.pt")
        cfg.init_from = str(tmp / "clip.pt")
    else:
        cfg.init_from = str(write_clip_run(tmp / "clip-run", "tiny", image_size=96))
        teacher = build_clip(arch="tiny")
    if cfg.concepts.vocabulary not in ("categories", "shapesworld"):
        (tmp / "nouns.txt").write_text("red\ngreen\nblue\nzebra\n")
        emb = str(tmp / "nouns_emb.pth") if cfg.concepts.embeddings else ""
        if emb:
            torch.save(torch.randn(4, teacher.text_projection.shape[1]), emb)
        cfg.concepts = dataclasses.replace(cfg.concepts, vocabulary=str(tmp / "nouns.txt"), embeddings=emb)
    else:  # the fake captions name colours, not ShapesWorld's categories
        cfg.concepts = dataclasses.replace(cfg.concepts, vocabulary="categories")
    # two prompt templates each: openai-imagenet's 80 would run the text tower 80 times per concept
    cfg.concepts = dataclasses.replace(cfg.concepts, templates=expand_templates(cfg.concepts.templates)[:2])
    cfg.eval = dataclasses.replace(cfg.eval, templates=expand_templates(cfg.eval.templates)[:2])
    det_cfg = load_config_file(detector.CONFIG, CONFIGS / "detector" / "coco-rpn-synth-quick.yaml")
    det_cfg.data = dataclasses.replace(det_cfg.data, root=str(coco))
    det_cfg.model = _small_detector(det_cfg.model, backbone="resnet_small")
    rpn = detector.build(det_cfg)
    run = tmp / "rpn-run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "method": "detector", "config": config_to_dict(rpn.config),
                "nets": {"detector": rpn.model.state_dict()}}, run / "checkpoints" / "last.ckpt")
    cfg.proposals = dataclasses.replace(cfg.proposals, source=str(run), post_nms_top_n=20, num_sampled=8)
    return cfg


def prepare_ovd(cfg: Any, tmp: Path) -> Any:
    """The layout the config reads, written small: the fake colour COCO for ShapesWorld roots, COCO 2017 with the
    shipped 48/17 split's categories for coco-ovd, LVIS v1 (frequencies, coco_url) for lvis; a random CLIP run of a
    small arch (init_from) and a tiny class-agnostic RPN run (proposals.source)."""
    from lowlabel.models.clip import expand_templates
    from tests.methods.open_vocab.coco_fake import write_coco
    from tests.methods.open_vocab.ovd_fake import coco_ovd_categories, lvis_categories, write_layout, write_rpn_run
    from tests.methods.open_vocab.test_regionclip import write_clip_run
    from tests.models.test_clip import small_arch

    data = cfg.data
    if data.root.startswith("synth:"):
        root = write_coco(tmp / "coco")
        data = dataclasses.replace(data, names={})
    else:
        lvis = bool(data.novel_frequencies)
        cats, novel = lvis_categories() if lvis else coco_ovd_categories()
        root = write_layout(tmp / "data", images=data.images, instances=data.instances, categories=cats, novel=novel,
                            lvis=lvis)
        if data.ovd_split:  # the shipped split file, as the config names it relative to the repository
            data = dataclasses.replace(data, ovd_split=str(CONFIGS.parent / data.ovd_split))
    cfg.data = dataclasses.replace(data, root=str(root), image_size=64)
    cfg.init_from = str(write_clip_run(tmp / "clip-run", small_arch(tmp / "small.json")))
    cfg.proposals = dataclasses.replace(cfg.proposals, source=str(write_rpn_run(tmp / "rpn-run", root)),
                                        post_nms_top_n=20)
    cfg.roi = dataclasses.replace(cfg.roi, batch_size_per_image=16)
    # two prompt templates: openai-imagenet's 80 would run the text tower 80 times per class (65 for coco-ovd)
    cfg.text = dataclasses.replace(cfg.text, templates=expand_templates(cfg.text.templates)[:2])
    return cfg


def prepare_video(cfg: Any, tmp: Path) -> Any:
    """A DAVIS-layout folder (two 5-frame sequences) whose clips/ holds them again as unlabeled frame folders."""
    from tests.methods.correspondence.test_common import write_davis

    root = write_davis(tmp / "davis")
    for seq in ("a", "b"):
        shutil.copytree(root / "JPEGImages" / "480p" / seq, root / "clips" / seq)
    cfg.data = dataclasses.replace(cfg.data, root=str(root), clips="", crop=16, eval_sequences=1, eval_short_side=0)
    if hasattr(cfg.data, "full"):  # contrastcorr: 24-pixel frames, a colour-autoencoder run to start from
        from lowlabel.models.correspondence_nets import ColourAutoencoder

        cfg.data = dataclasses.replace(cfg.data, full=24, max_gap=2)
        cfg.contrastcorr = dataclasses.replace(cfg.contrastcorr, warmup_steps=0, conc_window=2, conc_start=0)
        ae = tmp / "ae-run"
        (ae / "checkpoints").mkdir(parents=True)
        torch.save({"format": CHECKPOINT_FORMAT, "method": "contrastcorr_ae", "config": {},
                    "nets": {"model": ColourAutoencoder(channels=8).state_dict()}}, ae / "checkpoints" / "last.ckpt")
        cfg.init_from = str(ae)
    return cfg


def _small_detector(model: Any, *, backbone: str | None = None) -> Any:
    """The detector settings with few proposals and RoIs, images at their own (tiny) size, no downloaded weights."""
    rpn = dataclasses.replace(model.rpn, pre_nms_top_n_train=200, post_nms_top_n_train=32, pre_nms_top_n_test=100,
                              post_nms_top_n_test=16, batch_size_per_image=32)
    roi = dataclasses.replace(model.roi, pool_size=4, batch_size_per_image=16)
    small = dataclasses.replace(model, pretrained="", min_size=0, max_size=0, rpn=rpn, roi=roi)
    return dataclasses.replace(small, backbone=backbone, width=4) if backbone else small


def detector_run_for(cfg: Any, tmp: Path, data: Path, domains: Path) -> Path:
    """A tiny frozen detector for a translator config, in the engine's checkpoint format: the classes of the
    configs/detector file its ``detector`` run comes from (``runs/detector/<name>``: ``<name>.yaml`` or
    ``synth-<name>.yaml``), a small network."""
    from lowlabel.methods.cross_domain import detector

    name = Path(cfg.detector).name
    found = [p for p in (CONFIGS / "detector" / f"{name}.yaml", CONFIGS / "detector" / f"synth-{name}.yaml")
             if p.is_file()]
    assert found, f"{cfg.detector}: no configs/detector/{name}.yaml or synth-{name}.yaml trains this detector run"
    det_cfg = load_config_file(detector.CONFIG, found[0])
    det_cfg.data = rebase(det_cfg.data, data, domains)
    det_cfg.model = _small_detector(det_cfg.model, backbone="resnet_small")
    method = detector.build(det_cfg)  # fills data.classes from the train split when the config leaves them empty
    run = tmp / "detector-run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": 1, "method": "detector", "config": config_to_dict(method.config),
            "nets": {"detector": method.model.state_dict()}}
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    return run


def prepare_cross_domain(cfg: Any, tmp: Path) -> Any:
    """Cross-domain detection: a fake ShapesWorld ``domains/`` for ``synth:`` roots, and Cityscapes + Foggy
    Cityscapes, Sim10k and KITTI in their real layouts for the ``data/...`` paths of the real configs
    (tests/methods/cross_domain/detection_fake.py); translators get a tiny detector run (:func:`detector_run_for`)."""
    from tests.methods.cross_domain.detection_fake import write_real_layouts, write_shapes_domains

    domains = write_shapes_domains(tmp / "domains", classes=("car", "person"))
    data = write_real_layouts(tmp / "data")
    if getattr(cfg.data, "root_kind", "domains") == "coco":  # the proposal networks on ShapesWorld coco/
        domains = data / "coco"
    cfg.data = rebase(cfg.data, data, domains)
    if hasattr(cfg.model, "rpn"):  # the detector itself
        cfg.model = _small_detector(cfg.model)
        return cfg
    cfg.data = dataclasses.replace(cfg.data, load_size=0, crop=32 if cfg.data.crop else 0, eval_size=0)
    cfg.nce = dataclasses.replace(cfg.nce, num_patches=16)
    if hasattr(cfg, "lg"):
        cfg.lg = dataclasses.replace(cfg.lg, queue_size=16)
    cfg.detector = str(detector_run_for(cfg, tmp, data, domains))
    return cfg


PREPARERS: dict[str, Callable[[Any, Path], Any]] = {
    "lowlabel.methods.cross_domain.": prepare_cross_domain,
    "lowlabel.methods.correspondence.": prepare_video,
    "lowlabel.methods.classification.": prepare_classify,
    "lowlabel.methods.wsol.": prepare_wsol,
    "lowlabel.methods.wsss.seg": prepare_seg,
    "lowlabel.methods.wsss.": prepare_wsss,
    "lowlabel.methods.open_vocab.regionclip": prepare_regionclip,
    "lowlabel.methods.open_vocab.ovd": prepare_ovd,
    "lowlabel.methods.open_vocab.": prepare_open_vocab,
}


def preparer(name: str) -> Callable[[Any, Path], Any]:
    module = METHODS[name]
    found = next((fn for prefix, fn in PREPARERS.items() if module.startswith(prefix)), None)
    if found is None:
        pytest.fail(f"no tiny dataset for method {name!r} ({module}): add a preparer to PREPARERS")
    return found


def frozen_modules(method: Any) -> dict[str, torch.nn.Module]:
    frozen = getattr(method, "frozen_networks", None)
    return {name: f.module for name, f in (frozen() if frozen else {}).items()}


def spy_on_gradients(method: Any) -> tuple[set[int], dict[int, str]]:
    """Wrap ``method.optimizers`` so that every parameter it hands out records when it receives a gradient."""
    got: set[int] = set()
    names: dict[int, str] = {}
    build = method.optimizers

    def optimizers(nets: Mapping[str, torch.nn.Module]) -> dict[str, torch.optim.Optimizer]:
        opts = build(nets)
        where = {id(p): f"{net}.{key}" for net, module in nets.items() for key, p in module.named_parameters()}
        for opt in opts.values():
            for group in opt.param_groups:
                for p in group["params"]:
                    names[id(p)] = where.get(id(p), "?")
                    p.register_post_accumulate_grad_hook(lambda q: got.add(id(q)))
        return opts

    method.optimizers = optimizers
    return got, names


def images() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=gen),
            torch.randint(0, 256, (3, 36, 36), dtype=torch.uint8, generator=gen)]


def check_prediction(prediction: Any, image: torch.Tensor) -> None:
    h, w = image.shape[1:]
    if isinstance(prediction, Localization):
        assert prediction.heatmap.shape == (h, w) and float(prediction.heatmap.min()) >= 0
        assert prediction.boxes.ndim == 2 and prediction.boxes.shape[1] == 4 and 0 <= prediction.score <= 1
    elif isinstance(prediction, Segmentation):
        assert prediction.mask.shape == (h, w) and prediction.mask.dtype == torch.uint8
    elif isinstance(prediction, Image):
        assert prediction.image.shape == (3, h, w) and prediction.image.dtype == torch.uint8
    elif isinstance(prediction, Detections):
        n = len(prediction.scores)
        assert prediction.boxes.shape == (n, 4) and prediction.labels.shape == (n,)
        assert bool((prediction.scores[:-1] >= prediction.scores[1:]).all())
        if n:
            boxes, labels = prediction.boxes, prediction.labels
            assert float(boxes[:, :2].min()) >= 0 and float(boxes[:, 2].max()) <= w and float(boxes[:, 3].max()) <= h
            assert bool((boxes[:, 2:] >= boxes[:, :2]).all())
            assert int(labels.min()) >= 0 and int(labels.max()) < len(prediction.class_names)
    elif isinstance(prediction, Classification):
        assert prediction.probs.ndim == 1 and 0 <= prediction.label < len(prediction.probs)
        assert abs(float(prediction.probs.sum()) - 1) < 1e-5 and prediction.score == float(prediction.probs.max())
    else:
        pytest.fail(f"predict_batch returned {type(prediction).__name__}, not a lowlabel.structures type")


@pytest.mark.parametrize(("name", "config"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_method_contract(name: str, config: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = method_module(name)
    cfg = load_config_file(module.CONFIG, CONFIGS / name / f"{config}.yaml")
    cfg = preparer(name)(cfg, tmp_path)
    cfg.trainer = dataclasses.replace(cfg.trainer, **TRAINER)
    method = module.build(cfg)
    got, names = spy_on_gradients(method)
    frozen = frozen_modules(method)
    frozen_before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in frozen.items()}

    result = fit(method, run_dir=tmp_path / "run", progress=False)

    missing = sorted(names[i] for i in names if i not in got)
    assert names and not missing, f"optimised parameters without a gradient: {missing[:5]}"
    for net, state in frozen_before.items():
        after = frozen[net].state_dict()
        assert all(torch.equal(state[k], after[k].cpu()) for k in state), f"frozen network {net!r} changed"
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert set(ckpt["nets"]) == set(method.networks()) and not set(ckpt["nets"]) & set(frozen)
    assert result.metrics and result.monitor in result.metrics and math.isfinite(result.metrics[result.monitor])

    loaded = load_method_from_run(tmp_path / "run", method_name=name)
    batch = images()
    nets = {**loaded.nets, **frozen_modules(loaded.method)}
    with torch.no_grad():
        predictions = loaded.method.predict_batch(nets, batch)
    assert len(predictions) == len(batch)
    for prediction, image in zip(predictions, batch):
        check_prediction(prediction, image)


def test_every_method_has_configs() -> None:
    assert {name for name, _ in CASES} == set(METHODS)
