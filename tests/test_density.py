"""DensityMonitor counts exactly the positive share of what each consumer layer reads."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adprune.prune.density import DensityMonitor
from adprune.prune.groups import find_groups
from adprune.prune.tp_compat import build_graph


def _monitor(model, example):
    groups = find_groups(build_graph(model, example))
    return DensityMonitor(model, groups), {g.name: g for g in groups}


def _positive_share(t: torch.Tensor) -> torch.Tensor:
    dims = [d for d in range(t.dim()) if d != 1]
    return (t > 0).double().mean(dim=dims)


class KnownActivations(nn.Module):
    """conv1 makes channel 0 = x, channel 1 = -x, channel 2 = 0.5: densities known from x alone."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 1)
        self.conv2 = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1))
            self.conv1.bias.copy_(torch.tensor([0.0, 0.0, 0.5]))

    def forward(self, x):
        return self.fc(self.conv2(F.relu(self.conv1(x))).flatten(1))


def test_known_tensor_gives_known_per_channel_and_layer_density():
    model = KnownActivations()
    monitor, _ = _monitor(model, torch.zeros(1, 1, 2, 2))
    x = torch.tensor([[1.0, -1.0], [0.0, 2.0], [-3.0, -1.0], [4.0, 5.0]]).view(2, 1, 2, 2)
    model.train()
    model(x)
    densities = monitor.read()
    assert torch.equal(densities["conv1"], torch.tensor([4 / 8, 3 / 8, 1.0], dtype=torch.float64))
    assert densities["conv1"].mean().item() == pytest.approx((0.5 + 0.375 + 1.0) / 3)
    assert monitor.samples_seen == 2


def test_eval_forwards_do_not_count_and_reset_clears():
    model = KnownActivations()
    monitor, _ = _monitor(model, torch.zeros(1, 1, 2, 2))
    model.eval()
    model(torch.ones(4, 1, 2, 2))
    assert monitor.read() == {}
    model.train()
    model(torch.ones(4, 1, 2, 2))
    assert set(monitor.read()) == {"conv1", "conv2"}
    monitor.reset()
    assert monitor.read() == {} and monitor.samples_seen == 0


def test_counts_accumulate_over_batches():
    model = KnownActivations()
    monitor, _ = _monitor(model, torch.zeros(1, 1, 2, 2))
    model.train()
    model(torch.ones(1, 1, 2, 2))  # channel 0 all positive, channel 1 none
    model(-torch.ones(3, 1, 2, 2))  # channel 0 none, channel 1 all
    assert torch.equal(monitor.read()["conv1"], torch.tensor([0.25, 0.75, 1.0], dtype=torch.float64))


class ReusedReLU(nn.Module):
    """One activation used twice, as in torchvision's BasicBlock: after conv1, and after the residual sum
    of conv2 and the shortcut, whose channels conv3 reads (a coupled group, counted at conv3's input)."""

    def __init__(self, functional: bool = False, act: str = "relu"):
        super().__init__()
        self.conv1, self.conv2, self.shortcut, self.conv3 = (
            nn.Conv2d(3, 6, 3, padding=1),
            nn.Conv2d(6, 5, 3, padding=1),
            nn.Conv2d(3, 5, 1),
            nn.Conv2d(5, 4, 1),
        )
        self.relu = nn.ReLU()
        self.functional, self.act = functional, act
        self.fc = nn.Linear(4, 3)

    def activate(self, x):
        if self.act == "gelu":
            return F.gelu(x)
        if self.act == "silu":
            return F.silu(x)
        if self.act == "leaky":
            return F.leaky_relu(x, 0.1)
        return F.relu(x) if self.functional else self.relu(x)

    def forward(self, x):
        self.first = self.activate(self.conv1(x))
        self.summed = self.activate(self.conv2(self.first) + self.shortcut(x))
        return self.fc(self.conv3(self.summed).mean((2, 3)))


