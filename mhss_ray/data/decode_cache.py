"""A decoded-image cache shared by the runs and trials that read the same images (`data.cache_dir`).

A study trains the same images trials x epochs times, and decoding a PNG frame costs more than the
whole augmentation. The first use of a split at a given image size decodes every image once, shrinks
it to the short side the training crop needs (`stored_short_side`: no crop of the random resized crop
is then enlarged) and keeps it as uint8 pixels in memory-mapped shard files. Runs read the arrays and
apply the same transforms as before; the operating system's page cache shares the shards between all
the trials of a node.

Keyed by: the format version, the image reader's bands, the stored short side, the folder and every
file's name, size and modification time (stat'ed in parallel each time a split is opened). A changed
file, another image size or other bands give a new key, hence a new entry, built once. Entries are
never changed after they are published; an old one stays until the user deletes it. The only thing
this module ever deletes is an unfinished build of its own (a `*.building-*` folder holding its marker,
made on this host by a process that is gone).

Layout of `<cache_dir>/<dataset>-<key>/`: `index.npy` (N x 6 int64: shard, byte offset, height,
width, channels, XXH3 checksum of the pixels; height 0 = the file could not be decoded, read from the file
again), `shard-NNNNN.u8`
(the pixels, H x W x C each, back to back), `meta.json` (what it was built from, how long it took).
Why this store: raw uint8 arrays in flat files are read by slicing a memory map (no decoding, no
copying, no per-image Python object), chosen by measurement over Arrow IPC files and re-encoded PNGs
(benchmarks/decode_cache.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import xxhash

from ..errors import UserError
from ..outputs import check_writable, inside, pid_alive
from .transforms import CROP_SCALE

VERSION = 2  # 2: a checksum per image in the index
INDEX_COLUMNS = 6  # shard, byte offset, height, width, channels, checksum of the pixels


def checksum(pixels) -> int:
    """XXH3 of the bytes, 63 bits (it fits the int64 index): about 7 us for a 640 x 480 frame's cached pixels."""
    return xxhash.xxh3_64_intdigest(pixels) & 0x7FFF_FFFF_FFFF_FFFF


SHARD_BYTES = 1 << 30  # one memory map per GiB of pixels
MARKER = "mhss-decode-cache-build"  # in an unfinished build's folder: proof that this module wrote it
OFF = "off"
AUTO = "auto"  # resolved by mhss-train (beside --out) and mhss-tune (beside the storage folder)


def default_cache_dir(beside: str | Path, root: str | None) -> str:
    """Where `data.cache_dir: auto` puts the cache: `decode_cache/` beside a local output folder (the run's
    --out, the study's storage folder), in the user's cache folder of each node for a bucket; off where
    that would be inside the dataset folder, which runs only read."""
    if "://" in str(beside):
        return "~/.cache/mhss-ray/decode_cache"
    where = Path(beside).expanduser().absolute().parent / "decode_cache"
    return OFF if root and inside(where, root) else str(where)


def check_cache_dir(where: str, dataset_folders: list) -> None:
    """A folder this process may write in, outside every dataset folder (runs only read those)."""
    check_writable(where, "data.cache_dir")
    for folder in dataset_folders:
        if folder and inside(where, folder):
            raise UserError(f"data.cache_dir: {where} is inside the dataset folder {folder}, which runs only read; give another folder")


def stored_short_side(image_size: int) -> int:
    """The short side at which the smallest crop of the random resized crop (CROP_SCALE[0] of the area,
    aspect ratio 3/4) still has at least `image_size` pixels on its short side."""
    return math.ceil(image_size / math.sqrt(CROP_SCALE[0] * 3 / 4))


