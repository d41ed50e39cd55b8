"""Image data sets, read from local files only: scikit-learn's digits, MNIST (IDX files) and CIFAR-10 (pickles).

Nothing is downloaded. The digits (8x8, 17 levels ``0..16``, 1,797 images) ship inside scikit-learn, so they work
offline (install the ``images`` extra); MNIST and CIFAR-10 are read from a directory the user names, in their
standard distribution formats, and a missing file raises a ``FileNotFoundError`` that lists the expected names.

Images are returned as ``uint8`` tensors ``(N, C, H, W)`` of levels ``0..k-1``; convert with ``.float()`` or
``.double()`` for a model (an :class:`~tractable.models.image_flow.ImageFlow` takes them as they are).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
IMAGE_DATASETS = ("digits", "mnist", "cifar10")


@dataclass
class ImageData:
    """A data set of discrete images: ``train`` and ``test`` (``uint8``, ``(N, C, H, W)``), labels, and ``levels``.

    Example:
        >>> from tractable import load_digits
        >>> data = load_digits()  # an ImageData
        >>> data.name, tuple(data.train.shape), tuple(data.test.shape), data.levels, str(data.train.dtype)
        ('digits', (1500, 1, 8, 8), (297, 1, 8, 8), 17, 'torch.uint8')
    """

    name: str
    train: Tensor
    test: Tensor
    levels: int
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The image shape ``(C, H, W)``."""
        return tuple(self.train.shape[1:])  # type: ignore[return-value]


def load_digits(*, test_size: int = 297, seed: int = 0) -> ImageData:
    """scikit-learn's 8x8 digits, 17 levels (``0..16``), split at random (``seed``) into 1,500 / 297 images.

    Raises:
        ImportError: when scikit-learn is not installed (``pip install 'tractable[images]'``).

    Example:
        >>> from tractable import load_digits
        >>> data = load_digits(seed=0)
        >>> len(data.train), len(data.test), data.levels, int(data.train.max())
        (1500, 297, 17, 16)
    """
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set ships with scikit-learn: pip install 'tractable[images]'") from e
    bunch = _load()
    images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    if not 0 < test_size < len(images):
        raise ValueError(f"expected 0 < test_size < {len(images)}, got {test_size}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    test, train = order[:test_size], order[test_size:]
    return ImageData("digits", images[train], images[test], 17, labels[train], labels[test])


def _find(directory: Path, name: str, expected: list[str]) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"missing {name} (or {name}.gz) in {directory}; expected the files {', '.join(expected)} "
        "(nothing is downloaded: place them there yourself)"
    )


