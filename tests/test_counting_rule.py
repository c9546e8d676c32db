"""The counting rule, recounted by hand on real architectures: a group's density is the share of
non-zero activations the next layers read from it, after the activation and before any pooling,
each tensor once; tensors read only through pooling are not counted, and channels read with no
activation in between (a linear bottleneck) are not pruned by density at all.

Each expected density is computed from activation tensors picked by hand from the architecture
(hooks on its ReLU modules or its blocks), not from the monitor's probes."""

import torch
import torchvision
from torch import nn

from adprune import ADPruner
from adprune.models import build_model
from adprune.prune.groups import find_groups

SIZE = 32


def _capture(modules: dict[str, nn.Module]) -> dict[str, list[torch.Tensor]]:
    """Record every output of the given modules (a module called twice records twice)."""
    seen = {name: [] for name in modules}
    for name, module in modules.items():
        module.register_forward_hook(lambda m, i, out, name=name: seen[name].append(out.detach().clone()))
    return seen


def _share(tensors: list[torch.Tensor], channels: slice = slice(None)) -> torch.Tensor:
    """Per-channel share of non-zero values over all `tensors` together (channels along dim 1)."""
    positives = sum((t[:, channels] > 0).double().sum((0, 2, 3)) for t in tensors)
    values = sum(t[:, channels][:, 0].numel() for t in tensors)
    return positives / values


def _densities(model: nn.Module, pruner: ADPruner, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    model(x)
    return pruner.monitor.read()


def test_torchvision_resnet18_counts_the_residual_stream_after_its_relu_not_through_pooling():
    model = torchvision.models.resnet18(num_classes=10)
    pruner = ADPruner(model, torch.zeros(2, 3, SIZE, SIZE), check=False)
    blocks = _capture({f"layer{s}.{b}": model.get_submodule(f"layer{s}.{b}") for s in (1, 4) for b in (0, 1)})
    densities = _densities(model, pruner, torch.randn(4, 3, SIZE, SIZE))
    # the stem's channels are the stage-1 stream: layer1.0.conv1 reads them through the max-pool (not
    # counted); layer1.1 reads layer1.0's output, layer2.0's conv1 and shortcut both read layer1.1's (once)
    expected = _share([blocks["layer1.0"][0], blocks["layer1.1"][0]])
    assert torch.allclose(densities["conv1"], expected, rtol=1e-12, atol=0)
    # the last stage: layer4.1 reads layer4.0's output; the classifier reads layer4.1's only through
    # global average pooling, which makes every channel look active, so that one is not counted
    stage4 = next(name for name in pruner.widths if name.startswith("layer4") and "downsample" in name)
    assert torch.allclose(densities[stage4], _share(blocks["layer4.0"]), rtol=1e-12, atol=0)


def test_cifar_resnet18_counts_its_stem_and_streams_after_each_relu():
    model = build_model("resnet18", in_channels=3, num_classes=10, width=0.25)
    pruner = ADPruner(model, torch.zeros(2, 3, SIZE, SIZE), check=False)
    stem = _capture({"relu": model.relu})
    blocks = _capture({f"layer{s}.{b}": model.get_submodule(f"layer{s}.{b}") for s in (1, 2) for b in (0, 1)})
    inner = _capture({"layer2.0": model.layer2[0].relu})  # one ReLU called twice: after bn1, after the sum
    densities = _densities(model, pruner, torch.randn(4, 3, SIZE, SIZE))
    # no max-pool: the stem's ReLU output is read by layer1.0, and the stage-1 stream by layer1.1 and
    # (once, though its conv1 and shortcut both read it) by layer2.0
    expected = _share([stem["relu"][0], blocks["layer1.0"][0], blocks["layer1.1"][0]])
    assert torch.allclose(densities["conv1"], expected, rtol=1e-12, atol=0)
    stage2 = next(g.name for g in pruner.groups if "layer2.0.shortcut.0" in g.members)
    expected = _share([blocks["layer2.0"][0], blocks["layer2.1"][0]])
    assert torch.allclose(densities[stage2], expected, rtol=1e-12, atol=0)
    # a block's inner chain (conv1, bn1) is counted where its ReLU fires first
    assert torch.allclose(densities["layer2.0.conv1"], _share(inner["layer2.0"][:1]), rtol=1e-12, atol=0)


def test_mobilenet_v2_counts_expansions_after_relu6_and_leaves_linear_bottlenecks_alone():
    model = torchvision.models.mobilenet_v2(num_classes=10)
    pruner = ADPruner(model, torch.zeros(2, 3, SIZE, SIZE), check=False)
    block = model.features[2].conv  # expand 1x1 (ReLU6), depthwise 3x3 (ReLU6), project 1x1 (linear)
    acts = _capture({"expand": block[0][2], "depthwise": block[1][2]})
    densities = _densities(model, pruner, torch.randn(4, 3, SIZE, SIZE))
    # the expansion's channels (one group with the depthwise conv) are read through ReLU6 twice: by the
    # depthwise conv and by the projection
    expected = _share([acts["expand"][0], acts["depthwise"][0]])
    assert torch.allclose(densities["features.2.conv.1.0"], expected, rtol=1e-12, atol=0)
    # the projection's output (a stream it sums into with features.3's) is read by the next expansions
    # with no activation in between: left alone
    (projection,) = [g for g in find_groups(pruner.graph) if "features.2.conv.2" in g.members]
    assert "linear bottleneck" in pruner.skipped[projection.name] and projection.name not in densities


def test_densenet121_counts_a_layers_new_channels_in_every_later_reader_of_the_concatenation():
    model = torchvision.models.densenet121(num_classes=10)
    pruner = ADPruner(model, torch.zeros(2, 3, SIZE, SIZE), check=False)
    block = model.features.denseblock1
    readers = {f"layer{k}": block.get_submodule(f"denselayer{k}").relu1 for k in range(2, 7)}
    readers["transition"] = model.features.transition1.relu
    acts = _capture(readers)
    densities = _densities(model, pruner, torch.randn(4, 3, SIZE, SIZE))
    # denselayer1 appends 32 channels after the 64 of the stem: channels 64..95 of every later input
    expected = _share([acts[name][0] for name in readers], slice(64, 96))
    assert torch.allclose(densities["features.denseblock1.denselayer1.conv2"], expected, rtol=1e-12, atol=0)