def shrink(array: np.ndarray, short: int) -> np.ndarray:
    """H x W x C uint8 -> the short side at most `short` (never enlarged). A Lanczos filter (PIL's, per
    band): the training transform resizes its crop once more, and two bilinear resizes blur fine detail
    that one keeps (16% less mean gradient in the augmented test images), Lanczos then bilinear 1%."""
    from PIL import Image

    h, w = array.shape[:2]
    if min(h, w) <= short:
        return array
    size = (round(w * short / min(h, w)), round(h * short / min(h, w)))  # (width, height)
    if array.shape[2] == 3:
        return np.asarray(Image.fromarray(array, "RGB").resize(size, Image.LANCZOS))
    bands = [
        np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c]), "L").resize(size, Image.LANCZOS)) for c in range(array.shape[2])
    ]
    return np.stack(bands, -1)


def cache_key(folder: str, names, bands, short: int, threads: int = 32) -> str:
    """A hash of everything the cached pixels depend on (see the module doc)."""

    def stat(name: str) -> str:
        try:
            s = os.stat(os.path.join(folder, name))
            return f"{name}\0{s.st_size}\0{s.st_mtime_ns}\n"
        except OSError:
            return f"{name}\0missing\n"

    h = hashlib.sha256(f"v{VERSION}\0{os.path.realpath(folder)}\0{bands}\0{short}\n".encode())
    with ThreadPoolExecutor(threads) as pool:  # stat() on NFS waits on the network: many at a time
        for line in pool.map(stat, names.to_pylist(), chunksize=256):
            h.update(line.encode())
    return h.hexdigest()[:20]


class DamagedEntry(UserError):
    """A published entry whose files no longer match its index (cut short, overwritten)."""

    def __init__(self, folder: Path, what: str):
        super().__init__(
            f"decode cache entry {folder}: {what}; delete that folder to rebuild it (or set data.cache_dir: off to read the image files)"
        )


class ChecksumMismatch(Exception):
    """An image's cached pixels differ from what was written (raised per image, see SplitCache)."""


class DecodedImages:
    """Image i of a split -> its cached H x W x C uint8 array (a view of the memory map), or None when
    the file could not be decoded at build time (the caller reads the file and reports it).

    Opening checks the index and the shard sizes (a cut-short entry: DamagedEntry); every read checks
    the image's checksum (ChecksumMismatch)."""

    def __init__(self, folder: Path, expected: int | None = None):
        self.folder = Path(folder)
        try:  # 48 bytes an image, shared like the pixels
            self.index = np.load(self.folder / "index.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise DamagedEntry(
                self.folder, f"index.npy cannot be read ({str(exc).splitlines()[0][:80] if str(exc) else 'cut short'})"
            ) from None
        if self.index.ndim != 2 or self.index.shape[1] != INDEX_COLUMNS or (expected is not None and len(self.index) != expected):
            raise DamagedEntry(self.folder, f"index.npy has shape {self.index.shape}, expected ({expected}, {INDEX_COLUMNS})")
        self._check_shards()
        self._maps: dict[int, np.memmap] = {}

    def _check_shards(self) -> None:
        shard, offset, h, w, c = (np.asarray(self.index[:, k]) for k in range(5))
        ends = offset + h * w * c
        for s in np.unique(shard[h > 0]):
            path = self.folder / f"shard-{int(s):05d}.u8"
            need = int(ends[(shard == s) & (h > 0)].max())
            have = path.stat().st_size if path.is_file() else -1
            if have < need:
                state = "missing" if have < 0 else f"{have} bytes"
                raise DamagedEntry(self.folder, f"{path.name} is {state}, its index needs {need}")

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # DataLoader workers started with spawn: each maps the files again
        return {"folder": self.folder}

    def __setstate__(self, state):
        self.__init__(state["folder"])

    def __call__(self, i: int) -> np.ndarray | None:
        shard, offset, h, w, c, stored = (int(v) for v in self.index[i])
        if h == 0:
            return None
        if shard not in self._maps:
            self._maps[shard] = np.memmap(self.folder / f"shard-{shard:05d}.u8", dtype=np.uint8, mode="r")
        pixels = self._maps[shard][offset : offset + h * w * c]
        if checksum(pixels) != stored:
            raise ChecksumMismatch(i)
        return pixels.reshape(h, w, c)


