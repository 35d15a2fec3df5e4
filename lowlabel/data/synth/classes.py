"""The ShapesWorld category table: names, caption synonyms and each category's visual identity.

The identity of a category is fixed (it does not depend on ``--seed``), so that every seed samples the
same benchmark distribution. The class-specific evidence is deliberately split in two, as on real data:

* a strong **marking**: a two-colour pattern (stripes, checker, dots, rings or zigzag) in a category-specific
  colour pair, painted on one end of the body (the "head");
* weak **body evidence**: a preferred body shape and a preferred body hue, each used only part of the time
  (``shape_bias`` / ``hue_bias`` of :class:`~lowlabel.data.synth.config.ObjectStyle`).

Backgrounds have a category-specific "habitat" texture, used with probability ``context_prob``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lowlabel.structures import VOC_CLASSES

VOC_NAMES = VOC_CLASSES  # re-exported: the one list lives in lowlabel.structures

SYNONYMS: dict[str, tuple[str, ...]] = {
    "aeroplane": ("plane", "airplane", "jet"),
    "bicycle": ("bike", "cycle"),
    "bird": ("bird", "fowl"),
    "boat": ("ship", "vessel"),
    "bottle": ("flask", "jar"),
    "bus": ("coach", "bus"),
    "car": ("automobile", "vehicle", "auto"),
    "cat": ("kitten", "kitty"),
    "chair": ("seat", "stool"),
    "cow": ("cattle", "calf"),
    "diningtable": ("table", "dining table"),
    "dog": ("puppy", "hound"),
    "horse": ("pony", "stallion"),
    "motorbike": ("motorcycle", "scooter"),
    "person": ("man", "woman", "pedestrian"),
    "pottedplant": ("plant", "potted plant"),
    "sheep": ("lamb", "ewe"),
    "sofa": ("couch", "settee"),
    "train": ("locomotive", "tram"),
    "tvmonitor": ("monitor", "television", "screen"),
}

SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "diamond", "star", "blob")
PATTERNS: tuple[str, ...] = ("stripes", "checker", "dots", "rings", "zigzag")
# Saturated marking colours (RGB in [0, 1]); a category's marking uses an ordered pair of them.
MARK_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.95, 0.10, 0.10),
    (0.10, 0.75, 0.15),
    (0.15, 0.25, 0.95),
    (0.98, 0.85, 0.10),
    (0.95, 0.95, 0.95),
    (0.05, 0.05, 0.05),
    (0.85, 0.15, 0.85),
    (0.10, 0.85, 0.90),
)
COLOR_WORDS: tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "black", "purple", "cyan")


@dataclass(frozen=True)
class CategoryLook:
    """Visual identity of one category (all colours RGB in [0, 1], hue in [0, 1))."""

    name: str
    pattern: str  # marking pattern
    mark_colors: tuple[int, int]  # indices into MARK_COLORS
    pattern_freq: float  # marking cycles across the marking region
    shape: str  # preferred body shape (weak evidence)
    hue: float  # preferred body hue (weak evidence)
    habitat_hue: float  # class-correlated background hue (context bias)
    habitat_freq: float  # class-correlated background texture frequency


@cache
def category_look(index: int) -> CategoryLook:
    """The fixed visual identity of category ``index`` (0-based into :data:`VOC_NAMES`)."""
    if not 0 <= index < len(VOC_NAMES):
        raise ValueError(f"category index {index} out of range 0..{len(VOC_NAMES) - 1}")
    pattern = PATTERNS[index % len(PATTERNS)]
    # Ordered colour pairs (a, b), a != b, spread so that categories sharing a pattern differ in colour.
    pairs = [(a, b) for a in range(len(MARK_COLORS)) for b in range(len(MARK_COLORS)) if a != b]
    pair = pairs[(index * 11) % len(pairs)]
    return CategoryLook(
        name=VOC_NAMES[index],
        pattern=pattern,
        mark_colors=pair,
        pattern_freq=2.0 + (index % 3) * 0.75,
        shape=SHAPES[index % len(SHAPES)],
        hue=(index * 0.381966) % 1.0,  # golden-ratio spacing of hues
        habitat_hue=(index * 0.618034 + 0.1) % 1.0,
        habitat_freq=1.0 + (index % 4),
    )


def color_word(rgb: tuple[float, float, float]) -> str:
    """Nearest colour word for a body colour (used in captions)."""
    r, g, b = rgb
    best, best_d = COLOR_WORDS[0], 1e9
    for word, (cr, cg, cb) in zip(COLOR_WORDS, MARK_COLORS):
        d = (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2
        if d < best_d:
            best, best_d = word, d
    return best