@pytest.mark.parametrize(
    ("functional", "act"), [(False, "relu"), (True, "relu"), (True, "gelu"), (True, "silu"), (True, "leaky")]
)
def test_reused_and_functional_activations_are_counted_per_use(functional, act):
    model = ReusedReLU(functional, act)
    monitor, groups = _monitor(model, torch.zeros(1, 3, 8, 8))
    summed = next(g for g in groups.values() if "shortcut" in g.members)
    model.train()
    model(torch.randn(4, 3, 8, 8))
    densities = monitor.read()
    first, second = _positive_share(model.first), _positive_share(model.summed)
    assert torch.allclose(densities["conv1"], first, atol=0, rtol=1e-12)
    assert torch.allclose(densities[summed.name], second, atol=0, rtol=1e-12)
    # counting the activation module's outputs instead would mix its two calls: a different figure
    mixed = (first[:5] + second) / 2
    assert not torch.allclose(densities[summed.name], mixed)
    # neither all ones nor all zeros: the sign rule works for smooth activations too
    assert 0.2 < densities["conv1"].mean() < 0.8


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 6, 3, padding=1)
        self.skip = nn.Conv2d(3, 6, 1)
        self.conv_c = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        self.summed = F.relu(self.conv_b(F.relu(self.conv_a(x))) + self.skip(x))
        return self.conv_c(self.summed).mean((2, 3))


def test_residual_coupled_channels_form_one_group_measured_after_the_sum():
    model = Residual()
    monitor, groups = _monitor(model, torch.zeros(1, 3, 6, 6))
    coupled = [g for g in groups.values() if "skip" in g.members]
    assert len(coupled) == 1 and {"conv_b", "skip"} <= set(coupled[0].members)
    model.train()
    model(torch.randn(5, 3, 6, 6))
    assert torch.allclose(monitor.read()[coupled[0].name], _positive_share(model.summed), rtol=1e-12, atol=0)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 3, 1)
        self.head = nn.Conv2d(5, 2, 1)

    def forward(self, x):
        self.joined = F.relu(torch.cat([self.left(x), self.right(x)], 1))
        return self.head(self.joined).mean((2, 3))


def test_concatenated_channels_map_to_their_own_groups():
    model = Concat()
    monitor, _ = _monitor(model, torch.zeros(1, 3, 4, 4))
    model.train()
    model(torch.randn(6, 3, 4, 4))
    densities, expected = monitor.read(), _positive_share(model.joined)
    assert torch.allclose(densities["left"], expected[:2], rtol=1e-12, atol=0)
    assert torch.allclose(densities["right"], expected[2:], rtol=1e-12, atol=0)


class Flattened(nn.Module):
    """Residual-coupled channels read by a linear layer through flatten: features c*4..c*4+3 are channel c."""

    def __init__(self):
        super().__init__()
        self.conv, self.skip = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 3, 1)
        self.fc = nn.Linear(3 * 2 * 2, 2)

    def forward(self, x):
        self.act = F.relu(self.conv(x) + self.skip(x))
        return self.fc(self.act.flatten(1))


def test_linear_after_flatten_folds_spatial_features_into_their_channel():
    model = Flattened()
    monitor, groups = _monitor(model, torch.zeros(1, 1, 2, 2))
    (group,) = groups.values()
    assert [(p.module_name, p.reads_output, len(p.tensor_idxs)) for p in group.probes] == [("fc", False, 12)]
    model.train()
    model(torch.randn(7, 1, 2, 2))
    assert torch.allclose(monitor.read()[group.name], _positive_share(model.act), rtol=1e-12, atol=0)