class SplitCache:
    """A split's cache entry, named but not yet opened: make_bundle attaches one to each split, every
    view of the split shares it, and `open()` (at the start of training, once every input has been
    checked and the output folder accepted) builds or opens the entry. Until then the files are read.

    An image whose cached pixels fail their checksum is decoded from its file again, shrunk as the
    build shrinks it (so the run trains on what a sound entry holds), and said once per process."""

    def __init__(self, cache_dir: str, dataset: str, folder: str, names, reader: Callable, image_size: int, workers: int):
        self.args = (cache_dir, dataset, folder, names, reader, image_size)
        self.workers = workers
        self.images: DecodedImages | None = None
        self._said = False

    def open(self, say: Callable[[str], None] = lambda line: print(line, flush=True), workers: int | None = None) -> None:
        if self.images is None:
            self.images = open_cache(*self.args, workers=self.workers if workers is None else workers, say=say)

    def __call__(self, i: int) -> np.ndarray | None:
        if self.images is None:
            return None
        try:
            return self.images(i)
        except ChecksumMismatch:
            _, _, folder, names, reader, image_size = self.args
            name = names[i].as_py()
            if not self._said:
                self._said = True
                print(
                    f"decode cache entry {self.images.folder}: the cached pixels of {name} fail their checksum; decoding the "
                    "image file of each such image instead (delete that folder to rebuild the entry)",
                    file=sys.stderr,
                    flush=True,
                )
            return shrink(reader(os.path.join(folder, name)), stored_short_side(image_size))


def open_split_caches(splits, say: Callable[[str], None] = lambda line: print(line, flush=True), workers: int | None = None) -> None:
    """Open (building where needed) the decode cache of each split that has one."""
    for split in splits:
        cache = getattr(split.images, "cache", None)
        if isinstance(cache, SplitCache):
            cache.open(say, workers)


class _Decode:
    """Item i -> (i, the shrunk array or None); runs in the DataLoader workers that build the cache."""

    def __init__(self, folder: str, names, reader: Callable, short: int):
        self.folder, self.names, self.reader, self.short = folder, names, reader, short

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        try:
            return i, shrink(self.reader(os.path.join(self.folder, self.names[i].as_py())), self.short)
        except Exception:  # noqa: BLE001  (a file that cannot be decoded: read again, and reported, by the run)
            return i, None


def _as_is(item):
    return item


def _write(target: Path, source: _Decode, workers: int, say: Callable[[str], None], every_s: float) -> dict:
    """Decode every image (in `workers` DataLoader worker processes) and write the shards and the index."""
    from torch.utils.data import DataLoader

    n = len(source)
    index = np.zeros((n, INDEX_COLUMNS), np.int64)
    shard, offset, out = 0, 0, open(target / "shard-00000.u8", "wb")
    start = last = time.monotonic()
    loader = DataLoader(source, batch_size=None, num_workers=workers, collate_fn=_as_is, prefetch_factor=8 if workers else None)
    try:
        for done, (i, array) in enumerate(loader, 1):
            if array is not None:
                if offset and offset + array.nbytes > SHARD_BYTES:
                    out.close()
                    shard, offset = shard + 1, 0
                    out = open(target / f"shard-{shard:05d}.u8", "wb")
                pixels = np.ascontiguousarray(array).tobytes()
                out.write(pixels)
                index[i] = (shard, offset, *array.shape, checksum(pixels))
                offset += array.nbytes
            now = time.monotonic()
            if every_s and now - last >= every_s and done < n:
                rate = done / (now - start)
                say(f"decode cache: {done}/{n} images, {rate:.0f} images/s, {(n - done) / rate:.0f} s left")
                last = now
    finally:
        out.close()
    np.save(target / "index.npy", index)
    return {"images": n, "undecodable": int((index[:, 2] == 0).sum()), "seconds": round(time.monotonic() - start, 2)}


