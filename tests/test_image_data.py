"""The image data loaders (issue 4): MNIST IDX files (plain or gzipped), CIFAR-10 pickle batches, both written here
as tiny files in the standard formats, and scikit-learn's digits."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tractable.targets.images import CIFAR10_FILES, MNIST_FILES, load_cifar10, load_images, load_mnist, read_idx


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    sizes = {"train": 5, "test": 3}
    for split, (images, labels) in MNIST_FILES.items():
        write_idx(tmp_path / images, rng.integers(0, 256, (sizes[split], 28, 28), dtype=np.uint8), compress)
        write_idx(tmp_path / labels, rng.integers(0, 10, sizes[split], dtype=np.uint8), compress)
    data = load_images("mnist", tmp_path)
    assert data.train.shape == (5, 1, 28, 28) and data.test.shape == (3, 1, 28, 28) and data.levels == 256
    assert data.train.dtype == torch.uint8 and data.test_labels.shape == (3,)
    raw = read_idx(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if compress else "")))
    assert np.array_equal(raw, data.test[:, 0].numpy())


def test_mnist_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    assert all(name in str(info.value) for pair in MNIST_FILES.values() for name in pair)
    bad = tmp_path / "bad"
    bad.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0")
    with pytest.raises(ValueError, match="unsigned byte"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="holds 2"):
        read_idx(short)


def test_cifar10_pickle_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in CIFAR10_FILES["train"] + CIFAR10_FILES["test"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_cifar10(tmp_path)
    assert data.train.shape == (10, 3, 32, 32) and data.test.shape == (2, 3, 32, 32)
    first = pickle.load(io.BytesIO((folder / "data_batch_1").read_bytes()))[b"data"][0]
    assert np.array_equal(data.train[0].numpy().reshape(-1), first)  # channel-major (R plane, G plane, B plane)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.*data_batch_1, data_batch_2.*test_batch"):
        load_cifar10(folder)


def test_digits() -> None:
    pytest.importorskip("sklearn")
    data = load_images("digits")
    assert data.train.shape == (1500, 1, 8, 8) and data.test.shape == (297, 1, 8, 8)
    assert data.levels == 17 and int(data.train.max()) == 16 and data.shape == (1, 8, 8)
    with pytest.raises(ValueError, match="directory"):
        load_images("mnist")
