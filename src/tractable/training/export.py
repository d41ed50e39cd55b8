"""Weights in the safetensors format, written and read without the ``safetensors`` package.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length ``N``, ``N`` bytes of
JSON mapping every tensor's name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into the data
that follows) plus an optional ``"__metadata__"`` of strings, then the raw little-endian tensor bytes. It holds
tensors only, so it is safe to load from anywhere and readable by other frameworks.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import torch
from torch import Tensor

from ..utils import atomic_write

_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A file that is not valid safetensors, or a tensor that the format cannot hold."""


def save_safetensors(tensors: Mapping[str, Tensor], path: str | Path,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (e.g. a ``state_dict``) to ``path`` in the safetensors format, atomically.

    Args:
        tensors: name → tensor (any device; copied to the CPU).
        path: the file to write.
        metadata: string → string pairs stored in the header (``__metadata__``).

    Raises:
        SafetensorsError: for a dtype the format does not name, or non-string metadata.

    Example:
        >>> import tempfile, pathlib
        >>> import torch
        >>> from tractable import MAF, load_safetensors, save_safetensors
        >>> flow = MAF(2, layers=2, hidden=8)
        >>> path = save_safetensors(flow.state_dict(), pathlib.Path(tempfile.mkdtemp()) / "maf.safetensors",
        ...                         metadata={"model": "maf"})
        >>> tensors, metadata = load_safetensors(path)
        >>> _ = flow.load_state_dict(tensors)
        >>> metadata
        {'model': 'maf'}
    """
    header: dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError(f"expected string metadata, got {dict(metadata)!r}")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise SafetensorsError(f"tensor {name!r} has dtype {t.dtype}, expected one of {list(_DTYPES)}")
        data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        if sys.byteorder != "little":  # pragma: no cover - big-endian hosts only
            data = t.detach().to("cpu").contiguous().numpy().byteswap().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    def write(f: IO[bytes]) -> None:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)

    return atomic_write(path, write)


def load_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``.

    Raises:
        SafetensorsError: when the file is truncated or its header is malformed.

    Example:
        >>> import tempfile, pathlib
        >>> import torch
        >>> from tractable import load_safetensors, save_safetensors
        >>> path = save_safetensors({"w": torch.arange(3.0)}, pathlib.Path(tempfile.mkdtemp()) / "w.safetensors")
        >>> tensors, metadata = load_safetensors(path)
        >>> tensors["w"].tolist(), metadata
        ([0.0, 1.0, 2.0], {})
    """
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise SafetensorsError(f"{str(path)!r} is not a safetensors file: {len(raw)} bytes, expected a header")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise SafetensorsError(f"{str(path)!r} is truncated: header of {n} bytes, file of {len(raw)}")
    try:
        header = json.loads(raw[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{str(path)!r} has a malformed header: {e}") from None
    metadata = header.pop("__metadata__", {}) or {}
    data = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = _NAMES.get(info["dtype"]), info["shape"]
        if dtype is None or not 0 <= begin <= end <= len(data):
            raise SafetensorsError(f"{str(path)!r}: tensor {name!r} has dtype {info['dtype']!r} and offsets "
                                   f"{[begin, end]}, outside the {len(data)} data bytes or unknown")
        if end == begin:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.uint8).view(dtype).reshape(shape)
    return tensors, metadata