def _size_on_disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def _remove_unfinished(cache_dir: Path, entry: str) -> None:
    """Builds of this entry left by a killed process: only those that hold the marker (this module wrote
    them) and were made on this host by a process that is gone. A build on another host is left alone
    (a lock on a shared folder may not reach across hosts): at worst it stays behind, unused."""
    host = socket.gethostname()
    for old in cache_dir.glob(f"{entry}.building-*"):
        made_on, pid, _ = (old.name.rpartition(".building-")[2].rsplit("-", 2) + ["", ""])[:3]  # host-pid-token
        if made_on == host and pid.isdigit() and _gone(int(pid)) and (old / MARKER).is_file():
            shutil.rmtree(old, ignore_errors=True)


def _room_for(cache_dir: Path, source: _Decode) -> tuple[bool, str]:
    """Whether the disk can hold the entry, estimated from the first image that decodes."""
    for i in range(min(len(source), 20)):
        array = source[i][1]
        if array is not None:
            need = array.nbytes * len(source) * 1.1 + (1 << 30)
            free = shutil.disk_usage(cache_dir).free
            return free >= need, f"needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
    return True, ""


@contextlib.contextmanager
def _random_state_kept():
    """Building must not move the run's random streams (torch's DataLoader draws a seed from the global
    generator each time it is iterated): a run that builds the cache trains as one that reuses it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def open_cache(*args, **kwargs) -> DecodedImages | None:
    """The split's cache entry: opened if it exists, else built first (one process at a time per entry:
    the others wait for it). None, with one line said, when the disk has no room for it. The global
    random generators are as they were before the call."""
    with _random_state_kept():
        return _open_or_build(*args, **kwargs)


def _open_or_build(
    cache_dir: str | Path,
    dataset: str,
    folder: str,
    names,
    reader: Callable,
    image_size: int,
    workers: int = 0,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
    every_s: float = 30.0,
) -> DecodedImages | None:
    short = stored_short_side(image_size)
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = f"{dataset}-{cache_key(folder, names, getattr(reader, 'bands', None), short)}"
    final = cache_dir / entry
    if (final / "meta.json").is_file():
        return DecodedImages(final, len(names))
    with open(cache_dir / f"{entry}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"decode cache: waiting for another process to finish building {final}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "meta.json").is_file():  # built while we waited
            return DecodedImages(final, len(names))
        _remove_unfinished(cache_dir, entry)
        source = _Decode(folder, names, reader, short)
        room, estimate = _room_for(cache_dir, source)
        if not room:
            say(f"data.cache_dir: {cache_dir}: no room for the decoded {dataset} images ({estimate}); reading the image files instead")
            return None
        building = cache_dir / f"{entry}.building-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        building.mkdir()
        (building / MARKER).write_text("an unfinished decode-cache build; removed by the next build of this entry\n")
        say(f"decode cache: decoding {len(source)} {dataset} images once, short side {short} px, into {final}")
        built = _write(building, source, workers, say, every_s)
        meta = {"version": VERSION, "dataset": dataset, "folder": os.path.realpath(folder), "short_side": short,
                "bands": getattr(reader, "bands", None), **built, "bytes": _size_on_disk(building),
                "built_on": socket.gethostname()}  # fmt: skip
        (building / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(building, final)  # published whole: a reader never sees half an entry
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(building)  # another host published it first (a lock that did not reach it): ours goes
            return DecodedImages(final, len(names))
        (final / MARKER).unlink()  # after the rename: until then a killed build stays provably ours
        say(f"decode cache: built in {built['seconds']:.0f} s, {meta['bytes'] / 1e6:.0f} MB ({built['undecodable']} undecodable)")
    return DecodedImages(final, len(names))
