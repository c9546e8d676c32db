"""The peer methods' machinery: weight importances, width schedules, parameter targets, uniform widths."""

import copy
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from adprune import AdpruneError, ADPruner
from adprune.cli import main
from adprune.models import build_model
from adprune.prune.cost import count_parameters
from adprune.prune.groups import find_groups
from adprune.prune.importance import weight_scores
from adprune.prune.surgery import shrink_to_widths
from adprune.prune.targets import fit_widths, parameters_at, ranked_widths, uniform_widths
from adprune.prune.tp_compat import build_graph
from adprune.prune.widths import DensityPlan, ParameterTarget, WidthSchedule

EXAMPLE = torch.zeros(2, 3, 32, 32)


def _vgg(width: float = 0.125) -> nn.Module:
    return build_model("vgg11", in_channels=3, num_classes=10, width=width)


def _train_forward(model: nn.Module) -> None:
    model.train()
    model(torch.randn(4, 3, 32, 32)).square().mean().backward()


def test_uniform_widths_scale_every_group_alike_within_bounds():
    widths = {"a": 64, "b": 10, "c": 6}
    assert uniform_widths(widths, 0.5, min_channels=4) == {"a": 32, "b": 5, "c": 4}
    assert uniform_widths(widths, 0.0, min_channels=4) == {"a": 4, "b": 4, "c": 4}
    assert uniform_widths(widths, 1.0) == widths
    assert uniform_widths({"g": 24}, 0.3, blocks={"g": 4}) == {"g": 8}  # round(7.2) = 7, up to 8


def test_ranked_widths_keep_the_globally_highest_scores():
    scores = {"a": torch.tensor([0.9, 0.1, 0.8]), "b": torch.tensor([0.2, 0.7, 0.3, 0.6])}
    assert ranked_widths(scores, 3 / 7) == {"a": 2, "b": 1}  # 0.9, 0.8, 0.7
    assert ranked_widths(scores, 5 / 7) == {"a": 2, "b": 3}  # + 0.6, 0.3
    assert ranked_widths(scores, 0.0, min_channels=2) == {"a": 2, "b": 2}
    assert ranked_widths(scores, 1.0) == {"a": 3, "b": 4}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=12), min_size=1, max_size=5),
    st.integers(0, 80),
)
def test_fit_widths_finds_the_closest_reachable_count(score_lists, target):
    """With parameters = total channels, no keep fraction gets closer to the target than the fit."""
    scores = {f"g{i}": torch.tensor(s) for i, s in enumerate(score_lists)}
    total = sum(len(s) for s in score_lists)

    def count(widths):
        return sum(widths.values())

    found = fit_widths(target, lambda keep: ranked_widths(scores, keep), count)
    best = min(abs(count(ranked_widths(scores, k / total)) - target) for k in range(total + 1))
    assert abs(count(found) - target) == best


