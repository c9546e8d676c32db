"""Model registry: CIFAR-style VGG/ResNet by name, any torchvision classifier as ``tv:NAME``, any timm
model as ``timm:NAME`` (timm is an optional extra: ``pip install 'adprune[timm]'``).

Shared by training (to build a run's model) and the run files (to rebuild a saved one). May import:
torch, torchvision, timm (lazily) and `adprune.errors`; nothing else of adprune.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

from adprune.errors import AdpruneError
from adprune.models.resnet import BLOCKS, ResNet, resnet
from adprune.models.vgg import CFGS, VGG, vgg

__all__ = ["VGG", "ResNet", "build_model", "model_names", "output_layer"]

TV_PREFIX = "tv:"
TIMM_PREFIX = "timm:"


def model_names() -> list[str]:
    """Return the names of our own models; torchvision classifiers are also accepted as ``tv:NAME`` and
    timm models as ``timm:NAME``."""
    return [*CFGS, *BLOCKS]


def build_model(
    name: str, *, in_channels: int, num_classes: int, image_size: int = 32, width: float = 1.0
) -> nn.Module:
    """Build a freshly initialised classifier mapping ``(N, in_channels, S, S)`` to ``(N, num_classes)``.

    ``name`` is one of :func:`model_names` (case-insensitive; ``width`` multiplies every channel
    count, rounded, at least 1) or ``tv:NAME`` for ``torchvision.models.get_model(NAME,
    weights=None, num_classes=num_classes)`` (``width`` must be 1.0), or ``timm:NAME`` for
    ``timm.create_model(NAME, pretrained=False, num_classes=num_classes, in_chans=in_channels)``
    (``width`` 1.0). For torchvision models the first ``nn.Conv2d`` is replaced by one taking
    ``in_channels`` when that is not 3. One eval-mode forward of a
    ``(1, in_channels, image_size, image_size)`` input checks the model accepts that size. Raises
    :class:`AdpruneError` for unknown names or invalid arguments.
    """
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("image_size", image_size)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (0 < width < math.inf):
        raise AdpruneError(f"width must be a positive number (e.g. 1.0 or 0.25), got {width!r}")
    if not isinstance(name, str):
        raise AdpruneError(f"model name must be a string such as 'resnet18', got {name!r}")
    if name.startswith((TV_PREFIX, TIMM_PREFIX)) and width != 1.0:
        raise AdpruneError(
            f"width={width} is only supported by our models {model_names()}; use width=1.0 with {name}"
        )
    if name.startswith(TIMM_PREFIX):
        return _build_timm(
            name[len(TIMM_PREFIX) :], in_channels=in_channels, num_classes=num_classes, image_size=image_size
        )
    if name.startswith(TV_PREFIX):
        return _build_torchvision(
            name[len(TV_PREFIX) :], in_channels=in_channels, num_classes=num_classes, image_size=image_size
        )
    key = name.lower()
    if key in CFGS:
        return vgg(key, in_channels=in_channels, num_classes=num_classes, width=width)
    if key in BLOCKS:
        return resnet(key, in_channels=in_channels, num_classes=num_classes, width=width)
    raise AdpruneError(
        f"unknown model {name!r}: choose one of {', '.join(model_names())}, "
        "a torchvision classifier given as tv:NAME (e.g. tv:resnet50) or a timm model as timm:NAME"
    )


def output_layer(model: nn.Module) -> nn.Module:
    """Return the model's final classification layer, the one a pruner must never narrow.

    Rule: the last ``nn.Linear`` or convolution (any ``nn.Conv*d``) in module registration order.
    Classifiers are registered after the layers feeding them in our models and in torchvision's
    (a Linear head in ResNet, VGG, DenseNet, MobileNet, ViT; SqueezeNet's 1x1 conv head); for all 80
    torchvision 0.29 classifiers it is the last Linear/Conv executed. It needs no example input.
    Raises :class:`AdpruneError` if the model has no such layer.
    """
    last: nn.Module | None = None
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            last = module
    if last is None:
        raise AdpruneError(
            f"{type(model).__name__} has no nn.Linear or nn.Conv layer to serve as the output layer; "
            "give the model a Linear or Conv classifier"
        )
    return last


def module_names(name: str, width: float = 1.0) -> set[str]:
    """The module names of model `name` at `width`, from a build on the meta device (nothing is
    allocated): enough to check options that name modules before any data is read. Raises
    AdpruneError for an unknown model or a width it does not take."""
    with torch.device("meta"):
        model = build_model(name, in_channels=3, num_classes=10, image_size=224, width=width)
    return {module_name for module_name, _ in model.named_modules()}


def _check_positive_int(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdpruneError(f"{what} must be a positive integer, got {value!r}")


def _build_torchvision(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    key = name.lower()
    known = torchvision.models.list_models(module=torchvision.models)
    if key not in known:
        raise AdpruneError(
            f"unknown torchvision classifier tv:{name}: give tv:NAME with NAME from "
            "torchvision.models.list_models(module=torchvision.models) (e.g. tv:resnet50), "
            f"or one of our models {', '.join(model_names())}"
        )
    kwargs: dict[str, object] = {"weights": None, "num_classes": num_classes}
    if key in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    if key.startswith("vit_"):
        patch = int(key.rsplit("_", 1)[1])  # vit_b_16 -> 16
        if image_size % patch:
            raise AdpruneError(
                f"tv:{key} splits images into {patch}x{patch} patches, so image_size must be a multiple "
                f"of {patch}, got {image_size}; resize the images or pick another model"
            )
        kwargs["image_size"] = image_size
    model = torchvision.models.get_model(key, **kwargs)
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    _check_accepts(model, f"tv:{key}", in_channels, image_size)
    return model


def _build_timm(name: str, *, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise AdpruneError(
            f"timm:{name} needs timm, which is not installed: pip install 'adprune[timm]'"
        ) from None
    if not timm.is_model(name):
        raise AdpruneError(
            f"unknown timm model timm:{name}: give timm:NAME with NAME from timm.list_models() "
            "(e.g. timm:resnet18, timm:efficientnet_b0)"
        )
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    _check_accepts(model, f"timm:{name}", in_channels, image_size)
    return model


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first ``nn.Conv2d`` (module order) for an equivalent one taking ``in_channels``."""
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise AdpruneError(
            f"{type(model).__name__} has no nn.Conv2d to adapt to in_channels={in_channels}; use 3 channels"
        )
    qualname, conv = found
    parent_name, _, attr = qualname.rpartition(".")
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=1,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    setattr(model.get_submodule(parent_name), attr, new)


def _check_accepts(model: nn.Module, label: str, in_channels: int, image_size: int) -> None:
    """Run one eval-mode forward so a too-small image size fails here with a clear message."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdpruneError(
            f"{label} cannot take {image_size}x{image_size} inputs ({reason}); "
            "use a larger image_size or another model"
        ) from exc
    finally:
        model.train(was_training)
