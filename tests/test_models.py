"""Tests for the model registry, our CIFAR-style VGG/ResNet and the tv: torchvision adapter."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from adprune.errors import AdpruneError
from adprune.models import build_model, model_names, output_layer
from adprune.models.resnet import BLOCKS, BasicBlock
from adprune.models.vgg import CFGS

OURS = ["vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vgg_params(name: str, in_channels: int, num_classes: int) -> int:
    """Bias-free conv3x3 weights + BN (gamma, beta) per conv, then one Linear with bias."""
    total, cin = 0, in_channels
    for item in CFGS[name]:
        if item != "M":
            total += 9 * cin * item + 2 * item
            cin = item
    return total + cin * num_classes + num_classes


def resnet_params(name: str, in_channels: int, num_classes: int) -> int:
    """Stem conv3x3+BN, BasicBlocks (two conv3x3+BN, 1x1 conv+BN shortcut on shape change), Linear."""
    cin = 64
    total = 9 * in_channels * 64 + 2 * 64
    for stage, (blocks, cout) in enumerate(zip(BLOCKS[name], (64, 128, 256, 512), strict=True)):
        for j in range(blocks):
            total += 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout
            if j == 0 and (stage > 0 or cin != cout):
                total += cin * cout + 2 * cout
            cin = cout
    return total + cin * num_classes + num_classes


def test_model_names() -> None:
    assert model_names() == OURS


@pytest.mark.parametrize("name", OURS)
def test_param_counts_match_formula(name: str) -> None:
    model = build_model(name, in_channels=3, num_classes=10)
    expected = vgg_params(name, 3, 10) if name.startswith("vgg") else resnet_params(name, 3, 10)
    assert n_params(model) == expected


def test_param_counts_known_figures() -> None:
    # CIFAR ResNet-18/34 with 10 classes; VGG-19-BN with bias-free convs and one 512->10 Linear
    # (20,040,522 is the figure for the variant whose convs also carry a redundant bias).
    assert resnet_params("resnet18", 3, 10) == 11_173_962
    assert resnet_params("resnet34", 3, 10) == 21_282_122
    assert vgg_params("vgg19", 3, 10) == 20_035_018
    assert vgg_params("vgg19", 3, 10) + (2 * 64 + 2 * 128 + 4 * 256 + 8 * 512) == 20_040_522


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize(
    ("shape", "classes"), [((2, 1, 32, 32), 10), ((2, 3, 64, 64), 200), ((2, 1, 28, 28), 7)]
)
def test_forward_shapes(name: str, shape: tuple[int, int, int, int], classes: int) -> None:
    model = build_model(name, in_channels=shape[1], num_classes=classes, image_size=shape[2], width=0.25)
    assert model(torch.randn(*shape)).shape == (shape[0], classes)


def test_names_are_case_insensitive() -> None:
    assert isinstance(build_model("VGG11", in_channels=3, num_classes=10, width=0.125), nn.Module)
    assert isinstance(build_model("ResNet18", in_channels=3, num_classes=10, width=0.125), nn.Module)


@pytest.mark.parametrize("name", ["vgg16", "resnet34"])
def test_width_scales_channels_exactly(name: str) -> None:
    full = build_model(name, in_channels=3, num_classes=10)
    thin = build_model(name, in_channels=3, num_classes=10, width=0.25)
    convs_full = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    convs_thin = [m for m in thin.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs_full) == len(convs_thin)
    for a, b in zip(convs_full, convs_thin, strict=True):
        assert b.out_channels * 4 == a.out_channels
        assert b.in_channels == (3 if a.in_channels == 3 else a.in_channels // 4)
    assert output_layer(thin).in_features * 4 == output_layer(full).in_features


def test_width_floor_is_one_channel() -> None:
    model = build_model("vgg11", in_channels=3, num_classes=10, width=1e-6)
    assert {m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)} == {1}


def test_init() -> None:
    model = build_model("vgg11", in_channels=3, num_classes=10)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    fc = output_layer(model)
    assert torch.all(fc.bias == 0) and fc.weight.std().item() == pytest.approx(0.01, rel=0.2)


def test_basic_block_calls_one_relu_twice() -> None:
    model = build_model("resnet18", in_channels=3, num_classes=10, width=0.25)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    calls = {id(b): 0 for b in blocks}
    for b in blocks:
        assert sum(isinstance(m, nn.ReLU) for m in b.modules()) == 1

        def hook(_m: nn.Module, _i: object, _o: object, key: int = id(b)) -> None:
            calls[key] += 1

        b.relu.register_forward_hook(hook)
    model(torch.randn(2, 3, 32, 32))
    assert set(calls.values()) == {2}


@pytest.mark.parametrize(("name", "first_conv"), [("resnet18", "conv1"), ("mobilenet_v2", "features.0.0")])
def test_torchvision_in_channels(name: str, first_conv: str) -> None:
    ref = build_model(f"tv:{name}", in_channels=3, num_classes=5)
    model = build_model(f"tv:{name}", in_channels=1, num_classes=5)
    old, new = ref.get_submodule(first_conv), model.get_submodule(first_conv)
    assert new.in_channels == 1
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(new, attr) == getattr(old, attr)
    assert (new.bias is None) == (old.bias is None)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_torchvision_googlenet_has_no_aux_outputs() -> None:
    model = build_model("tv:googlenet", in_channels=3, num_classes=4)
    out = model.train()(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vgg11", "classifier"),
        ("resnet18", "fc"),
        ("tv:resnet18", "fc"),
        ("tv:mobilenet_v2", "classifier.1"),
        ("tv:vgg11_bn", "classifier.6"),
        ("tv:densenet121", "classifier"),
        ("tv:squeezenet1_0", "classifier.1"),
    ],
)
def test_output_layer(name: str, expected: str) -> None:
    model = build_model(name, in_channels=3, num_classes=10, width=0.25 if ":" not in name else 1.0)
    assert output_layer(model) is model.get_submodule(expected)


def test_output_layer_without_candidates() -> None:
    with pytest.raises(AdpruneError, match=r"no nn\.Linear or nn\.Conv"):
        output_layer(nn.Sequential(nn.ReLU()))


def test_unknown_name() -> None:
    with pytest.raises(AdpruneError) as info:
        build_model("vgg20", in_channels=3, num_classes=10)
    msg = str(info.value)
    assert "'vgg20'" in msg and "\n" not in msg
    assert all(n in msg for n in OURS)
    assert "tv:NAME" in msg and "tv:resnet50" in msg


def test_unknown_torchvision_name() -> None:
    with pytest.raises(AdpruneError, match=r"unknown torchvision classifier tv:notanet.*tv:resnet50"):
        build_model("tv:notanet", in_channels=3, num_classes=10)


def test_width_with_torchvision_rejected() -> None:
    with pytest.raises(AdpruneError, match=r"width=0\.5"):
        build_model("tv:resnet18", in_channels=3, num_classes=10, width=0.5)


def test_vit_patch_divisibility() -> None:
    with pytest.raises(AdpruneError, match="multiple of 16"):
        build_model("tv:vit_b_16", in_channels=3, num_classes=10, image_size=40)


def test_too_small_image_for_torchvision_model() -> None:
    with pytest.raises(AdpruneError, match="cannot take 32x32 inputs"):
        build_model("tv:alexnet", in_channels=3, num_classes=10, image_size=32)


@pytest.mark.parametrize(
    "kwargs",
    [{"in_channels": 0}, {"num_classes": -1}, {"image_size": 0}, {"width": 0.0}, {"width": float("nan")}],
)
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"in_channels": 3, "num_classes": 10, **kwargs}
    with pytest.raises(AdpruneError):
        build_model("vgg11", **args)  # type: ignore[arg-type]


def test_torch_pruning_traces_vgg11() -> None:
    model = build_model("vgg11", in_channels=3, num_classes=10)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    group = dg.get_pruning_group(model.features[0], tp.prune_conv_out_channels, idxs=[0])
    members = {(item.dep.target.module, dg.is_out_channel_pruning_fn(item.dep.handler)) for item in group}
    assert (model.features[1], True) in members  # its BatchNorm
    assert (model.features[4], False) in members  # the next conv's input channels


def test_torch_pruning_couples_residual_channels() -> None:
    model = build_model("resnet18", in_channels=3, num_classes=10)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    group = dg.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[0])
    out_pruned = {item.dep.target.module for item in group if dg.is_out_channel_pruning_fn(item.dep.handler)}
    for conv in (model.conv1, model.layer1[0].conv2, model.layer1[1].conv2):
        assert conv in out_pruned
    assert model.layer1[0].conv1 not in out_pruned
