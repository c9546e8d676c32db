"""The method on a CUDA GPU: the same counts, widths and outputs as on the CPU, state kept on the
device, and a real energy counter. Skipped without a GPU; `scripts/gpu-check.sh` runs them."""

import copy

import pytest
import torch

from adprune import ADPruner
from adprune.models import build_model
from adprune.train.energy import EnergyMeter

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    model.train()
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def _pruned_on(device: torch.device) -> tuple[ADPruner, torch.nn.Module, torch.optim.Optimizer]:
    """VGG-11 at width 1/4 trained one step on `device` on the same batch, then pruned at once."""
    torch.manual_seed(0)
    model = build_model("vgg11", in_channels=3, num_classes=10, width=0.25).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = ADPruner(model, torch.zeros(2, 3, 32, 32, device=device), optimizer, trigger=[1], fade=0)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    _train_step(model, optimizer, x)
    pruner.epoch_end(1)
    return pruner, model, optimizer


def test_densities_widths_and_outputs_on_the_gpu_match_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 convolutions, as on the CPU
    cpu_pruner, cpu_model, _ = _pruned_on(torch.device("cpu"))
    gpu_pruner, gpu_model, _ = _pruned_on(CUDA)
    # a value within rounding of 0 may fall on either side: 1e-3 is 16 of the 16,384 values a channel has
    assert gpu_pruner.densities == pytest.approx(cpu_pruner.densities, abs=1e-3)
    assert gpu_pruner.widths == cpu_pruner.widths
    x = torch.randn(4, 3, 32, 32)
    cpu_model.eval()
    gpu_model.eval()
    with torch.no_grad():
        assert torch.allclose(gpu_model(x.to(CUDA)).cpu(), cpu_model(x), atol=1e-3, rtol=1e-3)


def test_parameters_and_optimizer_state_stay_on_the_gpu_and_training_goes_on():
    _, model, optimizer = _pruned_on(CUDA)
    for parameter in model.parameters():
        assert parameter.device.type == "cuda"
        buffer = optimizer.state[parameter].get("momentum_buffer")
        assert buffer is None or (buffer.device.type == "cuda" and buffer.shape == parameter.shape)
    before = copy.deepcopy(model.state_dict())
    _train_step(model, optimizer, torch.randn(8, 3, 32, 32, device=CUDA))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nvml_reads_the_energy_of_real_work_or_says_why_not():
    meter = EnergyMeter(CUDA)
    if meter.source is None:
        assert meter.unavailable and ("nvidia-ml-py" in meter.unavailable or "NVML" in meter.unavailable)
        pytest.skip(f"no NVML energy counter: {meter.unavailable}")
    meter.start()
    a = torch.randn(4096, 4096, device=CUDA)
    for _ in range(50):
        a = (a @ a).tanh()
    torch.cuda.synchronize()
    joules = meter.joules()
    assert joules is not None and joules > 0