class PooledChain(nn.Module):
    """conv-BN-ReLU-maxpool-linear: a plain chain is counted before the pooling, at the BN output."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 2)

    def forward(self, x):
        self.act = F.relu(self.bn(self.conv(x)))
        return self.fc(F.max_pool2d(self.act, 4).flatten(1))


def test_plain_chain_is_counted_before_pooling():
    model = PooledChain()
    monitor, groups = _monitor(model, torch.zeros(1, 1, 4, 4))
    assert [(p.module_name, p.reads_output) for p in groups["conv"].probes] == [("bn", True)]
    model.train()
    model(torch.randn(6, 1, 4, 4))
    assert torch.allclose(monitor.read()["conv"], _positive_share(model.act), rtol=1e-12, atol=0)


def test_classifier_output_is_not_a_group():
    model = KnownActivations()
    _, groups = _monitor(model, torch.zeros(1, 1, 2, 2))
    assert "fc" not in groups and set(groups) == {"conv1", "conv2"}


class ChannelsLast(nn.Module):
    """ConvNeXt-style channels-last features read by linear layers, and a LayerNorm over permuted channels."""

    def __init__(self):
        super().__init__()
        self.conv, self.skip = nn.Conv2d(3, 6, 1), nn.Conv2d(3, 6, 1)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 5)
        self.norm_conv, self.norm = nn.Conv2d(5, 7, 1), nn.LayerNorm(7)
        self.head = nn.Linear(7, 2)

    def forward(self, x):
        self.summed = (self.conv(x) + self.skip(x)).permute(0, 2, 3, 1)  # (N, H, W, 6)
        self.hidden = self.fc1(self.summed)  # (N, H, W, 8), GELU follows
        y = self.fc2(F.gelu(self.hidden)).permute(0, 3, 1, 2)
        self.normed = self.norm(self.norm_conv(y).permute(0, 2, 3, 1))  # LayerNorm on (N, H, W, 7)
        return self.head(F.gelu(self.normed).mean((1, 2)))


def test_channels_last_tensors_are_counted_along_their_last_dim():
    model = ChannelsLast()
    monitor, groups = _monitor(model, torch.zeros(1, 3, 5, 4))
    residual = next(g for g in groups.values() if "skip" in g.members)
    assert [(p.module_name, p.channel_dim) for p in residual.probes] == [("fc1", -1)]
    model.train()
    model(torch.randn(3, 3, 5, 4))
    densities = monitor.read()

    def last_dim_share(t):
        return (t > 0).double().mean(dim=tuple(range(t.dim() - 1)))

    assert torch.allclose(densities[residual.name], last_dim_share(model.summed), rtol=1e-12, atol=0)
    assert torch.allclose(densities["fc1"], last_dim_share(model.hidden), rtol=1e-12, atol=0)
    assert torch.allclose(densities["norm_conv"], last_dim_share(model.normed), rtol=1e-12, atol=0)


def test_density_stats_give_the_spread_of_group_means_and_the_near_dead_share():
    from adprune.prune.density import density_stats

    stats = density_stats(
        {
            "a": torch.tensor([0.0, 0.01, 0.5, 0.49], dtype=torch.float64),  # mean 0.25, two near-dead
            "b": torch.tensor([0.9, 0.7], dtype=torch.float64),  # mean 0.8
        }
    )
    assert stats["spread"] == pytest.approx(0.55)
    assert stats["dead_share"] == pytest.approx(2 / 6)
    empty = density_stats({})
    assert math.isnan(empty["spread"]) and math.isnan(empty["dead_share"])


def test_counting_every_kth_step_estimates_the_full_count_within_its_stated_error():
    from adprune.models import build_model

    torch.manual_seed(3)
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.25)
    groups = find_groups(build_graph(model, torch.zeros(1, 3, 16, 16)))
    full, sampled = DensityMonitor(model, groups), DensityMonitor(model, groups, every=4)
    per_batch = DensityMonitor(model, groups)
    batches = []
    model.train()
    for step in range(40):
        model(torch.randn(8, 3, 16, 16) + 0.5 * step / 40)  # densities drift a little, as in training
        batches.append(per_batch.read())
        per_batch.reset()
    assert full.samples_seen == sampled.samples_seen == 320
    exact, estimate = full.read(), sampled.read()
    m, total = 10, 40  # forwards 0, 4, ..., 36 were counted
    for name in exact:
        history = torch.stack([b[name] for b in batches])
        assert torch.allclose(estimate[name], history[::4].mean(0), rtol=0, atol=1e-12)  # the counted ones
        # the group's density (what the plan reads) is within the standard error the docstring states
        means = history.mean(1)
        bound = means.std() / m**0.5 * (1 - m / total) ** 0.5
        assert abs(float(estimate[name].mean() - exact[name].mean())) <= 3 * float(bound)


def test_channels_last_activations_count_the_same_as_contiguous_ones():
    from adprune.prune.density import _positive_counts

    x = torch.randn(3, 5, 4, 6)
    expected = (x > 0).sum((0, 2, 3)).int()
    assert torch.equal(_positive_counts(x, 1, 3 * 4 * 6), expected)
    assert torch.equal(_positive_counts(x.contiguous(memory_format=torch.channels_last), 1, 72), expected)
