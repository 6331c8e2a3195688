"""Raw tensor files: the transport of kernel weights and recorded frames to the Python-free driver.

The C++ driver (cpp/tools/framegate_driver.cc) has no ONNX or protobuf parser, so its weights
reach it in this small format, written from the bundle's ONNX initializers (the single source of
truth) under the same names. The format (version 1; cpp/tools/raw_tensors.h is the reference):

    magic "FGTENSOR" | u32 version | u32 count | count records:
      u32 name_bytes | name (UTF-8) | u32 dtype (1 float32, 2 float64, 3 int64, 4 uint8)
      | u32 ndim | ndim x u64 dims | data (row-major)
    all little-endian, no padding, nothing after the last record.

``model_tensors`` adds the kernel configs the driver needs beside the weights
(cpp/tools/kernel_weights.h): ``gated.config.*`` and ``global_cnn.config.*`` scalars.
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from framegate.kernels.gated_encoder import ARBITRATORS, GatedEncoderConfig
from framegate.kernels.global_cnn_state import SQUEEZE_MODES, GlobalCnnConfig

MAGIC = b"FGTENSOR"
VERSION = 1
DTYPES: dict[int, np.dtype] = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i8"), 4: np.dtype("u1")}
CODES = {dtype: code for code, dtype in DTYPES.items()}
MAX_NAME_BYTES = 1024
MAX_DIMS = 8
MAX_DIM = 1 << 40  # per dimension, as cpp/tools/raw_tensors.cc's reader enforces
GATED_CONFIG_KEYS = ("d_model", "num_heads", "ff_dim", "num_layers", "left_context", "joiner_dim", "max_rows",
                     "arbitrator_kernel", "arbitrator_hidden")


class RawTensorError(ValueError):
    """A raw tensor file that is not well formed; the message names the file and the field."""


def write_raw_tensors(path: Path, tensors: Mapping[str, np.ndarray]) -> Path:
    """Write `tensors` (float32, float64, int64 or uint8 arrays of any shape) at `path`."""
    parts = [MAGIC, struct.pack("<II", VERSION, len(tensors))]
    for name, value in tensors.items():
        array = np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if dtype not in CODES:
            raise RawTensorError(f"tensor {name!r}: dtype {array.dtype} is not one of float32, float64, int64, uint8")
        encoded = name.encode("utf-8")
        if not 1 <= len(encoded) <= MAX_NAME_BYTES or array.ndim > MAX_DIMS or max(array.shape, default=0) > MAX_DIM:
            raise RawTensorError(f"tensor {name!r}: name of 1 to {MAX_NAME_BYTES} bytes, at most {MAX_DIMS} dims "
                                 f"of at most 2**40 each")
        parts += [struct.pack("<I", len(encoded)), encoded, struct.pack("<II", CODES[dtype], array.ndim),
                  struct.pack(f"<{array.ndim}Q", *array.shape), np.ascontiguousarray(array, dtype=dtype).tobytes()]
    path = Path(path)
    path.write_bytes(b"".join(parts))
    return path


def read_raw_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the file at `path`, by name; RawTensorError names what is malformed."""
    data = Path(path).read_bytes()
    offset = 0

    def take(size: int, what: str) -> bytes:
        nonlocal offset
        if size > len(data) - offset:
            raise RawTensorError(f"{path}: truncated: {what} needs {size} bytes, {len(data) - offset} left "
                                 f"(at byte {offset})")
        offset += size
        return data[offset - size:offset]

    if take(len(MAGIC), "magic") != MAGIC:
        raise RawTensorError(f"{path}: not a framegate raw tensor file (magic is not FGTENSOR)")
    version, count = struct.unpack("<II", take(8, "header"))
    if version != VERSION:
        raise RawTensorError(f"{path}: format version {version}, this reader knows {VERSION}")
    tensors: dict[str, np.ndarray] = {}
    for index in range(count):
        (name_bytes,) = struct.unpack("<I", take(4, f"tensor #{index} name length"))
        if not 1 <= name_bytes <= MAX_NAME_BYTES:
            raise RawTensorError(f"{path}: tensor #{index}: name length {name_bytes}")
        name = take(name_bytes, f"tensor #{index} name").decode("utf-8", errors="replace")
        if name in tensors:
            raise RawTensorError(f"{path}: tensor {name!r} appears twice")
        code, ndim = struct.unpack("<II", take(8, f"tensor {name!r} dtype and ndim"))
        if code not in DTYPES or ndim > MAX_DIMS:
            raise RawTensorError(f"{path}: tensor {name!r}: dtype code {code}, {ndim} dims")
        shape = struct.unpack(f"<{ndim}Q", take(8 * ndim, f"tensor {name!r} dims"))
        if max(shape, default=0) > MAX_DIM:
            raise RawTensorError(f"{path}: tensor {name!r}: a dimension above 2**40 in {shape}")
        size = int(np.prod(shape, dtype=object)) * DTYPES[code].itemsize
        tensors[name] = np.frombuffer(take(size, f"tensor {name!r} data"), dtype=DTYPES[code]).reshape(shape)
    if offset != len(data):
        raise RawTensorError(f"{path}: {len(data) - offset} trailing bytes after the last of {count} tensors")
    return tensors


def model_tensors(gated: tuple[GatedEncoderConfig, Mapping[str, np.ndarray]] | None = None,
                  global_cnn: tuple[GlobalCnnConfig, Mapping[str, np.ndarray]] | None = None
                  ) -> dict[str, np.ndarray]:
    """The driver's weights file contents: each kernel's config scalars and its weights, which are
    keyed by their bundle names (``gated.{key}``, ``global_cnn.block{b}.{key}``), as bundle.json lists them."""
    out: dict[str, np.ndarray] = {}
    if gated is not None:
        config, weights = gated
        config.validate()
        out.update({f"gated.config.{k}": np.int64(getattr(config, k)) for k in GATED_CONFIG_KEYS})
        out["gated.config.arbitrator"] = np.int64(ARBITRATORS.index(config.arbitrator))
        out.update({name: np.asarray(w, dtype=np.float32) for name, w in weights.items()})
    if global_cnn is not None:
        config, weights = global_cnn
        config.validate()
        out.update({f"global_cnn.config.{k}": np.int64(getattr(config, k))
                    for k in ("channels", "hidden", "se_hidden", "num_blocks")})
        out["global_cnn.config.squeeze"] = np.int64(SQUEEZE_MODES.index(config.squeeze))
        out["global_cnn.config.ema_decay"] = np.float64(config.ema_decay)
        out.update({name: np.asarray(w, dtype=np.float32) for name, w in weights.items()})
    return out
