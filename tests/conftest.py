"""Shared test settings: one torch thread (a shared 2-core machine thrashes with more), fixed seed,
and a generated stand-in for Fashion-MNIST that every test reads instead of the real dataset."""

import os

import pytest
import torch
from fake_data import write_fashion_mnist_like

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def fashion_mnist_dir(tmp_path_factory) -> object:
    """The generated Fashion-MNIST files, and `ADPRUNE_DATA` pointing at them for the whole session.

    `ADPRUNE_DATA` is the default data directory, searched before Debian's system copy, so every
    run (in-process or a subprocess, which inherits the environment) reads the generated files
    whether or not the real dataset is installed.
    """
    directory = write_fashion_mnist_like(tmp_path_factory.mktemp("fashion-mnist"))
    previous = os.environ.get("ADPRUNE_DATA")
    os.environ["ADPRUNE_DATA"] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop("ADPRUNE_DATA", None)
    else:
        os.environ["ADPRUNE_DATA"] = previous


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
