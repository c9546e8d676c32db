"""Shared test settings: deterministic, single-threaded torch so the suite behaves the same everywhere."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