def test_parameters_at_counts_a_shrunk_copy_and_leaves_the_model_alone():
    model = _vgg()
    groups = find_groups(build_graph(model, EXAMPLE))
    widths = {g.name: max(1, g.width // 3) for g in groups}
    before = copy.deepcopy(model.state_dict())
    shrunk = _vgg()
    shrink_to_widths(shrunk, EXAMPLE, widths)
    assert parameters_at(model, EXAMPLE, widths) == count_parameters(shrunk) < count_parameters(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_weight_scores_read_filter_l1_norms_and_batchnorm_scales():
    model = _vgg()
    graph = build_graph(model, EXAMPLE)
    group = find_groups(graph)[1]
    conv, bn = (model.get_submodule(name) for name in group.members[:2])
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1, 1, group.width))
    assert torch.allclose(weight_scores(graph, group, "l1"), conv.weight.abs().flatten(1).sum(1).double())
    assert torch.allclose(weight_scores(graph, group, "bn_scale"), bn.weight.abs().double())


def test_l1_importance_removes_the_filters_with_the_smallest_norms():
    model = _vgg()
    pruner = ADPruner(
        model, EXAMPLE, trigger=[1], widths=DensityPlan(min_channels=1), importance="l1", fade=0
    )
    first = pruner.groups[0]
    conv = model.get_submodule(first.name)
    with torch.no_grad():
        conv.weight.mul_(torch.arange(1, first.width + 1, dtype=torch.float32).view(-1, 1, 1, 1))
    keep = conv.weight.detach()[first.width // 2 :].clone()  # the largest norms
    _train_forward(model)
    pruner.prune(1, {g.name: torch.full((g.width,), 0.5) for g in pruner.groups})
    assert torch.equal(model.get_submodule(first.name).weight.detach(), keep)


def _group_widths(model: nn.Module) -> dict[str, int]:
    return {g.name: g.width for g in find_groups(build_graph(model, EXAMPLE))}


def test_a_width_schedule_sets_exact_widths_then_stops():
    model = _vgg()
    dense = _group_widths(model)
    names = list(dense)
    first, last = names[0], names[-1]
    pruner = ADPruner(model, EXAMPLE, widths=WidthSchedule({2: {first: 3, last: 5}}), max_prunes=1, fade=0)
    for epoch in (1, 2):
        _train_forward(model)
        pruner.epoch_end(epoch)
    assert [e.epoch for e in pruner.events] == [2] and pruner.finished
    assert pruner.widths == {**dense, first: 3, last: 5}


def test_a_width_schedule_that_cannot_work_is_refused_at_once():
    model = _vgg()
    name, width = next(iter(_group_widths(model).items()))
    with pytest.raises(AdpruneError, match=f"{width + 1} channels in '{name}' at epoch 1, but the group has"):
        ADPruner(model, EXAMPLE, widths=WidthSchedule({1: {name: width + 1}}))
    with pytest.raises(AdpruneError, match="'nothing' at epoch 3, but the group does not exist"):
        ADPruner(model, EXAMPLE, widths=WidthSchedule({3: {"nothing": 1}}))


def test_a_parameter_target_is_met_by_one_global_ranking():
    model = _vgg(0.25)
    target = count_parameters(model) // 10
    pruner = ADPruner(
        model, EXAMPLE, trigger=[1], widths=ParameterTarget(target), importance="bn_scale", fade=0
    )
    _train_forward(model)
    pruner.epoch_end(1)
    got = pruner.events[0].params_after
    # one channel of the widest group more or less moves the count by at most its fan-in and fan-out
    widest = max(pruner.events[0].widths_before.values())
    assert abs(got - target) <= 2 * 9 * widest + 4
    assert got == count_parameters(model)


@pytest.mark.parametrize(
    ("files", "args", "fragment"),
    [
        ({}, ["--width-schedule", "{tmp}/none.json"], "none.json is not a file"),
        ({"w.json": {"features.0": "x"}}, ["--initial-widths", "{tmp}/w.json"], "must be of type dict"),
        ({"s.json": {"x": {"features.0": 2}}}, ["--width-schedule", "{tmp}/s.json"], "schedule epoch 'x'"),
        ({"s.json": {"9": {"features.0": 2}}}, ["--width-schedule", "{tmp}/s.json"], "schedule epoch '9'"),
        ({}, ["--target-params", "1000", "--prune", "none"], "needs --prune adp"),
        ({}, ["--target-params", "0"], "--target-params must be at least 1"),
        ({}, ["--bn-l1", "-1"], "--bn-l1 must be in [0, 1"),
        ({}, ["--importance", "taylor"], "invalid choice: 'taylor'"),
        ({"w.json": {"nope": 3}}, ["--initial-widths", "{tmp}/w.json"], "model does not have: nope"),
        ({}, ["--start-from", "{tmp}/absent"], "--start-from {tmp}/absent: no summary.json there"),
        (
            {"w.json": {"features.0": 2}},
            ["--start-from", "{tmp}", "--initial-widths", "{tmp}/w.json"],
            "give --importance l1 or bn_scale (got density)",
        ),
    ],
)
def test_bad_peer_method_options_are_one_line_and_exit_2(tmp_path, capsys, files, args, fragment):
    for name, obj in files.items():
        (tmp_path / name).write_text(json.dumps(obj))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = main(["train", "--subset", "64", "--epochs", "3", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment.replace("{tmp}", str(tmp_path)) in err[0], err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_shrinking_a_trained_model_by_l1_keeps_the_largest_filters_and_their_weights():
    torch.manual_seed(3)
    model = _vgg()
    nn.init.uniform_(model.features[1].weight)
    original = dict(copy.deepcopy(model).named_modules())
    graph = build_graph(model, EXAMPLE)
    norms = {g.name: weight_scores(graph, g, "l1") for g in find_groups(graph)}
    shrink_to_widths(model, EXAMPLE, {"features.0": 3, "features.4": 5}, by="l1")
    kept0 = sorted(torch.topk(norms["features.0"], 3).indices.tolist())
    kept4 = sorted(torch.topk(norms["features.4"], 5).indices.tolist())
    assert kept0 != [0, 1, 2]  # not simply the first channels
    modules = dict(model.named_modules())
    assert torch.equal(modules["features.0"].weight, original["features.0"].weight[kept0])
    assert torch.equal(modules["features.1"].weight, original["features.1"].weight[kept0])
    assert torch.equal(modules["features.4"].weight, original["features.4"].weight[kept4][:, kept0])
    assert torch.equal(modules["features.8"].weight, original["features.8"].weight[:, kept4])


def test_entropy_keeps_the_channels_that_fire_about_half_the_time():
    from adprune.prune.importance import firing_entropy

    entropy = firing_entropy(torch.tensor([0.0, 0.5, 1.0, 0.11, 0.89], dtype=torch.float64))
    assert entropy[1] == 1.0 and entropy[0] < 1e-9 and entropy[2] < 1e-9
    assert torch.isclose(entropy[3], entropy[4]) and 0.49 < float(entropy[3]) < 0.51  # H(0.11) = 0.4999...
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.125)
    pruner = ADPruner(model, EXAMPLE, trigger=[], widths=DensityPlan(min_channels=1), importance="entropy")
    first = pruner.groups[0]
    densities = {g.name: torch.full((g.width,), 0.5, dtype=torch.float64) for g in pruner.groups}
    # the first group: half its channels always on, a quarter never on, a quarter half the time
    w = first.width  # 8
    assert w == 8
    densities[first.name] = torch.tensor([0.95] * 4 + [0.0] * 2 + [0.5] * 2, dtype=torch.float64)
    before = model.get_submodule(first.name).weight.detach().clone()
    pruner.prune(0, densities)
    # the plan keeps ceil(0.6 * 8) = 5: the two channels firing half the time (1 bit), then three of the
    # nearly always-on ones (0.29 bits; ties go from the highest index): 0, 1, 2; the dead ones go
    assert pruner.events[0].widths_after[first.name] == 5
    assert torch.equal(model.get_submodule(first.name).weight.detach(), before[[0, 1, 2, 6, 7]])
