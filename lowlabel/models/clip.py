"""CLIP with a ResNet image tower, built from open_clip's own classes, and the parts RegionCLIP takes apart.

The network is an ``open_clip.CLIP``: ``CLIPVisionCfg.layers`` given as four stage depths makes open_clip build its
``ModifiedResNet`` (a 3-conv stem, anti-aliased bottleneck stages, attention pooling), and the text tower is its
causal transformer pooled at the end token. Its state dict is therefore open_clip's, which is OpenAI's key for key,
and one function, :func:`build_clip`, makes

* the tiny CLIP trained from scratch on ShapesWorld captions (``arch="tiny"``, :data:`ARCHS`), and
* OpenAI's or open_clip's RN50 (``arch="RN50-quickgelu"``, or any ModifiedResNet config open_clip ships), loaded
  from a local file offline (OpenAI's TorchScript ``RN50.pt``, open_clip's ``.bin`` / ``.pt`` state dicts,
  ``.safetensors``, a lowlabel ``clip`` run) or from an open_clip tag where downloads work (``pretrained="openai"``).

Text goes through open_clip's BPE tokenizer (:func:`tokenize`; its 49,408-token vocabulary ships in the wheel).

What RegionCLIP (Zhong et al., CVPR 2022, arXiv:2112.09106; methods.md 4a.1) needs from teacher and student:
:func:`c4_parts` (stem..res4 at stride 16, res5, the attention pool), :func:`attention_pool` (the pool on any grid,
e.g. RoI features), :func:`prompt_embeddings` (class names through a prompt-template ensemble) and
:func:`image_embeddings`.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any, NamedTuple

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from torch import Tensor, nn

from lowlabel.errors import UserError
from lowlabel.losses.regionclip import CLIP_MAX_LOGIT_SCALE, fill_templates, prompt_ensemble
from lowlabel.models.weights import is_torchscript, read_weights, single_network

# OpenAI CLIP's pixel statistics (open_clip.OPENAI_DATASET_MEAN / _STD; RegionCLIP's PIXEL_MEAN / PIXEL_STD).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# Our architectures, in open_clip's model-config layout (open_clip/model_configs/RN50.json).
# tiny: a CPU-sized CLIP for ShapesWorld. Image tower: a ModifiedResNet with one bottleneck per stage at width 16
# (res4 has 16 * 16 = 256 channels, res5 512; 512 / 64 = 8 attention-pool heads); at 96 px the attention pool sees a
# 3 x 3 grid. Text tower: 3 layers of width 128 (4 heads) over 48 tokens, since the longest ShapesWorld caption
# (full, 9,000 train captions) is 45 BPE tokens with the start and end tokens. embed_dim 128: the joint space.
# The vocabulary stays open_clip's 49,408 tokens, so that its tokenizer works unchanged.
ARCHS: dict[str, dict[str, Any]] = {
    "tiny": {
        "embed_dim": 128,
        "quick_gelu": False,
        "vision_cfg": {"image_size": 96, "layers": [1, 1, 1, 1], "width": 16, "head_width": 64},
        "text_cfg": {"context_length": 48, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
    },
}
# Entries OpenAI's TorchScript archives hold besides the weights (open_clip.factory.load_state_dict drops them too).
TORCHSCRIPT_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# Named prompt-template sets that a template list may name instead of spelling them out (see expand_templates).
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    # CLIP's 80 ImageNet templates (open_clip.zero_shot_metadata), the ensemble RegionCLIP's concept embeddings use
    "openai-imagenet": tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES),
}


def arch_config(arch: str) -> dict[str, Any]:
    """The model config of ``arch``: one of :data:`ARCHS`, an open_clip built-in (``RN50``, ``RN50-quickgelu``,
    ``RN101``, ``RN50x4``, ...) or a ``.json`` file in open_clip's model-config layout.

    Raises:
        UserError: an unknown name, an unreadable file, or a tower that is not a ModifiedResNet (a ViT has no res4,
            res5 and attention pool for RegionCLIP's C4 head).
    """
    if arch in ARCHS:
        cfg = deepcopy(ARCHS[arch])
    elif arch.endswith(".json"):
        try:
            cfg = json.loads(Path(arch).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{arch}: cannot read the CLIP model config ({err})") from None
        cfg = cfg.get("model_cfg", cfg) if isinstance(cfg, dict) else cfg  # open_clip_config.json nests it
    else:
        cfg = open_clip.get_model_config(arch)
        if cfg is None:
            resnets = [name for name in open_clip.list_models() if name.startswith("RN")]
            raise UserError(f"unknown CLIP arch {arch!r}; choose {', '.join(ARCHS)}, an open_clip ResNet "
                            f"({', '.join(resnets)}) or a model-config .json file")
        cfg = deepcopy(cfg)
    layers = cfg.get("vision_cfg", {}).get("layers") if isinstance(cfg, dict) else None
    if not isinstance(layers, list | tuple) or len(layers) != 4 or "text_cfg" not in cfg or "embed_dim" not in cfg:
        raise UserError(f"CLIP arch {arch!r}: need embed_dim, text_cfg and a ResNet image tower (vision_cfg.layers "
                        f"as four stage depths), got vision_cfg.layers={layers!r}")
    return cfg


def build_clip(*, arch: str = "tiny", image_size: int = 0, context_length: int = 0,
               pretrained: str = "") -> open_clip.CLIP:
    """An ``open_clip.CLIP`` with a ModifiedResNet image tower, randomly initialised or loaded.

    Args:
        arch: see :func:`arch_config`.
        image_size: input side in pixels, a multiple of 32 (0: the arch's own). The attention pool's positional
            embedding has (image_size / 32)^2 + 1 rows, so weights load only at the size they were trained at.
        context_length: tokens per text (0: the arch's own). A checkpoint with a longer context loads with its
            positional embedding cut to this length, which is exact: the causal mask never lets a token see a later
            position.
        pretrained: "" (random), a weights file or run folder, or an open_clip tag of ``arch`` (downloads);
            see :func:`load_clip_weights`.
    """
    cfg = arch_config(arch)
    vision, text = dict(cfg["vision_cfg"]), dict(cfg["text_cfg"])
    vision["layers"] = tuple(vision["layers"])  # a tuple selects open_clip's ModifiedResNet
    vision["image_size"] = image_size or vision.get("image_size", 224)
    if context_length:
        text["context_length"] = context_length
    if not isinstance(vision["image_size"], int) or vision["image_size"] < 32 or vision["image_size"] % 32:
        raise UserError(f"CLIP image_size must be a positive multiple of 32 (the stride of res5), "
                        f"got {vision['image_size']}")
    model = open_clip.CLIP(int(cfg["embed_dim"]), vision_cfg=CLIPVisionCfg(**vision), text_cfg=CLIPTextCfg(**text),
                           quick_gelu=bool(cfg.get("quick_gelu", False)))
    if pretrained:
        load_clip_weights(model, pretrained, arch=arch, quick_gelu=bool(cfg.get("quick_gelu", False)))
    return model


# --- weights -----------------------------------------------------------------------------------------------------


def clip_weights_file(spec: str, *, arch: str) -> Path:
    """The file or run folder ``spec`` names: an existing path, else an open_clip tag of ``arch``, downloaded into
    open_clip's cache (``open_clip.download_pretrained``, which prefers the Hugging Face hub copy).

    Raises:
        UserError: neither a path nor a tag, or the download failed (offline: give a local file).
    """
    path = Path(spec).expanduser()
    if path.exists():
        return path
    builtin = arch not in ARCHS and not arch.endswith(".json")
    tag_cfg = open_clip.get_pretrained_cfg(arch, spec) if builtin else {}
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch) if builtin else []
        known = f"; open_clip tags of {arch}: {', '.join(tags)}" if tags else ""
        raise UserError(f"CLIP weights {spec}: no such file or folder, and not an open_clip tag of {arch!r}{known}")
    try:
        return Path(open_clip.download_pretrained(tag_cfg))
    except Exception as err:  # network failures come in many types (urllib, requests, huggingface_hub)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"CLIP weights {arch}/{spec}: download failed ({first}); offline, give a local file") from None


def read_clip_state(path: str | Path) -> dict[str, Tensor]:
    """The CLIP state dict in a file or run folder, in open_clip's key layout.

    Reads (:func:`lowlabel.models.weights.read_weights`) OpenAI's TorchScript archives, ``.bin`` / ``.pt`` /
    ``.pth`` state dicts (bare, or as ``{"state_dict": ...}`` with DDP's ``module.`` prefix, as open_clip's training
    saves them), ``.safetensors`` and lowlabel ``clip`` runs and checkpoints (the network ``model``).

    Raises:
        UserError: one line naming ``path`` (missing, unreadable, or several networks and none called ``model``).
    """
    path = Path(path)
    try:
        state = single_network(read_weights(path), path)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    return {k.removeprefix("module."): v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}


def _embed_width(state: Mapping[str, Any]) -> int | None:
    """The joint embedding width D of a CLIP state dict (text_projection is (text width, D)); None without one."""
    proj = state.get("text_projection")
    return int(proj.shape[-1]) if isinstance(proj, Tensor) and proj.dim() == 2 else None


def load_clip_state(model: open_clip.CLIP, state: Mapping[str, Tensor], *, source: str | Path) -> None:
    """Load an open_clip-layout ``state`` into ``model`` (strict), after checks that each fail in one line.

    The joint embedding width must match; every key must be there with its shape, except the text positional
    embedding, which is cut to the model's shorter context (exact, see :func:`build_clip`).

    Raises:
        UserError: naming ``source`` and the first thing that does not fit.
    """
    own = model.state_dict()
    width, own_width = _embed_width(state), _embed_width(own)
    if width is None:
        raise UserError(f"{source}: not a CLIP state dict (no text_projection)")
    if width != own_width:
        raise UserError(f"{source}: embedding width {width} does not match the model's {own_width}; "
                        "choose the model.arch the weights were trained with")
    state = dict(state)
    pos = state.get("positional_embedding")
    context = own["positional_embedding"].shape[0]
    if isinstance(pos, Tensor) and pos.dim() == 2 and pos.shape[0] > context:
        state["positional_embedding"] = pos[:context]  # (context, text width): positions the model never reaches
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(f"{source}: does not fit this CLIP ({len(missing)} missing keys, e.g. {missing[:2]}; "
                        f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            hint = " (trained at another image size: set model.image_size)" if "attnpool.positional" in key else ""
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, the model's is "
                            f"{tuple(own[key].shape)}{hint}")
    model.load_state_dict(state)


def load_clip_weights(model: open_clip.CLIP, spec: str, *, arch: str, quick_gelu: bool = True) -> Path:
    """Load the weights ``spec`` names (a file, a run folder or an open_clip tag of ``arch``) into ``model``;
    returns the file or folder read.

    OpenAI trained its CLIPs with QuickGELU in the text transformer; an OpenAI TorchScript archive loaded into an arch
    without it (``RN50`` rather than ``RN50-quickgelu``) gives slightly different text embeddings, with a warning.
    """
    path = clip_weights_file(spec, arch=arch)
    load_clip_state(model, read_clip_state(path), source=path)
    if not quick_gelu and path.is_file() and is_torchscript(path):
        warnings.warn(f"{path}: OpenAI CLIP weights in an arch without QuickGELU ({arch}); use the -quickgelu arch "
                      "for OpenAI's text embeddings", stacklevel=2)
    return path


def logit_scale(model: open_clip.CLIP, *, max_scale: float = CLIP_MAX_LOGIT_SCALE) -> Tensor:
    """CLIP's learned 1 / tau = exp(logit_scale), read clamped at ``max_scale`` (100, CLIP section 2.5).

    open_clip's training clamps the parameter in place after each step; clamping the value read trains the same way
    (no gradient pushes the scale past the cap) and leaves the parameter to the optimizer alone.
    """
    return model.logit_scale.exp().clamp(max=max_scale)


# --- parts for RegionCLIP's C4 head ------------------------------------------------------------------------------


class C4Parts(NamedTuple):
    """The image tower taken apart at res4 (the model's own modules, not copies)."""

    trunk: nn.Sequential  # stem + layer1..layer3: (B, 3, H, W) -> res4 (B, 16 * width, H / 16, W / 16)
    res5: nn.Sequential  # layer4: res4 -> (B, 32 * width, H / 32, W / 32)
    attnpool: AttentionPool2d  # res5 -> (B, D) on its own grid; attention_pool() takes any grid


def c4_parts(model: open_clip.CLIP) -> C4Parts:
    """The trunk (stem..res4), res5 and attention pool of ``model``'s ModifiedResNet (methods.md 4a.1)."""
    v = model.visual
    if not isinstance(v, ModifiedResNet):
        raise TypeError(f"c4_parts needs a ModifiedResNet image tower, got {type(v).__name__}")
    stem = [v.conv1, v.bn1, v.act1, v.conv2, v.bn2, v.act2, v.conv3, v.bn3, v.act3, v.avgpool]
    return C4Parts(trunk=nn.Sequential(*stem, v.layer1, v.layer2, v.layer3), res5=v.layer4, attnpool=v.attnpool)


def attention_pool(pool: AttentionPool2d, x: Tensor) -> Tensor:
    """CLIP's attention pooling on a feature map of any size.

    The query is the mean token; keys and values are the mean token and the H * W positions, each plus a learned
    positional embedding. On the grid the pool was built for this equals ``pool(x)``; on another grid the positional
    embedding's spatial part is resized bicubically (as RegionCLIP's pool does for RoI features).

    Args:
        x: (B, C, H, W) res5 features.

    Returns:
        (B, D) embeddings.
    """
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (B, 1 + HW, C)
    pos = pool.positional_embedding  # (1 + G * G, C)
    grid = math.isqrt(pos.shape[0] - 1)
    if (h, w) != (grid, grid):
        spatial = pos[1:].reshape(1, grid, grid, c).permute(0, 3, 1, 2)  # (1, C, G, G)
        spatial = F.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)  # (1, C, H, W)
        pos = torch.cat([pos[:1], spatial.flatten(2)[0].t()], dim=0)  # (1 + HW, C)
    tokens = tokens + pos.to(tokens.dtype)
    heads = pool.num_heads
    # only the mean token's output is returned, so only its query is needed: q (B, heads, 1, C / heads)
    q = pool.q_proj(tokens[:, :1]).view(b, 1, heads, c // heads).transpose(1, 2)
    k = pool.k_proj(tokens).view(b, -1, heads, c // heads).transpose(1, 2)  # (B, heads, 1 + HW, C / heads)
    v = pool.v_proj(tokens).view(b, -1, heads, c // heads).transpose(1, 2)  # (B, heads, 1 + HW, C / heads)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, C / heads): softmax(q k^T / sqrt(C / heads)) v
    return pool.c_proj(out.transpose(1, 2).reshape(b, c))  # (B, heads, 1, C / heads) -> (B, C) -> (B, D)


# --- text --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> open_clip.SimpleTokenizer:
    return open_clip.SimpleTokenizer(context_length=context_length)


def tokenize(texts: Sequence[str], context_length: int) -> Tensor:
    """(N, context_length) int64 BPE tokens: the start token, the lower-cased text, the end token, zero padding. A
    longer text is cut and still ends with the end token (``encode_text`` pools there: the highest token id)."""
    return _tokenizer(context_length)(list(texts))


def expand_templates(templates: Sequence[str]) -> list[str]:
    """The prompt templates a config lists: each entry holds ``{}`` for the class name, or names a set in
    :data:`TEMPLATE_SETS` (``openai-imagenet``), which stands for all of its templates.

    Raises:
        UserError: no template, or an entry that is neither.
    """
    out: list[str] = []
    for entry in templates:
        if entry in TEMPLATE_SETS:
            out += TEMPLATE_SETS[entry]
        elif "{}" in entry:
            out.append(entry)
        else:
            raise UserError(f"prompt template {entry!r} has no '{{}}' for the class name and names no template set "
                            f"({', '.join(TEMPLATE_SETS)})")
    if not out:
        raise UserError("the prompt template list is empty: give at least one template with '{}'")
    return out


def prompt_embeddings(model: open_clip.CLIP, names: Sequence[str], templates: Sequence[str], *,
                      batch_size: int = 256) -> Tensor:
    """One text embedding per class name from a prompt-template ensemble (methods.md 4a.3).

    Every ``template.format(name)`` is encoded; the unit embeddings are averaged over templates and normalised again
    (:func:`lowlabel.losses.regionclip.prompt_ensemble`).

    Args:
        templates: as :func:`expand_templates` takes them.

    Returns:
        (C, D) unit vectors, on the model's device.
    """
    if not names:
        raise UserError("the class list is empty: give at least one class name")
    templates = expand_templates(templates)
    device = model.logit_scale.device
    tokens = tokenize(fill_templates(templates, names), model.context_length)  # (T * C, L), template-major
    emb = torch.cat([model.encode_text(chunk.to(device)) for chunk in tokens.split(batch_size)])  # (T * C, D)
    return prompt_ensemble(emb.view(len(templates), len(names), -1))  # (T, C, D) -> (C, D)


def check_class_names(names: Sequence[str], templates: Sequence[str], context_length: int) -> None:
    """Refuse a class list that cannot be embedded as given: a name listed twice (its detections could not be told
    apart), or one whose longest prompt needs more than ``context_length`` tokens (it would be silently cut).

    Raises:
        UserError: one line naming the class.
    """
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise UserError(f"class {name!r} is listed twice")
        seen.add(name.lower())
    tokenizer = _tokenizer(context_length)
    for name in names:
        longest = max(len(tokenizer.encode(t.replace("{}", name))) for t in expand_templates(templates))
        if longest + 2 > context_length:  # + the start and end tokens
            raise UserError(f"class {name!r}: its prompts need {longest + 2} tokens, the text tower reads "
                            f"{context_length}; use a shorter name")


def image_embeddings(model: open_clip.CLIP, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """(N, D) unit image embeddings of normalised ``(N, 3, S, S)`` images, ``batch_size`` at a time."""
    device = model.logit_scale.device
    return torch.cat([F.normalize(model.encode_image(chunk.to(device)), dim=-1) for chunk in images.split(batch_size)])
