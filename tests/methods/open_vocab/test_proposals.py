"""Class-agnostic proposals (``lowlabel.methods.open_vocab.proposals``) from a detector trained 2 steps with
``data.class_agnostic`` on the tiny fake COCO: merged classes, boxes in the input's pixels (against torchvision's own
RPN output rescaled by hand), sorted, NMS respected, capped; random sampling; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from lowlabel.engine import fit
from lowlabel.errors import UserError
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.cross_domain import detector
from lowlabel.methods.cross_domain.common import DetectionDataConfig, DetectionSplit, DetectorModelConfig, load_detector
from lowlabel.methods.open_vocab.proposals import ProposalConfig, Proposals, load_proposer, propose, sample_regions
from lowlabel.models.detectors import RoISettings, RPNSettings
from tests.methods.open_vocab.coco_fake import write_coco

# resizes internally: shorter side 64 (a 32 x 40 image is scaled by exactly 2, a 16 x 24 one by exactly 4)
TINY_MODEL = DetectorModelConfig(
    backbone="resnet_small", width=4, min_size=64, max_size=160,
    rpn=RPNSettings(anchor_sizes=(8.0, 16.0, 32.0), aspect_ratios=(0.5, 1.0), pre_nms_top_n_train=200,
                    post_nms_top_n_train=50, pre_nms_top_n_test=300, post_nms_top_n_test=40, batch_size_per_image=32),
    roi=RoISettings(pool_size=4, batch_size_per_image=16),
)


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def run(coco: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-agnostic detector trained 2 steps on the fake COCO's train split (base boxes only)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = detector.DetectorConfig(
        data=DetectionDataConfig(root=str(coco), root_kind="coco", train_split="train", class_agnostic=True,
                                 num_fixed_samples=1, num_worst_samples=1),
        model=TINY_MODEL,
        optim=OptimConfig(name="sgd", lr=0.01, schedule="multistep", milestones=(1,), warmup_steps=1),
        trainer=TrainerConfig(max_steps=2, batch_size=2, eval_split="val", log_every=1, accelerator="cpu"),
    )
    out = tmp_path_factory.mktemp("rpn") / "run"
    fit(detector.build(cfg), run_dir=out, progress=False)
    torch.set_num_threads(threads)
    return out


def test_class_agnostic_merges_every_class(coco: Path, run: Path) -> None:
    data = DetectionDataConfig(root=str(coco), root_kind="coco")
    folders = data.split("val")
    plain = DetectionSplit(name="val", folders=folders)
    merged = DetectionSplit(name="val", folders=folders, class_agnostic=True)
    assert plain.class_names == ["red", "green", "blue"] and merged.class_names == ["object"]
    for i in range(len(merged)):
        assert merged[i]["labels"].tolist() == [0] * len(plain[i]["labels"])  # every box kept, one label
    assert load_detector(str(run))[1] == ["object"]  # the run records its one class
    with pytest.raises(ValueError, match="class_agnostic"):
        DetectionDataConfig(class_agnostic=True, classes=["car"])


def _reference(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """torchvision's own RPN boxes for ``image`` (in the resized image), in eval mode."""
    with torch.no_grad():
        batch, _ = model.transform([image.float() / 255])
        boxes, _ = model.rpn(batch, {"0": model.backbone(batch.tensors)})
    return boxes[0]


@pytest.mark.parametrize(("size", "factor"), [((32, 40), 2), ((16, 24), 4)])
def test_boxes_are_torchvisions_rpn_rescaled_to_the_input(run: Path, size: tuple[int, int], factor: int) -> None:
    model = load_proposer(str(run)).module
    rpn = model.rpn
    # the RPN's own settings; its min_size applies in the resized image, ours in input pixels
    cfg = ProposalConfig(pre_nms_top_n=rpn._pre_nms_top_n["testing"], post_nms_top_n=rpn._post_nms_top_n["testing"],
                         nms_thresh=rpn.nms_thresh, min_size=rpn.min_size / factor)
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    (got,) = propose(model, [image], cfg)
    expected = _reference(model, image) / factor  # exact: a power-of-two scale
    assert len(got.boxes) == len(expected) > 0
    torch.testing.assert_close(got.boxes, expected)


def test_proposals_inside_sorted_nms_and_capped(run: Path) -> None:
    model = load_proposer(str(run)).module
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=gen),
              torch.randint(0, 256, (3, 28, 60), dtype=torch.uint8, generator=gen)]
    for cap, thresh in ((7, 0.5), (300, 0.3)):
        found = propose(model, images, ProposalConfig(post_nms_top_n=cap, nms_thresh=thresh))
        assert len(found) == 2
        for props, image in zip(found, images):
            h, w = image.shape[1:]
            boxes, scores = props
            assert 0 < len(boxes) <= cap and boxes.dtype == torch.float32 and scores.shape == (len(boxes),)
            assert float(boxes[:, :2].min()) >= 0 and float(boxes[:, 2].max()) <= w and float(boxes[:, 3].max()) <= h
            assert bool((boxes[:, 2:] - boxes[:, :2] >= 1.0).all())  # min_size 1 px
            assert bool((scores[:-1] >= scores[1:]).all()) and 0 <= float(scores.min()) <= float(scores.max()) <= 1
            iou = box_iou(boxes, boxes).fill_diagonal_(0)
            assert float(iou.max()) <= thresh + 1e-6
    assert model.training is False and propose(model, [], ProposalConfig()) == []


def test_sample_regions_draws_k_in_score_order() -> None:
    scores = torch.linspace(1, 0.1, 10)
    props = Proposals(boxes=torch.arange(40, dtype=torch.float32).view(10, 4), scores=scores)
    a = sample_regions(props, 4, torch.Generator().manual_seed(3))
    b = sample_regions(props, 4, torch.Generator().manual_seed(3))
    assert len(a.scores) == 4 and len(set(a.scores.tolist())) == 4
    assert bool((a.scores[:-1] > a.scores[1:]).all())  # still sorted
    rows = (a.boxes[:, 0] / 4).long()
    torch.testing.assert_close(a.scores, scores[rows])  # boxes stay with their scores
    torch.testing.assert_close(a.boxes, b.boxes)  # the generator decides
    assert sample_regions(props, 10).scores is props.scores  # all of them when there are at most k
    with pytest.raises(ValueError, match="k must be"):
        sample_regions(props, -1)


def test_bad_input_is_one_line(tmp_path: Path, run: Path) -> None:
    for source in ("", str(tmp_path / "missing")):
        with pytest.raises(UserError) as err:
            load_proposer(source)
        assert "\n" not in str(err.value) and "lowlabel train detector" in str(err.value)
    with pytest.raises(ValueError, match="uint8"):
        propose(load_proposer(str(run)).module, [torch.rand(3, 8, 8)], ProposalConfig())
    with pytest.raises(ValueError, match="nms_thresh"):
        ProposalConfig(nms_thresh=0.0)
