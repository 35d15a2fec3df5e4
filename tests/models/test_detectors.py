"""Faster R-CNN C4 from torchvision parts: shapes, gradients, frozen parts, the RoIAlign scale, bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from lowlabel.models.detectors import RoISettings, RPNSettings, build_detector, freeze_batchnorm

SMALL = {"rpn": RPNSettings(anchor_sizes=(8.0, 16.0), aspect_ratios=(1.0,), post_nms_top_n_train=32,
                            post_nms_top_n_test=16),
         "roi": RoISettings(batch_size_per_image=16)}


def targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[2.0, 3.0, 14.0, 13.0]]), "labels": torch.tensor([1])},
            {"boxes": torch.tensor([[20.0, 8.0, 30.0, 26.0], [1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([2, 1])}]


def test_every_trainable_parameter_gets_a_finite_gradient(one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_detector(backbone="resnet_small", num_classes=2, width=4, min_size=0, **SMALL)
    model.train()
    losses = model([torch.rand(3, 32, 48), torch.rand(3, 40, 40)], targets())
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or
                                                                             not torch.isfinite(p.grad).all())]
    assert not missing


def test_eval_outputs_in_input_pixels_and_the_roi_scale_from_the_trunk(one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_detector(backbone="resnet_small", num_classes=3, width=4, min_size=0, **SMALL).eval()
    assert model.backbone.stride == 8 and model.roi_heads.box_roi_pool.scales == [1 / 8]
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # K + background
    with torch.no_grad():
        out = model([torch.rand(3, 30, 45), torch.rand(3, 17, 23)])  # sizes not divisible by the stride
    for o, (h, w) in zip(out, ((30, 45), (17, 23))):
        assert o["boxes"].shape[1] == 4 and len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        if len(o["boxes"]):
            assert float(o["boxes"][:, 2].max()) <= w and float(o["boxes"][:, 3].max()) <= h
            assert int(o["labels"].min()) >= 1 and int(o["labels"].max()) <= 3
    # a tiny first image must not change the scale (torchvision would guess it from the first batch)
    assert model.roi_heads.box_roi_pool.scales == [1 / 8]


def test_resnet18_c4_layout_and_freeze_at() -> None:
    model = build_detector(backbone="resnet18", num_classes=1, pretrained="", frozen_bn=True, freeze_at=2,
                           min_size=64, max_size=96, **SMALL)
    assert model.backbone.out_channels == 256 and model.backbone.stride == 16
    assert model.roi_heads.box_head.out_channels == 512
    assert model.roi_heads.box_roi_pool.output_size == (14, 14)  # detectron2's POOLER_RESOLUTION for its ResNets
    stem, res2, res3 = model.backbone.stages[:3]
    assert not any(p.requires_grad for p in [*stem.parameters(), *res2.parameters()])
    assert all(p.requires_grad for p in res3.parameters())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BatchNorm frozen


def test_freeze_batchnorm_keeps_the_statistics() -> None:
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 3, 4, 4)
    expected = bn.eval()(x)
    frozen = freeze_batchnorm(nn.Sequential(bn))[0]
    assert isinstance(frozen, FrozenBatchNorm2d)
    torch.testing.assert_close(frozen(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backbone": "vgg16"}, "unknown detector backbone"),
    ({"num_classes": 0}, "num_classes must be >= 1"),
    ({"freeze_at": 3}, "freeze_at must be 0, 1 or 2"),
    ({"min_size": 600, "max_size": 100}, "max_size >= min_size"),
    ({"pretrained": "torchvision"}, "resnet_small has no torchvision weights"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"backbone": "resnet_small", "num_classes": 2, "width": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        build_detector(**args)