def _read_bytes(path: Path) -> bytes:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        return f.read()


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) of unsigned bytes into an array of its stated shape.

    Raises:
        ValueError: for a wrong magic number, a type other than unsigned bytes, or a size mismatch.
    """
    data = _read_bytes(Path(path))
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected magic bytes 00 00, got {data[:2].hex()})")
    kind, ndim = data[2], data[3]
    if kind != 0x08:
        raise ValueError(f"{path}: expected IDX type 0x08 (unsigned byte), got {kind:#04x}")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), file holds {body.size}")
    return body.reshape(shape)


def load_mnist(directory: str | Path) -> ImageData:
    """MNIST from the four standard IDX files in ``directory`` (plain or ``.gz``): 256 levels, ``(N, 1, 28, 28)``.

    Example:
        >>> from tractable import load_mnist
        >>> data = load_mnist("~/data/mnist")  # doctest: +SKIP
        >>> tuple(data.train.shape), data.levels  # doctest: +SKIP
        ((60000, 1, 28, 28), 256)
    """
    directory = Path(directory)
    expected = [n for pair in MNIST_FILES.values() for n in pair]
    arrays = {}
    for split, (images, labels) in MNIST_FILES.items():
        x = read_idx(_find(directory, images, expected))
        y = read_idx(_find(directory, labels, expected))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{directory}: expected {split} images (N, H, W) and N labels, "
                             f"got {x.shape} and {y.shape}")
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return ImageData("mnist", arrays["train"][0], arrays["test"][0], 256, arrays["train"][1], arrays["test"][1])


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2, for Latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}); expected latin1")
    return text.encode("latin1")


#: The only globals a CIFAR-10 batch may name: the numpy array and dtype reconstructors (NumPy 1 and 2 spellings;
#: ``_frombuffer`` for protocol 5) and Latin-1 ``bytes`` of protocol 2. Dicts, lists, strings, bytes and numbers
#: are pickle opcodes and need no global.
CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only what :data:`CIFAR_GLOBALS` admits, so a batch cannot run code (a plain
    ``pickle.load`` calls any global a file names, e.g. ``os.system`` through ``__reduce__``)."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused the global {module}.{name}") from None


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The images ``(N, 3, 32, 32)`` (``uint8``) and labels ``(N,)`` of one CIFAR-10 python batch, read with an
    unpickler that admits only numpy arrays, dicts, lists, strings and numbers.

    Raises:
        ValueError: naming the file, for a file that is not such a pickle (naming a refused global, e.g.
            ``os.system``), or a batch without ``data`` ``(N, 3072)`` and ``N`` ``labels``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeError, MemoryError, OverflowError) as e:
        raise ValueError(f"{str(path)!r}: not a CIFAR-10 python batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{str(path)!r}: expected a CIFAR-10 batch, a dict with b'data' and b'labels', got {keys}")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{str(path)!r}: expected uint8 data and integer labels ({e})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{str(path)!r}: expected data of shape (N, 3072), got {data.shape}")
    if labels.shape != (len(data),):
        raise ValueError(f"{str(path)!r}: expected {len(data)} labels, got shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | Path) -> ImageData:
    """CIFAR-10 from the python pickle batches (``data_batch_1..5``, ``test_batch``): 256 levels, ``(N, 3, 32, 32)``.

    ``directory`` may be the ``cifar-10-batches-py`` folder itself or the folder that holds it. The batches are
    pickles, read by :func:`read_cifar_batch`, which refuses every global but numpy's array reconstructors: a
    tampered batch is an error, not code that runs.

    Example:
        >>> from tractable import load_cifar10
        >>> data = load_cifar10("~/data/cifar-10-batches-py")  # doctest: +SKIP
        >>> tuple(data.train.shape), tuple(data.test.shape), data.levels  # doctest: +SKIP
        ((50000, 3, 32, 32), (10000, 3, 32, 32), 256)
    """
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    expected = [n for names in CIFAR10_FILES.values() for n in names]
    out = {}
    for split, names in CIFAR10_FILES.items():
        xs, ys = [], []
        for name in names:
            path = directory / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"missing {name} in {directory}; expected the CIFAR-10 python batches {', '.join(expected)} "
                    "(nothing is downloaded: place them there yourself)"
                )
            x, y = read_cifar_batch(path)
            xs.append(x)
            ys.append(y)
        out[split] = (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))
    return ImageData("cifar10", out["train"][0], out["test"][0], 256, out["train"][1], out["test"][1])


def load_images(name: str, directory: str | Path | None = None) -> ImageData:
    """The image data set ``name`` (``digits``, ``mnist`` or ``cifar10``); the latter two read from ``directory``.

    Example:
        >>> from tractable import load_images
        >>> data = load_images("digits")  # mnist and cifar10 read a directory: load_images("mnist", "~/data/mnist")
        >>> data.levels, tuple(data.train.shape[1:])
        (17, (1, 8, 8))
    """
    if name == "digits":
        return load_digits()
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image data set {name!r}; expected one of {', '.join(IMAGE_DATASETS)}")
    if directory is None:
        raise ValueError(f"the {name} data set is read from local files: give the directory that holds them")
    return load_mnist(directory) if name == "mnist" else load_cifar10(directory)


__all__ = [
    "CIFAR10_FILES",
    "IMAGE_DATASETS",
    "MNIST_FILES",
    "ImageData",
    "load_cifar10",
    "load_digits",
    "load_images",
    "load_mnist",
    "read_cifar_batch",
    "read_idx",
]
