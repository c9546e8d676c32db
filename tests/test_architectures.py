"""ADPruner on torchvision architectures and user-defined models: a known density pattern gives a known
plan, the pruned model trains on, unprunable groups are skipped and reported, and the examples run."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from adprune import AdpruneError, ADPruner, plan_width
from adprune.models import build_model
from adprune.prune.widths import DensityPlan

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MIN_CHANNELS = 4


def _build(name: str, size: int) -> nn.Module:
    if name == "vit_tiny":
        return torchvision.models.VisionTransformer(
            image_size=size,
            patch_size=8,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
            num_classes=10,
        )
    return build_model(f"tv:{name}", in_channels=3, num_classes=10, image_size=size)


def _train_steps(model, optimizer, size, steps=2, batch=4):
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(torch.randn(batch, 3, size, size)), torch.randint(0, 10, (batch,)))
        loss.backward()
        optimizer.step()
    return loss


def _pattern(widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """Channel c of a group of width w has density (c + 1) / (2w): mean (w + 1) / 4w, densest last."""
    return {name: (torch.arange(w, dtype=torch.float64) + 1) / (2 * w) for name, w in widths.items()}


def _expected_width(width: int, blocks: int) -> int:
    planned = plan_width((width + 1) / (4 * width), width, min_channels=MIN_CHANNELS)
    return min(width, math.ceil(planned / blocks) * blocks)


def _kept(width: int, keep: int, blocks: int) -> list[int]:
    """The densest `keep` channels of the pattern: the last positions of every block."""
    size, per_block = width // blocks, keep // blocks
    return [b * size + p for b in range(blocks) for p in range(size - per_block, size)]


LINEAR = "linear bottleneck"  # read with no activation in between: density says nothing (see readers.py)

# (name, image size, what each skipped group's reason must mention; empty: nothing is skipped)
ARCHITECTURES = [
    ("resnet18", 32, ()),
    ("resnet50", 32, ()),
    ("mobilenet_v2", 32, (LINEAR,)),  # the projections of the inverted residuals
    ("mobilenet_v3_small", 32, (LINEAR,)),  # Hardswish, squeeze-excitation gates
    ("efficientnet_b0", 32, (LINEAR,)),  # SiLU, squeeze-excitation
    ("densenet121", 32, ()),  # concatenation
    ("regnet_x_400mf", 32, ()),  # grouped convs
    ("convnext_tiny", 32, (LINEAR,)),  # GELU, LayerNorm, depthwise, channels-last linear layers
    ("shufflenet_v2_x0_5", 32, ("channel shuffle", LINEAR)),  # channel shuffle, split
    ("vit_tiny", 32, ("attention",)),  # only the MLP hidden widths can go
]


@pytest.mark.parametrize(("name", "size", "skip_reasons"), ARCHITECTURES, ids=[a[0] for a in ARCHITECTURES])
def test_architecture_prunes_to_the_plan_and_trains_on(name, size, skip_reasons):
    model = _build(name, size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = ADPruner(
        model,
        torch.zeros(2, 3, size, size),
        optimizer,
        trigger=[],
        widths=DensityPlan(min_channels=MIN_CHANNELS),
    )
    _train_steps(model, optimizer, size)

    if not skip_reasons:
        assert pruner.skipped == {}
    else:
        assert pruner.skipped and all(
            any(r in reason for r in skip_reasons) for reason in pruner.skipped.values()
        )
    assert not set(pruner.skipped) & set(pruner.widths)
    groups = {g.name: g for g in pruner.groups}
    widths = pruner.widths
    roots = {n: model.get_submodule(n).weight.detach().clone() for n in widths}
    params = sum(p.numel() for p in model.parameters())

    event = pruner.prune(0, _pattern(widths))

    expected = {n: _expected_width(w, groups[n].blocks) for n, w in widths.items()}
    assert event is not None and event.widths_before == widths
    assert pruner.widths == event.widths_after == expected
    assert event.params_after == sum(p.numel() for p in model.parameters()) < params == event.params_before
    checked = 0
    for group, old in roots.items():
        root = model.get_submodule(group)
        assert root.weight.shape[0] == expected[group]
        if root.weight.shape[1:] == old.shape[1:]:  # its inputs were not pruned: weights are the kept rows
            kept = _kept(widths[group], expected[group], groups[group].blocks)
            assert torch.equal(root.weight.detach(), old[kept])
            checked += 1
    assert checked
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}

    loss = _train_steps(model, optimizer, size)
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, size, size)).shape == (3, 10)


def test_squeeze_excitation_reduce_channels_are_pruned_groups():
    model = _build("mobilenet_v3_small", 32)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), check=False)
    se = [n for n in pruner.widths if n.endswith("fc1")]
    assert se and all(isinstance(model.get_submodule(n), nn.Conv2d) for n in se)


def test_vit_prunes_mlp_hidden_widths_only():
    model = _build("vit_tiny", 32)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32))
    assert set(pruner.widths) == {f"encoder.layers.encoder_layer_{i}.mlp.0" for i in range(2)}
    assert any("self_attention" in reason for reason in pruner.skipped.values())


def test_smooth_activation_densities_are_measured_not_saturated():
    """SiLU (EfficientNet) and GELU (ConvNeXt) have no exact zeros: density counts positive values."""
    for name in ("efficientnet_b0", "convnext_tiny"):
        model = _build(name, 32)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        pruner = ADPruner(model, torch.zeros(2, 3, 32, 32), optimizer, max_prunes=0, check=False)
        _train_steps(model, optimizer, 32, steps=3, batch=8)
        pruner.epoch_end(0)
        assert set(pruner.channel_densities) == set(pruner.widths)
        for group, density in pruner.channel_densities.items():
            assert not bool((density == 1).all()) and not bool((density == 0).all()), group
        assert all(0.1 < d < 0.9 for d in pruner.densities.values())


class ChannelShuffle(nn.Module):
    """ShuffleNet-style block: split, a branch, concatenation, channel shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.branch_in, self.branch_out = nn.Conv2d(4, 6, 1), nn.Conv2d(6, 4, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        left, right = x.chunk(2, dim=1)
        x = torch.cat([left, F.relu(self.branch_out(F.relu(self.branch_in(right))))], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(x.mean((2, 3)))


class HardCodedWidth(nn.Module):
    """The forward hard-codes conv2's width, as torchvision's ViT does with hidden_dim."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        n, _, h, w = x.shape
        return self.fc(x.reshape(n, 8, h * w).mean(-1))


def test_channel_shuffle_groups_are_skipped_and_branch_groups_pruned():
    model = ChannelShuffle()
    pruner = ADPruner(model, torch.zeros(2, 3, 8, 8), widths=DensityPlan(min_channels=1))
    assert set(pruner.widths) == {"branch_in"}
    assert all("channel shuffle" in reason for reason in pruner.skipped.values())
    assert "branch_out" in pruner.skipped
    pruner.prune(0, {"branch_in": torch.tensor([0.1, 0.9, 0.1, 0.9, 0.9, 0.1])})
    assert model.branch_in.out_channels == model.branch_out.in_channels == 3
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_trial_prune_skips_a_group_the_forward_cannot_take():
    model = HardCodedWidth()
    pruner = ADPruner(model, torch.zeros(2, 3, 4, 4), widths=DensityPlan(min_channels=1))
    assert set(pruner.widths) == {"conv1"}
    assert "breaks the model" in pruner.skipped["conv2"]
    pruner.prune(0, {"conv1": torch.tensor([0.0, 1.0] * 4)})
    assert model.conv1.out_channels == 4
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    unchecked = ADPruner(HardCodedWidth(), torch.zeros(2, 3, 4, 4), check=False)
    assert set(unchecked.widths) == {"conv1", "conv2"}


def test_prune_validates_given_densities_and_needs_densities():
    model = HardCodedWidth()
    pruner = ADPruner(model, torch.zeros(2, 3, 4, 4))
    with pytest.raises(AdpruneError, match="no densities"):
        pruner.prune(0)
    with pytest.raises(AdpruneError, match="not a channel group"):
        pruner.prune(0, {"fc": torch.ones(10)})
    with pytest.raises(AdpruneError, match="one density per channel"):
        pruner.prune(0, {"conv1": torch.ones(5)})
    # a skipped group's densities are ignored; an all-dense plan prunes nothing
    assert pruner.prune(0, {"conv1": torch.ones(8), "conv2": torch.zeros(8)}) is None
    assert model.conv1.out_channels == model.conv2.out_channels == 8


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"adprune_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_loop_example_runs(tmp_path, capsys):
    example = _load_example("train_loop")
    result = example.main(["--epochs", "2", "--subset", "256", "--batch-size", "64", "--prune-at", "0"])
    out = capsys.readouterr().out
    assert "epoch 1" in out and "params" in out
    assert result["params"][-1] < result["params"][0]


def test_custom_model_example_runs(capsys):
    example = _load_example("custom_model")
    result = example.main(["--epochs", "3", "--steps", "3", "--prune-at", "0"])
    out = capsys.readouterr().out
    assert "before" in out and "after" in out
    assert result["params_after"] < result["params_before"]


class GroupedBranch(nn.Module):
    """Two concatenated branches, one of them a grouped conv (4 groups of 2), summed with a shortcut:
    one channel group whose grouped half can only lose whole positions of its conv groups."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.skip = nn.Conv2d(3, 16, 1)
        self.head = nn.Conv2d(16, 12, 3, padding=1)
        self.fc = nn.Linear(12, 10)

    def forward(self, x, mask=None):
        y = torch.relu(
            torch.cat([self.a(torch.relu(self.stem(x))), self.b(torch.relu(self.stem(x)))], 1) + self.skip(x)
        )
        if mask is not None:
            y = y * mask.view(1, -1, 1, 1)
        return self.fc(torch.relu(self.head(y)).mean((2, 3)))


def test_a_grouped_conv_in_one_concatenated_branch_ties_only_its_own_channels():
    model = GroupedBranch().eval()
    pruner = ADPruner(model, torch.zeros(2, 3, 8, 8), trigger=[], widths=DensityPlan(min_channels=1))
    (group,) = [g for g in pruner.groups if "b" in g.members]
    assert pruner.skipped == {} and group.blocks == 1 and group.width == 16
    # b's channel j is group channel 8 + j; its conv groups are {0,1}, {2,3}, {4,5}, {6,7}
    assert sorted(u for u in group.units if len(u) > 1) == [(8, 10, 12, 14), (9, 11, 13, 15)]
    x = torch.randn(3, 3, 8, 8)
    # mean density 0.6375 asks for ceil(10.2) = 11 channels: 5 go, lowest first: a's channel 3 (0.1),
    # then position 1 of every group of b as one unit (0.2); a's channel 5 (0.3) would overshoot
    densities = torch.full((16,), 0.9, dtype=torch.float64)
    densities[[3, 9, 11, 13, 15, 5]] = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.2, 0.3], dtype=torch.float64)
    mask = torch.ones(16)
    mask[[3, 9, 11, 13, 15]] = 0
    with torch.no_grad():
        masked = model(x, mask)
    event = pruner.prune(
        0, {group.name: densities, **{g.name: torch.ones(g.width) for g in pruner.groups if g is not group}}
    )
    assert event.widths_after[group.name] == 11
    assert (model.a.out_channels, model.b.out_channels, model.b.groups) == (7, 4, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), masked, atol=1e-5, rtol=0)
