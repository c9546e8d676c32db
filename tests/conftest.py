"""Shared test settings: one torch thread (a shared 2-core machine thrashes with more), fixed seed."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
