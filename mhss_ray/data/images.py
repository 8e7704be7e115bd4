"""Images decoded from files in the DataLoader workers (PIL for PNG/JPEG, tifffile for TIFF), or read
already decoded from the study's decode cache (data/decode_cache.py).

The dataset holds the file names (one Arrow string array, no per-row Python objects) and decodes
on access; nothing decoded stays in memory. An image that cannot be decoded does not raise inside
the worker (torch would turn that into a traceback): the item comes back with a negative index,
`bad_index(i)`, and the trainer stops with an error naming the file or, with
`data.on_bad_image: skip`, leaves the image out and counts it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import tifffile
import torch
from PIL import Image
from torch.utils.data import Dataset

TIFF_SUFFIXES = (".tif", ".tiff")
# No dataset we read comes near this (Sewer-ML frames: 0.3 MP, aerial tiles: 0.1 MP); a file that
# claims more is refused from its header, before a byte is decoded (a 1 MB TIFF can claim 256 MP).
MAX_PIXELS = 40_000_000


def check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} pixels, above the limit of {MAX_PIXELS:,}: refused before decoding")


def bad_index(index: int) -> int:
    return -index - 1


def original_index(marked: int) -> int:
    return -marked - 1


def read_tiff(path: str) -> np.ndarray:
    """H x W x C, whatever order the file stores its samples in (TreeSatAI: planar, 4 bands)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes = series.shape, series.axes
        check_pixels(shape[axes.index("X")] if "X" in axes else 1, shape[axes.index("Y")] if "Y" in axes else 1)
        array = series.asarray()
    if array.ndim == 2:
        return array[..., None]
    if axes.endswith("YX") and array.ndim == 3:  # planar: C x H x W
        return np.moveaxis(array, 0, -1)
    return array


def to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array // 257).astype(np.uint8)
    raise ValueError(f"unsupported sample type {array.dtype} (expected 8- or 16-bit)")


class ImageReader:
    """Path -> H x W x C uint8 array with the chosen bands (band indices into the file's samples);
    PNG/JPEG files come back as RGB."""

    def __init__(self, bands: tuple[int, ...] | None = None):
        self.bands = bands

    @property
    def channels(self) -> int:
        return 3 if self.bands is None else len(self.bands)

    def __call__(self, path: str) -> np.ndarray:
        if path.lower().endswith(TIFF_SUFFIXES):
            array = to_uint8(read_tiff(path))
        else:
            with Image.open(path) as img:
                check_pixels(*img.size)
                array = np.asarray(img.convert("RGB"))
        if self.bands is not None:
            if array.shape[-1] <= max(self.bands):
                raise ValueError(f"has {array.shape[-1]} bands, band {max(self.bands) + 1} requested")
            array = array[..., list(self.bands)]
        elif array.shape[-1] != 3:
            array = np.repeat(array[..., :1], 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
        return np.ascontiguousarray(array)


class ImageFiles(Dataset):
    """Item i -> (transformed image, i); with several transforms, a tuple of views. `weak` is the
    training transform without RandAugment, for DISC's weak view (`two_views`)."""

    def __init__(
        self,
        folder: str | Path,
        names: pa.StringArray,
        reader: ImageReader,
        transforms: list[Callable],
        size: int,
        weak: Callable | None = None,
        plain: Callable | None = None,
        cache: Callable[[int], np.ndarray | None] | None = None,
    ):
        self.folder, self.names, self.reader, self.transforms, self.size, self.weak = str(folder), names, reader, transforms, size, weak
        self.plain = plain  # the evaluation transform, for the training images seen without augmentation
        self.cache = cache  # item i -> its decoded pixels (data/decode_cache.py), None: read the file

    def __len__(self) -> int:
        return len(self.names)

    def path(self, index: int) -> str:
        return os.path.join(self.folder, self.names[index].as_py())

    def views(self, index: int) -> list[torch.Tensor]:
        array = self.cache(index) if self.cache is not None else None
        if array is None:  # no cache, or a file the cache could not decode: the file, and its error
            array = self.reader(self.path(index))
        return [t(array) for t in self.transforms]

    def __getitem__(self, index: int):
        # One guard around decoding and transforming: whatever a file does to either (a header
        # that lies, a shape the crop cannot take) marks the item bad instead of killing the worker.
        try:
            views = self.views(index)
        except Exception:  # noqa: BLE001  (any decoder failure: reported by the trainer, see module doc)
            blank = torch.zeros(self.reader.channels, self.size, self.size)
            views = [blank] * len(self.transforms)
            return (views[0] if len(views) == 1 else tuple(views)), bad_index(index)
        return (views[0] if len(views) == 1 else tuple(views)), index

    def failure(self, index: int) -> str:
        """Why image `index` cannot be used (decoded again in the calling process, for the message)."""
        try:
            self.views(index)
        except Exception as exc:  # noqa: BLE001
            reason = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            return f"{self.path(index)}: cannot decode image ({reason})"
        return f"{self.path(index)}: could not be decoded in a DataLoader worker"

    def evaluation_view(self) -> "ImageFiles":
        """The same images with the evaluation transform (no random crop, flip or RandAugment)."""
        return ImageFiles(self.folder, self.names, self.reader, [self.plain or self.transforms[0]], self.size, cache=self.cache)

    def two_views(self) -> "ImageFiles":
        """(weak, strong) views of each training image: strong = weak + RandAugment."""
        return ImageFiles(self.folder, self.names, self.reader, [self.weak, self.transforms[0]], self.size, cache=self.cache)
