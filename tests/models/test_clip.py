"""models/clip.py: open_clip's tokenizer and a tiny random CLIP; weights written by the test in open_clip's state-dict
form, as safetensors and as a TorchScript archive (OpenAI's format) load to identical outputs; the C4 parts; one-line
errors for files that do not fit."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lowlabel.errors import UserError
from lowlabel.models.clip import (
    ARCHS,
    TEMPLATE_SETS,
    attention_pool,
    build_clip,
    c4_parts,
    expand_templates,
    load_clip_weights,
    prompt_embeddings,
    read_clip_state,
    tokenize,
)

SOT, EOT = 49406, 49407  # open_clip's start / end-of-text token ids (the last two of its 49,408)


def small_arch(path: Path, *, embed_dim: int = 32, context: int = 16, image_size: int = 64,
               quick_gelu: bool = False) -> str:
    """A model-config .json smaller than ``tiny`` (fast tests), in open_clip's layout."""
    cfg = {"embed_dim": embed_dim, "quick_gelu": quick_gelu,
           "vision_cfg": {"image_size": image_size, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
           "text_cfg": {"context_length": context, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path.write_text(json.dumps(cfg))
    return str(path)


def outputs(model: torch.nn.Module, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, size, size, generator=gen)
    tokens = tokenize(["a red square.", "two green circles and a star"], model.context_length)
    with torch.no_grad():
        return model.eval().encode_image(images), model.encode_text(tokens)


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    (ia, ta), (ib, tb) = outputs(a), outputs(b)
    assert torch.equal(ia, ib) and torch.equal(ta, tb)


def test_tokenize_starts_ends_pads_and_cuts() -> None:
    tokens = tokenize(["A Cat.", "a cat."], 8)
    assert tokens.shape == (2, 8) and tokens.dtype == torch.int64
    assert torch.equal(tokens[0], tokens[1])  # lower-cased
    assert tokens[0, 0] == SOT and tokens[0, 4] == EOT and tokens[0, 5:].eq(0).all()  # SOT "a" "cat" "." EOT, padding
    long = tokenize([" ".join(["dog"] * 20)], 8)[0]
    assert long[0] == SOT and long[-1] == EOT and long[1:-1].ne(0).all()  # cut, still ending with the end token


def test_tiny_clip_forward_shapes_and_gradients(one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_clip(arch="tiny")
    cfg = ARCHS["tiny"]
    size, context, dim = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"], cfg["embed_dim"]
    images = torch.randn(2, 3, size, size)
    tokens = tokenize(["a photo of a large green cat.", "there is a bus."], context)
    image_emb, text_emb, scale = model(images, tokens)  # unit embeddings and exp(logit_scale)
    assert image_emb.shape == (2, dim) and text_emb.shape == (2, dim) and tokens.shape == (2, context)
    assert torch.isfinite(image_emb).all() and torch.isfinite(text_emb).all()
    assert torch.allclose(image_emb.norm(dim=1), torch.ones(2)) and float(scale.detach()) == pytest.approx(1 / 0.07)
    # open_clip starts every bottleneck's last BatchNorm gain at 0, which stops the gradient of the convolutions
    # before it; after one step every parameter gets a non-zero gradient (the token table: the rows of these texts)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        image_emb, text_emb, scale = model(images, tokens)
        (image_emb @ text_emb.t() * scale).diagonal().sum().backward()
        opt.step()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []


def test_open_clip_state_dict_and_safetensors_load_to_identical_outputs(tmp_path: Path, one_thread: None) -> None:
    arch = small_arch(tmp_path / "small.json")
    torch.manual_seed(0)
    source = build_clip(arch=arch)
    # as open_clip's training saves it: {"epoch", "state_dict" with DDP's "module." prefix, ...}
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": state}, tmp_path / "epoch_3.pt")
    tensors = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(tensors, str(tmp_path / "open_clip_model.safetensors"))
    torch.manual_seed(1)
    fresh = build_clip(arch=arch)
    assert not torch.equal(outputs(fresh)[0], outputs(source)[0])  # a random model differs: the loads below matter
    for name in ("epoch_3.pt", "open_clip_model.safetensors"):
        assert_same(source, build_clip(arch=arch, pretrained=str(tmp_path / name)))


class OpenAILayout(torch.nn.Module):
    """A CLIP's modules and parameters under their own names, plus the three entries OpenAI's archives add
    (``input_resolution``, ``context_length``, ``vocab_size``): the key layout of OpenAI's ``RN50.pt``."""

    def __init__(self, clip: torch.nn.Module, image_size: int) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, param in clip.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for key, value in (("input_resolution", image_size), ("context_length", clip.context_length),
                           ("vocab_size", clip.vocab_size)):
            self.register_buffer(key, torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def write_torchscript(clip: torch.nn.Module, path: Path, image_size: int = 64) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.script(OpenAILayout(clip, image_size)), str(path))
    return path


def test_torchscript_archive_loads_to_identical_outputs(tmp_path: Path, one_thread: None) -> None:
    """OpenAI's RN50.pt is a TorchScript archive of a model with CLIP's keys plus input_resolution, context_length
    and vocab_size; a scripted module with that layout is the same kind of file."""
    arch = small_arch(tmp_path / "small.json", quick_gelu=True)  # as OpenAI's text transformer
    torch.manual_seed(0)
    source = build_clip(arch=arch).eval()
    write_torchscript(source, tmp_path / "RN50.pt")
    assert set(read_clip_state(tmp_path / "RN50.pt")) == set(build_clip(arch=arch).state_dict())  # extras dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch.jit deprecation warning reaches the user; no QuickGELU warning
        loaded = build_clip(arch=arch, pretrained=str(tmp_path / "RN50.pt"))
    assert_same(source, loaded)


def test_openai_archive_into_an_arch_without_quickgelu_warns(tmp_path: Path, one_thread: None) -> None:
    arch = small_arch(tmp_path / "small.json")
    write_torchscript(build_clip(arch=arch), tmp_path / "RN50.pt")
    with pytest.warns(UserWarning, match="QuickGELU"):
        load_clip_weights(build_clip(arch=arch), str(tmp_path / "RN50.pt"), arch=arch, quick_gelu=False)


def test_a_longer_context_is_cut_exactly(tmp_path: Path, one_thread: None) -> None:
    """The causal mask keeps a token from seeing later positions, so a model with a shorter context that takes the
    first rows of the positional embedding encodes short texts exactly as the long one."""
    arch = small_arch(tmp_path / "small.json", context=24)
    torch.manual_seed(0)
    long = build_clip(arch=arch).eval()
    torch.save(long.state_dict(), tmp_path / "long.pt")
    short = build_clip(arch=arch, context_length=10, pretrained=str(tmp_path / "long.pt")).eval()
    texts = ["a red square.", "a blue star"]
    with torch.no_grad():
        assert torch.allclose(long.encode_text(tokenize(texts, 24)), short.encode_text(tokenize(texts, 10)),
                              atol=1e-5)


@pytest.mark.parametrize("case", ["width", "resnet", "image_size", "missing", "unknown_arch"])
def test_weights_that_do_not_fit_give_one_line_naming_the_file(case: str, tmp_path: Path, one_thread: None) -> None:
    arch = small_arch(tmp_path / "small.json")
    path = tmp_path / f"{case}.pt"
    if case == "width":  # another joint embedding width
        torch.save(build_clip(arch=small_arch(tmp_path / "wide.json", embed_dim=48)).state_dict(), path)
        expected = "embedding width 48 does not match the model's 32"
    elif case == "resnet":  # another architecture altogether
        import torchvision

        torch.save(torchvision.models.resnet18().state_dict(), path)
        expected = "not a CLIP state dict"
    elif case == "image_size":  # the attention pool's positional embedding of another input size
        torch.save(build_clip(arch=small_arch(tmp_path / "big.json", image_size=96)).state_dict(), path)
        expected = "attnpool.positional_embedding has shape (10, 256), the model's is (5, 256) (trained at another"
    elif case == "missing":
        expected = "no such file or folder"
    else:
        with pytest.raises(UserError, match="unknown CLIP arch 'RN51'") as err:
            build_clip(arch="RN51")
        assert "\n" not in str(err.value)
        return
    with pytest.raises(UserError) as err:
        build_clip(arch=arch, pretrained=str(path))
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_c4_parts_and_attention_pool_rebuild_the_image_tower(one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_clip(arch="tiny").eval()
    parts = c4_parts(model)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        res4 = parts.trunk(x)  # (2, 256, 6, 6): stride 16
        res5 = parts.res5(res4)  # (2, 512, 3, 3): stride 32
        pooled = attention_pool(parts.attnpool, res5)
        assert res4.shape == (2, 256, 6, 6) and res5.shape == (2, 512, 3, 3)
        assert torch.allclose(pooled, model.encode_image(x), atol=1e-5)  # = open_clip's pool on its own grid
        roi = attention_pool(parts.attnpool, torch.randn(4, 512, 7, 7))  # another grid: positions resized
    assert roi.shape == (4, 128) and torch.isfinite(roi).all()


def test_templates_expand_and_bad_ones_are_refused(one_thread: None) -> None:
    assert expand_templates(["a {}.", "openai-imagenet"]) == ["a {}.", *TEMPLATE_SETS["openai-imagenet"]]
    assert len(TEMPLATE_SETS["openai-imagenet"]) == 80 and all("{}" in t for t in TEMPLATE_SETS["openai-imagenet"])
    with pytest.raises(UserError, match="has no '{}'"):
        expand_templates(["a photo of a cat."])
    with pytest.raises(UserError, match="template list is empty"):
        expand_templates([])
    model = build_clip(arch="tiny")
    with pytest.raises(UserError, match="class list is empty"):
        prompt_embeddings(model, [], ["a {}."])
    emb = prompt_embeddings(model, ["cat", "dog", "bus"], ["a {}.", "a photo of a {}."])
    assert emb.shape == (3, 128) and torch.allclose(emb.norm(dim=1), torch.ones(3))
