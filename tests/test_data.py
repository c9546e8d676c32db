"""Dataset readers on tiny files in the real on-disk formats, and the on-device batch loader."""

from __future__ import annotations

import io
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import write_mnist_dir
from PIL import Image

from adprune.errors import AdpruneError
from adprune.train.data import Augment, BatchLoader, crop_flip, dataset_names, default_data_dir, load_dataset
from adprune.train.data import idx as data

# --------------------------------------------------------------------------------------------------
# File writers in the real formats


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


class Py2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as the files on the CIFAR site were written."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_pickle(path: Path, obj: object, protocol: int | str) -> None:
    """`pickle.dump`; protocol "py2" mimics a Python 2 cPickle file with numpy 1.x module names."""
    with path.open("wb") as f:
        if protocol == "py2":
            buffer = io.BytesIO()
            Py2StylePickler(buffer, protocol=2).dump(obj)
            f.write(buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
        else:
            pickle.dump(obj, f, protocol=protocol)


def write_cifar10(directory: Path, protocol: int | str = 2) -> tuple[np.ndarray, list[int]]:
    """Five training batches of two images each and a test batch; returns all training rows/labels."""
    directory.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for i in range(1, 6):
        batch_rows = cifar_rows(2, seed=i)
        batch_labels = [(2 * i) % 10, (2 * i + 1) % 10]
        batch = {b"batch_label": b"training batch", b"labels": batch_labels, b"data": batch_rows}
        write_pickle(directory / f"data_batch_{i}", batch, protocol)
        rows.append(batch_rows)
        labels += batch_labels
    test = {b"labels": [3, 4, 5], b"data": cifar_rows(3, seed=9)}
    write_pickle(directory / "test_batch", test, protocol)
    write_pickle(directory / "batches.meta", {b"label_names": [b"airplane"] * 10}, protocol)
    return np.concatenate(rows), labels


def save_image(
    path: Path, colour: tuple[int, int, int] | int, size: tuple[int, int], mode: str = "RGB"
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


# --------------------------------------------------------------------------------------------------
# Names, directories, errors


def test_dataset_names_are_the_documented_ones():
    assert dataset_names() == ["fashion-mnist", "mnist", "cifar10", "cifar100", "tinyimagenet", "imagefolder"]


def test_unknown_name_lists_the_valid_names(tmp_path):
    with pytest.raises(
        AdpruneError, match=r"unknown dataset 'svhn'; choose one of: fashion-mnist, mnist, cifar10"
    ):
        load_dataset("svhn", tmp_path)


def test_default_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ADPRUNE_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("ADPRUNE_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "adprune"


def test_missing_fashion_mnist_names_every_place_looked(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(AdpruneError) as info:
        load_dataset("fashion-mnist", tmp_path)
    assert str(info.value) == (
        f"fashion-mnist not found in {tmp_path} (looked for train-images-idx3-ubyte[.gz] in {tmp_path}, "
        f"{tmp_path}/FashionMNIST/raw, {tmp_path}/debian); pass --data-dir or --download"
    )


@pytest.mark.parametrize(
    ("name", "wanted"),
    [("mnist", "train-images-idx3-ubyte[.gz]"), ("cifar10", "data_batch_1"), ("cifar100", "train")],
)
def test_missing_dataset_says_how_to_fix(tmp_path, name, wanted):
    with pytest.raises(
        AdpruneError, match=rf"^{name} not found in .*looked for {re.escape(wanted)} in .*--download$"
    ):
        load_dataset(name, tmp_path)


def test_missing_tinyimagenet_points_at_the_archive(tmp_path):
    with pytest.raises(AdpruneError, match=r"tinyimagenet not found .*tiny-imagenet-200\.zip"):
        load_dataset("tinyimagenet", tmp_path)


@pytest.mark.parametrize("subset", [0, -3])
def test_subset_below_one_is_refused(tmp_path, subset):
    with pytest.raises(AdpruneError, match="subset must be at least 1"):
        load_dataset("mnist", tmp_path, subset=subset)


# --------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST


@pytest.mark.parametrize(("layout", "compress"), [(".", True), ("FashionMNIST/raw", False)])
def test_fashion_mnist_pixels_labels_and_padding(tmp_path, layout, compress):
    truth = write_mnist_dir(tmp_path / layout, compress=compress)
    splits = load_dataset("fashion-mnist", tmp_path)
    x, y = splits.train_images, splits.train_labels
    assert x.dtype == torch.uint8 and x.shape == (5, 1, 32, 32) and x.is_contiguous()
    assert y.dtype == torch.int64 and y.tolist() == truth["train_y"].tolist()
    assert torch.equal(x[:, 0, 2:30, 2:30], torch.from_numpy(truth["train_x"]))
    assert x[3, 0, 2, 2] == int(truth["train_x"][3, 0, 0])
    border = x.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.count_nonzero() == 0
    assert torch.equal(splits.test_images[:, 0, 2:30, 2:30], torch.from_numpy(truth["test_x"]))
    assert splits.test_labels.tolist() == truth["test_y"].tolist()
    assert splits.num_classes == 10 and splits.augment == Augment(crop_padding=2, hflip=True)
    assert (splits.in_channels, splits.image_size, splits.input_shape) == (1, 32, (1, 32, 32))
    padded = x.numpy().astype(np.float64) / 255
    assert splits.mean == pytest.approx((padded.mean(),), abs=1e-12)
    assert splits.std == pytest.approx((padded.std(),), abs=1e-12)


def test_mnist_has_no_flip_and_subset_keeps_the_first_samples(tmp_path):
    truth = write_mnist_dir(tmp_path / "MNIST" / "raw")
    splits = load_dataset("mnist", tmp_path, subset=2)
    assert splits.augment == Augment(crop_padding=2, hflip=False)
    assert splits.train_labels.tolist() == truth["train_y"][:2].tolist()
    assert torch.equal(splits.train_images[:, 0, 2:30, 2:30], torch.from_numpy(truth["train_x"][:2]))
    assert splits.test_labels.shape == (3,)
    assert load_dataset("mnist", tmp_path, subset=100).train_labels.shape == (5,)


def test_validation_split_follows_the_subset_and_never_overlaps_training(tmp_path):
    truth = write_mnist_dir(tmp_path / "MNIST" / "raw")  # 5 training images
    splits = load_dataset("mnist", tmp_path, subset=2, val=2)
    assert splits.train_labels.tolist() == truth["train_y"][:2].tolist()
    assert splits.val_labels.tolist() == truth["train_y"][2:4].tolist()
    assert torch.equal(splits.val_images[:, 0, 2:30, 2:30], torch.from_numpy(truth["train_x"][2:4]))
    whole = load_dataset("mnist", tmp_path, val=2)  # without a subset: the last images are held out
    assert whole.train_labels.tolist() == truth["train_y"][:3].tolist()
    assert whole.val_labels.tolist() == truth["train_y"][3:].tolist()
    short = load_dataset("mnist", tmp_path, subset=4, val=2)  # too few images: training gives way
    assert short.train_labels.shape == (3,) and short.val_labels.tolist() == truth["train_y"][3:].tolist()
    assert load_dataset("mnist", tmp_path).val_labels.shape == (0,)
    with pytest.raises(AdpruneError, match="--val-split 5 leaves no training images of the 5"):
        load_dataset("mnist", tmp_path, val=5)


def test_idx_with_a_wrong_magic_number_names_the_file(tmp_path):
    write_mnist_dir(tmp_path, compress=False)
    bad = tmp_path / "train-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x01" + bad.read_bytes()[4:])
    with pytest.raises(AdpruneError, match=f"{bad} is not an IDX file"):
        load_dataset("mnist", tmp_path)


def test_download_uses_torchvision_then_reads_its_idx_files(monkeypatch, tmp_path):
    import torchvision.datasets

    calls = []

    def fake_fashion_mnist(root, train, download):
        calls.append((root, train, download))
        write_mnist_dir(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(data, "_DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    splits = load_dataset("fashion-mnist", tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True)]
    assert splits.train_images.shape == (5, 1, 32, 32)


def test_image_size_resizes_and_scales_the_crop(tmp_path):
    write_mnist_dir(tmp_path)
    splits = load_dataset("mnist", tmp_path, image_size=64)
    assert splits.input_shape == (1, 64, 64) and splits.test_images.shape == (3, 1, 64, 64)
    assert splits.augment == Augment(crop_padding=4, hflip=False)


# --------------------------------------------------------------------------------------------------
# CIFAR


@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
@pytest.mark.parametrize("inside", [True, False])
def test_cifar10_layout_and_labels(tmp_path, protocol, inside):
    rows, labels = write_cifar10(tmp_path / "cifar-10-batches-py", protocol)
    splits = load_dataset("cifar10", tmp_path / "cifar-10-batches-py" if inside else tmp_path)
    x = splits.train_images
    assert x.dtype == torch.uint8 and x.shape == (10, 3, 32, 32) and x.is_contiguous()
    assert splits.train_labels.tolist() == labels
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each 32 rows of 32
    assert x[7, 1, 5, 9] == rows[7, 1024 + 5 * 32 + 9]
    assert torch.equal(x.reshape(10, 3072), torch.from_numpy(rows))
    assert splits.test_labels.tolist() == [3, 4, 5] and splits.test_images.shape == (3, 3, 32, 32)
    assert splits.num_classes == 10 and splits.augment == Augment(crop_padding=4, hflip=True)
    assert splits.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)
    assert splits.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=1e-4)


def test_cifar100_fine_labels(tmp_path):
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    rows = cifar_rows(4, seed=3)
    train = {b"data": rows, b"fine_labels": [99, 0, 42, 7], b"coarse_labels": [19, 0, 1, 2]}
    write_pickle(directory / "train", train, protocol=2)
    write_pickle(directory / "test", {b"data": cifar_rows(2, seed=4), b"fine_labels": [5, 6]}, protocol=2)
    splits = load_dataset("cifar100", tmp_path, subset=3)
    assert splits.num_classes == 100
    assert splits.train_labels.tolist() == [99, 0, 42]
    assert torch.equal(splits.train_images.reshape(3, 3072), torch.from_numpy(rows[:3]))
    assert splits.test_labels.tolist() == [5, 6]


class Evil:
    """Unpickling this runs a shell command, as a poisoned download might."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.target}",)


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar10(directory)
    target = tmp_path / "pwned"
    write_pickle(directory / "data_batch_3", {b"data": Evil(target), b"labels": [1]}, protocol=2)
    with pytest.raises(AdpruneError, match=r"data_batch_3 asks to load (posix|os|nt)\.system.*refusing"):
        load_dataset("cifar10", tmp_path)
    assert not target.exists()


def test_cifar_batch_of_the_wrong_shape_is_refused(tmp_path):
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar10(directory)
    write_pickle(directory / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 2)
    with pytest.raises(AdpruneError, match=r"test_batch has no uint8 'data' array of shape \[N, 3072\]"):
        load_dataset("cifar10", tmp_path)


def test_cifar_download_uses_the_official_archive(monkeypatch, tmp_path):
    import torchvision.datasets.utils

    calls = []

    def fake_download(url, download_root, md5):
        calls.append((url, download_root, md5))
        write_cifar10(Path(download_root) / "cifar-10-batches-py")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    splits = load_dataset("cifar10", tmp_path, download=True)
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert calls == [(url, str(tmp_path), "c58f30108f718f92721af3b95e74349a")]
    assert splits.train_labels.shape == (10,)


# --------------------------------------------------------------------------------------------------
# Folder datasets

TINY_COLOURS = {"n01443537": (200, 30, 40), "n01629819": (20, 180, 60), "n01641577": (10, 20, 230)}


def write_tiny(root: Path) -> None:
    """A tiny-imagenet-200 folder: 3 classes x 2 JPEGs (one grayscale), 3 validation images."""
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("n01641577\nn01443537\nn01629819\n")  # deliberately unsorted
    for wnid, colour in TINY_COLOURS.items():
        for i in range(2):
            save_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour, (64, 64))
    save_image(root / "train" / "n01443537" / "images" / "n01443537_2.JPEG", 128, (64, 64), mode="L")
    annotations = []
    for i, wnid in enumerate(["n01641577", "n01443537", "n01641577"]):
        save_image(root / "val" / "images" / f"val_{i}.JPEG", TINY_COLOURS[wnid], (64, 64))
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")


@pytest.mark.parametrize("point_at_folder", [True, False])
def test_tinyimagenet(tmp_path, point_at_folder):
    write_tiny(tmp_path / "tiny-imagenet-200")
    splits = load_dataset("tinyimagenet", tmp_path / "tiny-imagenet-200" if point_at_folder else tmp_path)
    x, y = splits.train_images, splits.train_labels
    assert x.dtype == torch.uint8 and x.shape == (7, 3, 64, 64) and x.is_contiguous()
    # labels follow sorted wnids; samples are ordered round-robin over the classes
    assert y.tolist() == [0, 1, 2, 0, 1, 2, 0]
    wnids = sorted(TINY_COLOURS)
    for image, label in zip(x[:6], y[:6], strict=True):
        expected = torch.tensor(TINY_COLOURS[wnids[label]], dtype=torch.int16).view(3, 1, 1)
        assert (image.to(torch.int16) - expected).abs().max() <= 4  # JPEG is lossy
    assert (x[6].to(torch.int16) - 128).abs().max() <= 2  # grayscale became three equal channels
    assert splits.test_labels.tolist() == [2, 0, 2] and splits.test_images.shape == (3, 3, 64, 64)
    assert splits.num_classes == 3 and splits.augment == Augment(crop_padding=8, hflip=True)


def test_tinyimagenet_subset_is_class_balanced(tmp_path):
    write_tiny(tmp_path)
    splits = load_dataset("tinyimagenet", tmp_path, subset=3, image_size=32)
    assert splits.train_labels.tolist() == [0, 1, 2]
    assert splits.input_shape == (3, 32, 32) and splits.augment.crop_padding == 4


@pytest.mark.parametrize("test_folder", ["val", "test"])
def test_imagefolder(tmp_path, test_folder):
    save_image(tmp_path / "train" / "cat" / "a.png", (255, 0, 0), (40, 20))
    save_image(tmp_path / "train" / "cat" / "b.PNG", (250, 0, 5), (16, 16))
    save_image(tmp_path / "train" / "dog" / "x.png", (0, 0, 255), (17, 33))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    save_image(tmp_path / test_folder / "dog" / "y.png", (0, 0, 255), (16, 16))
    splits = load_dataset("imagefolder", tmp_path, image_size=16)
    assert splits.train_labels.tolist() == [0, 1, 0] and splits.test_labels.tolist() == [1]
    assert splits.train_images.shape == (3, 3, 16, 16) and splits.test_images.shape == (1, 3, 16, 16)
    assert torch.equal(
        splits.train_images[0], torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 16, 16)
    )
    assert splits.num_classes == 2 and splits.augment == Augment(crop_padding=2, hflip=True)
    assert splits.std[1] == pytest.approx(1 / 255)  # constant green channel: std floored


def test_imagefolder_needs_an_image_size(tmp_path):
    with pytest.raises(AdpruneError, match=r"imagefolder needs an image size \(--image-size"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_with_a_corrupt_image_names_it(tmp_path):
    save_image(tmp_path / "train" / "cat" / "a.png", (255, 0, 0), (8, 8))
    (tmp_path / "train" / "cat" / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "val").mkdir()
    with pytest.raises(AdpruneError, match=r"cannot read image .*bad\.jpg"):
        load_dataset("imagefolder", tmp_path, image_size=8)


# --------------------------------------------------------------------------------------------------
# BatchLoader


def make_loader(n: int = 10, batch_size: int = 4, **kwargs) -> BatchLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    labels = torch.arange(n, dtype=torch.int64)
    return BatchLoader(images, labels, batch_size=batch_size, mean=(0.0,), std=(1 / 255,), **kwargs)


def epoch_labels(loader: BatchLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    return [label for _, y in loader for label in y.tolist()]


def test_train_epoch_visits_every_sample_once_in_a_seeded_order():
    loader = make_loader(10, 4, train=True, seed=3)
    first = epoch_labels(loader, 1)
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert epoch_labels(loader, 1) == first
    assert epoch_labels(make_loader(10, 4, train=True, seed=3), 1) == first
    assert epoch_labels(loader, 2) != first
    assert epoch_labels(make_loader(10, 4, train=True, seed=4), 1) != first


def test_images_travel_with_their_labels():
    loader = make_loader(10, 3, train=True)
    for x, y in loader:
        assert torch.equal(x[:, 0, 0, 0], y.float())  # pixel value == index, std = 1/255


def test_eval_order_is_the_dataset_order_without_augmentation():
    loader = make_loader(10, 4, augment=Augment(2, True))
    assert epoch_labels(loader, 5) == list(range(10))
    x, _ = next(iter(loader))
    assert torch.equal(x[:, 0], torch.arange(4.0).view(4, 1, 1).expand(4, 4, 4))


def test_len_and_drop_last():
    assert len(make_loader(10, 4)) == 3 and make_loader(10, 4).num_samples == 10
    dropped = make_loader(10, 4, train=True, drop_last=True)
    assert len(dropped) == 2 and dropped.num_samples == 10
    assert [y.shape[0] for _, y in dropped] == [4, 4]
    assert [y.shape[0] for _, y in make_loader(10, 4)] == [4, 4, 2]
    assert len(make_loader(8, 4, drop_last=True)) == 2


def test_normalisation_of_a_known_pixel():
    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    images[1, :, 1, 0] = torch.tensor([0, 128, 255], dtype=torch.uint8)
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.3, 0.4)
    loader = BatchLoader(images, torch.zeros(2, dtype=torch.int64), batch_size=2, mean=mean, std=std)
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (2, 3, 2, 2)
    expected = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), mean, std, strict=True)]
    torch.testing.assert_close(x[1, :, 1, 0], torch.tensor(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]))


def test_channels_last_output():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    loader = BatchLoader(
        images,
        torch.zeros(4, dtype=torch.int64),
        batch_size=4,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        channels_last=True,
    )
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, (images.float() / 255 - 0.5) / 0.5)


@pytest.mark.parametrize("padding", [1, 3])
def test_random_crop_zeros_only_within_padding_of_the_border(padding):
    n, size = 64, 12
    images = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    loader = BatchLoader(
        images,
        torch.zeros(n, dtype=torch.int64),
        batch_size=16,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
        train=True,
        augment=Augment(padding, False),
    )
    loader.set_epoch(7)
    batches = torch.cat([x for x, _ in loader])
    zero = batches == 0
    assert torch.all((batches == 0) | (batches == 1))
    inner = zero[:, :, padding : size - padding, padding : size - padding]
    assert not inner.any()
    assert zero.any()  # some sample was shifted
    per_sample = zero.flatten(1).any(1)
    assert not per_sample.all()  # the identity crop (offset = padding) also occurs in 64 draws


def test_crop_flip_matches_slicing_and_flip():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 2, 6, 7), dtype=torch.uint8, generator=generator)
    padding = 2
    top = torch.randint(0, 2 * padding + 1, (20,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (20,), generator=generator)
    flip = torch.rand(20, generator=generator) < 0.5
    out = crop_flip(images, padding, top, left, flip)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    for i in range(20):
        crop = padded[i, :, top[i] : top[i] + 6, left[i] : left[i] + 7]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    centre = torch.full((20,), padding)
    assert torch.equal(
        crop_flip(images, padding, centre, centre, torch.ones(20, dtype=torch.bool)),
        torch.flip(images, dims=[3]),
    )


def test_loader_flip_gives_the_image_or_its_mirror():
    asymmetric = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    images = asymmetric.expand(40, 1, 4, 4).contiguous()
    loader = BatchLoader(
        images,
        torch.zeros(40, dtype=torch.int64),
        batch_size=40,
        mean=(0.0,),
        std=(1 / 255,),
        train=True,
        augment=Augment(0, True),
    )
    x, _ = next(iter(loader))
    original, mirrored = asymmetric.float()[0], torch.flip(asymmetric, dims=[3]).float()[0]
    is_original = (x == original).flatten(1).all(1)
    is_mirrored = (x == mirrored).flatten(1).all(1)
    assert torch.all(is_original ^ is_mirrored)
    assert is_original.any() and is_mirrored.any()


def test_loader_rejects_bad_arguments():
    images, labels = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(AdpruneError, match="batch_size must be at least 1"):
        BatchLoader(images, labels, batch_size=0, mean=(0.0,), std=(1.0,))
    with pytest.raises(AdpruneError, match="mean and std need 1 values"):
        BatchLoader(images, labels, batch_size=2, mean=(0.0, 0.0), std=(1.0,))
    with pytest.raises(AdpruneError, match="uint8 images"):
        BatchLoader(images.float(), labels, batch_size=2, mean=(0.0,), std=(1.0,))
    with pytest.raises(AdpruneError, match="epoch must be non-negative"):
        BatchLoader(images, labels, batch_size=2, mean=(0.0,), std=(1.0,)).set_epoch(-1)
