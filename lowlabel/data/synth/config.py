"""Generator parameters of ShapesWorld: one dataclass per difficulty axis and per task, and the presets.

Every difficulty of DESIGN.md section 2 is a field here, so it can be turned up or down:
partial activation (:class:`ObjectStyle`), context bias and clutter (:class:`SceneStyle`), objects per
image, captions (:class:`COCOConfig`), video dynamics (:class:`DAVISConfig`) and domain shift
(:class:`DomainsConfig`). The defaults are the calibrated ones (``benchmarks/README.md``, ShapesWorld); ``wsol/``
has its own calibrated object and scene styles (:class:`WSOLConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ObjectStyle:
    """How class evidence is spread over an object (partial activation).

    Attributes:
        marking_frac: share of the body area covered by the class-specific marking (the "head").
        marking_dropout: probability that the marking is hidden (turned away), so only body evidence is left.
        marking_strength: (min, max) opacity of the marking over the body texture.
        shape_bias: probability that the body has its category's preferred shape (weak evidence).
        hue_bias: probability that the body has its category's preferred hue (weak evidence).
        hue_jitter: std of the body hue around the preferred hue.
    """

    marking_frac: float = 0.2
    marking_dropout: float = 0.1
    marking_strength: tuple[float, float] = (0.6, 1.0)
    shape_bias: float = 0.7
    hue_bias: float = 0.7
    hue_jitter: float = 0.05

    def __post_init__(self) -> None:
        if not 0.02 <= self.marking_frac <= 0.9:
            raise ValueError(f"marking_frac must be in [0.02, 0.9], got {self.marking_frac}")
        for name in ("marking_dropout", "shape_bias", "hue_bias"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")


@dataclass(frozen=True)
class SceneStyle:
    """Background, clutter and photometric nuisances.

    Attributes:
        image_size: (min, max) side length in pixels; height and width are drawn independently.
        object_scale: (min, max) object extent as a fraction of the shorter image side (3x range by default).
        context_prob: probability that the background is the (first) object's class habitat (context bias).
        distractors: (min, max) number of unmarked distractor shapes.
        occlusion_prob: probability that a distractor is drawn in front of the objects.
        max_rotation: maximum absolute object rotation in degrees.
        color_jitter: maximum relative change of brightness and of contrast.
        noise_std: std of additive Gaussian pixel noise (0..1 scale).
    """

    image_size: tuple[int, int] = (96, 128)
    object_scale: tuple[float, float] = (0.32, 0.96)
    context_prob: float = 0.3
    distractors: tuple[int, int] = (0, 2)
    occlusion_prob: float = 0.3
    max_rotation: float = 180.0
    color_jitter: float = 0.15
    noise_std: float = 0.03


def _calibrated_obj() -> ObjectStyle:
    """Object style of ``wsol/`` (v1.3): strong body evidence, an opaque marking."""
    return ObjectStyle(shape_bias=0.85, hue_bias=0.85, marking_strength=(0.85, 1.0))


def _voc_obj() -> ObjectStyle:
    """Object style of ``voc/`` (v1.5): the opaque marking of ``wsol/``, always visible, on the shared (weaker) body
    evidence."""
    return ObjectStyle(shape_bias=0.7, hue_bias=0.7, marking_strength=(0.85, 1.0), marking_dropout=0.0)


def _wsol_scene() -> SceneStyle:
    return SceneStyle(object_scale=(0.55, 1.2), context_prob=0.1, distractors=(0, 1))


@dataclass(frozen=True)
class WSOLConfig:
    """``wsol/``: one object per image, image-level label, boxes for val/test, masks for PxAP.

    Its object and scene styles are calibrated for plain CAM on ``full`` (v1.3, ``benchmarks/README.md``):
    larger objects (CUB-like), less context bias and clutter, stronger body evidence and a more opaque marking
    than the shared defaults.
    """

    num_train: int = 4000
    num_val: int = 500
    num_test: int = 1000
    num_classes: int = 10
    obj: ObjectStyle = field(default_factory=_calibrated_obj)
    scene: SceneStyle = field(default_factory=_wsol_scene)


def _voc_scene() -> SceneStyle:
    return SceneStyle(object_scale=(0.5, 0.95), image_size=(112, 160), context_prob=0.1, distractors=(0, 1))


@dataclass(frozen=True)
class VOCConfig:
    """``voc/``: several objects per image; segmentation PNGs for ``train``/``val``, XML for all.

    Calibrated for plain multi-label CAM on ``full`` (v1.5, ``benchmarks/README.md``): ``wsol/``'s opaque marking,
    never hidden, on the shared body evidence, and larger objects with less context bias and clutter than the shared
    defaults.
    """

    num_train: int = 1000  # with SegmentationClass PNGs (VOC train: seeds are scored here)
    num_aug_extra: int = 2000  # ids only in train_aug (no PNG), like SBD
    num_val: int = 500
    num_classes: int = 20
    objects: tuple[int, int] = (1, 3)
    boundary_px: int = 1  # half-width of the 255 band around object borders
    obj: ObjectStyle = field(default_factory=_voc_obj)
    scene: SceneStyle = field(default_factory=_voc_scene)


@dataclass(frozen=True)
class DAVISConfig:
    """``davis/``: labelled sequences (DAVIS-2017 layout) and unlabeled ``.mp4`` clips."""

    num_train_seqs: int = 30
    num_val_seqs: int = 20
    num_frames: int = 24
    num_clips: int = 200
    clip_frames: int = 24
    size: tuple[int, int] = (96, 128)  # (H, W) of frames; the folder is still called 480p
    objects: tuple[int, int] = (1, 3)
    max_speed: float = 2.5  # px per frame
    max_spin: float = 4.0  # degrees per frame
    scale_drift: float = 0.01  # relative size change per frame
    deform_amp: float = 0.12  # amplitude of the shape wobble
    illum_amp: float = 0.25  # relative brightness swing over a sequence
    pan_speed: float = 1.5  # camera pan, px per frame
    fps: int = 10


@dataclass(frozen=True)
class COCOConfig:
    """``coco/``: instances + captions + an open-vocabulary split (novel boxes hidden in train).

    v1.6 enlarged ``full`` from 3,000 / 500 images and 16 categories (4 novel) after the CLIP teacher study
    (``benchmarks/results/clip-teacher.json``): the teacher's novel-class crop accuracy spread 26.8 +- 5.0 over
    seeds. Now every category of the table (20, each with its own marking, names and synonyms), a quarter of them
    novel as in the OVR-CNN split (17 of 65), and twice the images.
    """

    num_train: int = 6000
    num_val: int = 1000
    num_classes: int = 20  # the whole category table (classes.VOC_NAMES)
    num_novel: int = 5  # the last ``num_novel`` categories are novel
    objects: tuple[int, int] = (1, 4)
    captions_per_image: int = 3
    omit_prob: float = 0.25  # probability that a caption leaves out an object (incomplete captions)
    synonym_prob: float = 0.5  # probability of naming an object by a synonym
    attribute_prob: float = 0.6  # probability of adding a colour/size attribute
    obj: ObjectStyle = field(default_factory=ObjectStyle)
    scene: SceneStyle = field(default_factory=lambda: SceneStyle(object_scale=(0.25, 0.6), image_size=(128, 160)))

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= 20 or not 0 <= self.num_novel < self.num_classes:
            raise ValueError(
                f"coco: need 1 <= num_classes <= 20 (the category table) and 0 <= num_novel < num_classes, got "
                f"{self.num_classes} and {self.num_novel}"
            )


@dataclass(frozen=True)
class DomainsConfig:
    """``domains/``: street-like scenes, clear (source, A) and foggy (target, B)."""

    num_train_a: int = 2000
    num_train_b: int = 2000
    num_test_a: int = 300
    num_test_b: int = 500
    size: tuple[int, int] = (96, 160)  # (H, W)
    classes: tuple[str, ...] = ("car", "person", "bicycle", "bus")
    objects: tuple[int, int] = (2, 6)
    # calibrated (v1.3) so that a source-only detector loses about half its mAP, as on Cityscapes -> Foggy
    fog_density: tuple[float, float] = (0.3, 1.0)  # beta of t = exp(-beta * depth), depth in [0, 1]
    contrast: tuple[float, float] = (0.8, 0.95)  # target contrast factor
    noise_std: float = 0.02  # target pixel noise


@dataclass(frozen=True)
class PretrainConfig:
    """``pretrain/``: the ImageNet stand-in, single-object classification in the ImageNet folder layout.

    A category is a whole-object combination of outline family x body texture x colour range
    (:mod:`lowlabel.data.synth.pretrain_task`); nothing small or local tells categories apart, and no
    category has a marking.

    Attributes:
        train_per_class / val_per_class: images per category and split.
        image_size: (min, max) side length in pixels; height and width are drawn independently.
        object_scale: (min, max) object extent as a fraction of the shorter side.
        distractors: (min, max) unlabelled clutter shapes (smaller than the object, no category texture).
        occlusion_prob: probability that a distractor is drawn in front of the object.
        deform: maximum amplitude of the random outline deformation.
    """

    train_per_class: int = 200
    val_per_class: int = 50
    image_size: tuple[int, int] = (72, 88)
    object_scale: tuple[float, float] = (0.45, 0.95)
    distractors: tuple[int, int] = (0, 2)
    occlusion_prob: float = 0.25
    deform: float = 0.12


@dataclass(frozen=True)
class Preset:
    """All task configs of one preset."""

    wsol: WSOLConfig = field(default_factory=WSOLConfig)
    voc: VOCConfig = field(default_factory=VOCConfig)
    davis: DAVISConfig = field(default_factory=DAVISConfig)
    coco: COCOConfig = field(default_factory=COCOConfig)
    domains: DomainsConfig = field(default_factory=DomainsConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def _quick() -> Preset:
    return Preset(
        wsol=WSOLConfig(num_train=160, num_val=40, num_test=60),
        voc=VOCConfig(num_train=80, num_aug_extra=60, num_val=40),
        davis=DAVISConfig(num_train_seqs=3, num_val_seqs=3, num_frames=10, num_clips=6, clip_frames=12),
        coco=COCOConfig(num_train=120, num_val=40),
        domains=DomainsConfig(num_train_a=80, num_train_b=80, num_test_a=20, num_test_b=40),
        pretrain=PretrainConfig(train_per_class=8, val_per_class=2),
    )


def _tiny() -> Preset:
    return Preset(
        wsol=WSOLConfig(num_train=20, num_val=10, num_test=10),
        voc=VOCConfig(num_train=12, num_aug_extra=8, num_val=10),
        davis=DAVISConfig(num_train_seqs=2, num_val_seqs=2, num_frames=6, num_clips=2, clip_frames=8),
        coco=COCOConfig(num_train=16, num_val=10),
        domains=DomainsConfig(num_train_a=10, num_train_b=10, num_test_a=6, num_test_b=8),
        pretrain=PretrainConfig(train_per_class=2, val_per_class=1),
    )


PRESETS: dict[str, Preset] = {"full": Preset(), "quick": _quick(), "tiny": _tiny()}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``tiny`` exists for tests)."""
    if name not in PRESETS:
        raise ValueError(f"unknown ShapesWorld preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


__all__ = [
    "COCOConfig",
    "DAVISConfig",
    "DomainsConfig",
    "ObjectStyle",
    "PRESETS",
    "Preset",
    "PretrainConfig",
    "SceneStyle",
    "VOCConfig",
    "WSOLConfig",
    "get_preset",
    "replace",
]
