"""Binary event frames stored as bits (1/32 of float32), unpacked to float32 per batch, and
their on-disk cache, memory-mapped so that every process on a machine shares one copy.

Why a memory-mapped file and not Ray's object store: Flower's simulation engine creates the
client actors itself and gives the ClientApp no handle to a driver that could ``ray.put`` a
split once; an object put by one actor dies with that actor (its owner), and a named holder
actor would need its own lifecycle. Neither exists under the deployment engine (SuperNodes in
separate processes or containers), nor for the ServerApp's auditor or the experiments. A
read-only ``np.load(mmap_mode="r")`` of the cache file shares the same physical pages (the
kernel's page cache) between all of them, Ray or not, with nothing to start or stop; a
``ray.get`` of a NumPy array would be a zero-copy view of shared memory as well, so nothing is
lost on Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fl_sim.atomic_file import atomic_write

Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor
"""What selects samples: an int (one sample, no batch axis), a slice, or integer indices."""


class PackedFrames:
    """Binary frames [N, T, C, H, W], each sample's T*C*H*W values packed into bits (NumPy
    ``packbits`` order, the last byte zero-padded); :meth:`take` unpacks to float32 0.0/1.0,
    bit-identical to the float frames they were packed from."""

    __slots__ = ("bits", "shape")

    def __init__(self, bits: np.ndarray, shape: Sequence[int]) -> None:
        """Wrap packed ``bits`` uint8 [N, ceil(T*C*H*W / 8)] (may be a read-only memmap)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != 5 or min(shape[1:], default=0) < 1 or shape[0] < 0:
            raise ValueError(f"shape must be (N, T, C, H, W) with T, C, H, W >= 1, got {shape}")
        want = (shape[0], packed_bytes(shape[1:]))
        if bits.dtype != np.uint8 or bits.shape != want:
            raise ValueError(
                f"bits must be uint8 {want} for frames {shape}, got {bits.dtype} {bits.shape}"
            )
        self.bits = bits
        self.shape: tuple[int, int, int, int, int] = shape  # type: ignore[assignment]

    @classmethod
    def pack(cls, frames: torch.Tensor | np.ndarray) -> PackedFrames:
        """Pack frames [N, T, C, H, W] whose values are all exactly 0 or 1 (raises otherwise:
        counts above 1 would need a wider dtype, and clipping them would change the data)."""
        array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if array.ndim != 5:
            raise ValueError(f"frames must be [N, T, C, H, W], got shape {array.shape}")
        binary = array == 1
        if not np.all(binary | (array == 0)):
            raise ValueError("frames hold values other than 0 and 1: they cannot be stored as bits")
        bits = np.packbits(binary.reshape(array.shape[0], -1), axis=1)
        return cls(bits, array.shape)

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:
        """(T, C, H, W) of one sample."""
        return self.shape[1:]  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Bytes of the packed bits."""
        return int(self.bits.nbytes)

    def __len__(self) -> int:
        """Number of samples."""
        return self.shape[0]

    def take(self, index: Index) -> torch.Tensor:
        """float32 frames of the selected samples ([T,C,H,W] for an int, else [B,T,C,H,W]),
        unpacked now: the only float copy is the one returned."""
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        rows = np.asarray(self.bits[index])
        count = int(np.prod(self.sample_shape))
        values = np.unpackbits(rows, axis=-1, count=count)
        return torch.from_numpy(values.reshape(rows.shape[:-1] + self.sample_shape)).to(
            torch.float32
        )

    def to_float(self, chunk: int = 256) -> torch.Tensor:
        """All frames as one float32 tensor (32x the packed size: prefer :meth:`take`),
        unpacked ``chunk`` samples at a time so no larger temporary is made."""
        out = torch.empty(self.shape, dtype=torch.float32)
        for start in range(0, len(self), chunk):
            out[start : start + chunk] = self.take(slice(start, start + chunk))
        return out


def packed_bytes(sample_shape: Sequence[int]) -> int:
    """Bytes of one packed sample of ``sample_shape``."""
    return -(-int(np.prod(sample_shape)) // 8)


def write_packed(path: Path, frames: PackedFrames) -> None:
    """Write the packed bits as a plain ``.npy`` (memory-mappable), atomically: concurrent
    loaders may race, and a reader never sees a partial file."""
    with atomic_write(path, durable=False) as fh:
        np.save(fh, np.ascontiguousarray(frames.bits))


def read_packed(path: Path, shape: Sequence[int]) -> PackedFrames | None:
    """The frames of ``shape`` cached at ``path``, memory-mapped read-only (every process
    shares the page cache's copy), or None when absent or not of that shape."""
    try:
        bits = np.load(path, mmap_mode="r", allow_pickle=False)
        return PackedFrames(bits, shape)
    except (OSError, ValueError):
        return None
