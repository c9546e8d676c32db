"""Surgery removes channels physically: outputs of dead channels' removal match, state follows weights."""

import pytest
import torch
from torch import nn

from adprune.models import build_model
from adprune.prune.groups import find_groups
from adprune.prune.selection import channels_to_remove
from adprune.prune.surgery import prune_groups
from adprune.prune.tp_compat import build_graph


def _kill_channels(model: nn.Module, group, channels) -> None:
    """Make `channels` of `group` exactly zero after every activation: BN scale 0, shift very negative."""
    with torch.no_grad():
        for name in group.members:
            module = model.get_submodule(name)
            if isinstance(module, nn.BatchNorm2d):
                module.weight[channels] = 0.0
                module.bias[channels] = -10.0


def _warm_up(model, steps=3, shape=(8, 3, 32, 32)):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(*shape)).square().mean().backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
def test_removing_dead_channels_keeps_outputs(name):
    model = build_model(name, in_channels=3, num_classes=10, width=0.25)
    _warm_up(model)
    graph = build_graph(model, torch.zeros(1, 3, 32, 32))
    groups = find_groups(graph)
    dead = {g.name: list(range(1, g.width, 3)) for g in groups}
    for group in groups:
        _kill_channels(model, group, dead[group.name])
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    prune_groups(model, graph, groups, dead)
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in model.parameters()) < params_before
    widths = {g.name: g.width for g in find_groups(graph)}
    assert widths == {g.name: g.width - len(dead[g.name]) for g in groups}


def test_residual_coupled_layers_keep_equal_widths():
    model = build_model("resnet18", in_channels=3, num_classes=10, width=0.25)
    graph = build_graph(model, torch.zeros(1, 3, 32, 32))
    groups = find_groups(graph)
    stem = next(g for g in groups if g.name == "conv1")
    prune_groups(model, graph, groups, {"conv1": [0, 5, 7]})
    assert model.conv1.out_channels == 13
    assert model.layer1[0].conv2.out_channels == model.layer1[1].conv2.out_channels == 13
    assert model.layer1[0].conv1.in_channels == model.layer2[0].conv1.in_channels == 13
    assert len(stem.members) >= 6
    model(torch.randn(2, 3, 32, 32)).sum().backward()


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam", "adamw"])
def test_optimizer_state_rows_follow_the_kept_channels(optimizer_name):
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.LazyLinear(2)
    )
    model(torch.zeros(1, 3, 8, 8))
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
    }[optimizer_name]
    optimizer = make(model.parameters())
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(5, 3, 8, 8)).square().mean().backward()
        optimizer.step()
    old_w, old_state = (
        model[0].weight.detach().clone(),
        {k: v.clone() for k, v in optimizer.state[model[0].weight].items()},
    )
    old_next_state = {k: v.clone() for k, v in optimizer.state[model[3].weight].items()}
    graph = build_graph(model, torch.zeros(1, 3, 8, 8))
    groups = find_groups(graph)
    prune_groups(model, graph, groups, {"0": [1, 4]}, optimizer)
    kept = [0, 2, 3, 5]
    assert torch.equal(model[0].weight, old_w[kept])
    new_state = optimizer.state[model[0].weight]
    tensor_keys = [k for k, v in old_state.items() if v.dim() > 0]
    assert tensor_keys
    for key in tensor_keys:
        assert torch.equal(new_state[key], old_state[key][kept])
        assert torch.equal(optimizer.state[model[3].weight][key], old_next_state[key][:, kept])
    assert all(p in optimizer.state for p in model.parameters())
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    optimizer.zero_grad()
    model(torch.randn(5, 3, 8, 8)).square().mean().backward()
    optimizer.step()


def test_reinit_gives_fresh_weights_and_state():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    optimizer.step()
    graph = build_graph(model, torch.zeros(1, 3, 6, 6))
    prune_groups(model, graph, find_groups(graph), {"0": [0, 1]}, optimizer, reinit=True)
    assert model[0].out_channels == 4 and model[2].in_channels == 4
    assert len(optimizer.state) == 0


def test_channels_to_remove_drops_the_least_dense():
    densities = torch.tensor([0.9, 0.1, 0.5, 0.1, 0.7])
    assert channels_to_remove(densities, keep=3) == [1, 3]
    assert channels_to_remove(densities, keep=5) == []
    assert channels_to_remove(torch.tensor([0.5, 0.5, 0.5]), keep=1) == [1, 2]


def test_channels_to_remove_in_blocks_removes_the_same_positions_from_every_block():
    # two blocks of three: position densities averaged over the blocks are 0.5, 0.2, 0.8
    densities = torch.tensor([0.9, 0.3, 0.7, 0.1, 0.1, 0.9])
    assert channels_to_remove(densities, keep=4, blocks=2) == [1, 4]
    assert channels_to_remove(densities, keep=2, blocks=2) == [0, 1, 3, 4]
    with pytest.raises(ValueError, match="blocks"):
        channels_to_remove(densities, keep=3, blocks=2)


def test_grouped_conv_keeps_its_groups_after_pruning():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1),
        nn.Flatten(),
        nn.LazyLinear(2),
    )
    model(torch.zeros(1, 3, 4, 4))
    graph = build_graph(model, torch.zeros(1, 3, 4, 4))
    groups = {g.name: g for g in find_groups(graph)}
    assert groups["0"].blocks == groups["2"].blocks == 2
    remove = {
        "0": channels_to_remove(torch.arange(8.0), 4, 2),
        "2": channels_to_remove(torch.arange(8.0), 6, 2),
    }
    assert remove == {"0": [0, 1, 4, 5], "2": [0, 4]}
    with torch.no_grad():  # the channels "0" loses are dead: the grouped conv must read the others as before
        model[0].weight[remove["0"]] = 0.0
        model[0].bias[remove["0"]] = -1.0
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        before = model(x)
    prune_groups(model, graph, list(groups.values()), {"0": remove["0"]})
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6, rtol=0)
    groups = {g.name: g for g in find_groups(graph)}
    prune_groups(model, graph, list(groups.values()), {"2": remove["2"]})
    assert (model[0].out_channels, model[2].in_channels, model[2].out_channels, model[2].groups) == (
        4,
        4,
        6,
        2,
    )
    assert model(x).shape == (2, 2)


def test_units_go_whole_lowest_mean_first_and_a_tied_layer_keeps_one():
    from adprune.prune.selection import units_to_remove

    scores = [0.5, 0.1, 0.1, 0.9, 0.2, 0.2]
    units = [(0,), (1, 2), (3,), (4, 5)]
    assert units_to_remove(scores, 3, units) == [0, 1, 2]  # (4, 5) would overshoot: channel 0 instead
    assert units_to_remove(scores, 2, units) == [1, 2, 4, 5]
    # channels 1, 2, 4, 5 are one grouped layer's: it keeps a unit, so channels 0 and 3 go instead
    assert units_to_remove(scores, 2, units, [{1, 2, 4, 5}]) == [0, 1, 2, 3]
