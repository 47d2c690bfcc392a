"""The image feature store: each image's frozen-backbone features, computed once, for every run that needs them.

One folder per backbone configuration (a frozen text encoder's: one per encoder, texts keyed by their bytes)::

    <cache dir>/<backbone>_<size>px_<pooling>_<precision>_<weights>/
        store.json         the configuration and the shape of one image's features
        shard-000000.npy   float16 features, one row per image, preallocated and memory-mapped
        entries.jsonl      one line per computed image: [image key, shard, row, readable]

An image's key is its path under the image root with its size and modification time, or its bytes' sha256, so
new rows compute only new images and moved folders keep their features. A batch's rows are flushed before its
lines are appended, so a listed line always has its features on disk and readers need no lock; writers hold a
lock per shard file and per share (docs/long_runs.md: the store, its locks, and filling it in shares).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorec.errors import InputError
from emorec.fileio import write_json_atomic
from emorec.storage import exclusive, try_lock

log = logging.getLogger("emorec")

SHARD_BYTES = 1 << 30  # a new shard holds at most about 1 GB of features
ENTRIES, CONFIG, WRITE_LOCK = "entries.jsonl", "store.json", ".write.lock"
# The flag choices of what keys a store: how an image is recognised (--cache-key) and how its feature map is pooled.
CACHE_KEYS = ("stat", "content")
POOLINGS = ("flatten", "avg", "max")


class DamagedCache(InputError):
    """Stored features that cannot be read: IER computes them again, the later phases refuse them."""


def image_keys(paths: Sequence[str], image_root: str | os.PathLike, mode: str = "stat") -> list[str]:
    """The store key of each image in ``paths`` (absolute, as the manifest resolves them).

    ``stat``: ``stat:<size>:<mtime ns>:<path relative to image_root>`` (the
    absolute path when the image is outside the root); ``content``:
    ``sha256:<digest of the bytes>``. A file that cannot be read has a key
    that says so (``missing:<path>``), and is recorded as unreadable.
    """
    if mode not in CACHE_KEYS:
        raise ValueError(f"unknown cache key {mode!r}: one of {', '.join(CACHE_KEYS)}")
    root = str(Path(image_root).resolve()) + os.sep
    keys = []
    for path in paths:  # os.path rather than pathlib: this runs once per row (470k for B-T4SA)
        relative = path[len(root) :] if path.startswith(root) else path
        try:
            if mode == "content":
                with open(path, "rb") as data:
                    keys.append("sha256:" + hashlib.file_digest(data, "sha256").hexdigest())
            else:
                stat = os.stat(path)
                keys.append(f"stat:{stat.st_size}:{stat.st_mtime_ns}:{relative}")
        except OSError:
            keys.append(f"missing:{relative}")
    return keys


def store_folder(
    cache_dir: str | os.PathLike, backbone: str, weights_identity: str, image_size: int, pooling: str, precision: str
) -> Path:
    """The store folder of this backbone configuration under ``cache_dir`` (``backbone``: a CNN's name or a
    KerasHub preset, of which the last part names the folder)."""
    weights = hashlib.sha256(weights_identity.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{backbone_name(backbone)}_{image_size}px_{pooling}_{precision}_{weights}"


def backbone_name(backbone: str) -> str:
    """A backbone's name, safe in a file name: a CNN's name, or the last part of a preset (a folder or a handle)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", backbone.rstrip("/").split("/")[-1] or "preset")


class FeatureView:
    """The stored features of a list of images (a manifest's rows), one row each, read on demand.

    Indexes like a read-only float16 array of shape ``(len(keys), *feature
    shape)`` (an integer, a slice or an array of row numbers), gathering the
    rows from the store's memory-mapped shards; ``ok`` tells which images were
    readable.
    """

    def __init__(
        self, shards: dict[int, np.ndarray], shard_of: np.ndarray, row_of: np.ndarray, feature_shape: tuple[int, ...]
    ):
        self.shards, self.shard_of, self.row_of = shards, shard_of, row_of
        self.shape, self.dtype, self.ndim = (
            (len(shard_of), *feature_shape),
            np.dtype(np.float16),
            1 + len(feature_shape),
        )
        self.zeroed: np.ndarray | None = None  # rows read as zeros (take)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows) -> FeatureView:
        """A view of ``rows`` of this one, in their order; a row -1 reads as zeros (a post without an image)."""
        rows = np.asarray(rows, dtype=np.int64)
        zeroed = rows < 0
        source = np.where(zeroed, 0, rows)
        if len(self):
            shard_of, row_of = self.shard_of[source], self.row_of[source]
            if self.zeroed is not None:
                zeroed |= self.zeroed[source]
        else:  # nothing to point at: every row is -1
            shard_of = row_of = np.zeros(len(rows), np.int64)
        view = FeatureView(self.shards, shard_of, row_of, self.shape[1:])
        view.zeroed = zeroed
        return view

    def absent_as_zeros(self, present: np.ndarray) -> FeatureView:
        """This view, the rows where ``present`` is False read as zeros (how the fusion sees a post's no image)."""
        return self.take(np.where(present, np.arange(len(self)), -1))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            if self.zeroed is not None and self.zeroed[index]:
                return np.zeros(self.shape[1:], np.float16)
            return self.shards[self.shard_of[index]][self.row_of[index]]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.zeros((len(rows), *self.shape[1:]), np.float16)
        read = np.ones(len(rows), bool) if self.zeroed is None else ~self.zeroed[rows]
        shards = self.shard_of[rows]
        for shard in np.unique(shards[read]):
            where = read & (shards == shard)
            out[where] = self.shards[shard][self.row_of[rows[where]]]
        return out

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


@dataclass
class StoredFeatures:
    """A manifest's image features from a store: ``features`` (a :class:`FeatureView`, one row per manifest row),
    ``ok`` (readable images) and the store ``folder``."""

    folder: Path
    features: FeatureView
    ok: np.ndarray


class FeatureStore:
    """One store folder (see the module's documentation): its configuration, its entries and its shards."""

    def __init__(self, folder: Path, config: dict):
        self.folder, self.config = folder, config
        self.feature_shape = tuple(config["feature_shape"])
        self.entries: dict[str, tuple[int, int, bool]] = {}
        self.shards: dict[int, np.ndarray] = {}
        self.capacity: dict[int, int] = {}
        self.held: dict[int, object] = {}  # shard -> the lock of the shard files this process writes into
        self.reload()

    @classmethod
    def open(cls, folder: Path, config: dict | None = None) -> FeatureStore:
        """Open the store in ``folder``; with ``config`` (the configuration and ``feature_shape``), create it
        when missing. Raises :class:`DamagedCache` when its configuration cannot be read or differs."""
        path = folder / CONFIG
        if config is not None and not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, config)
        try:
            found = json.loads(path.read_text())
            found["feature_shape"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DamagedCache(
                f"the feature store {folder} is damaged or missing ({type(error).__name__}: "
                f"{error}); a damaged one must be deleted to be computed again"
            ) from error
        if config is not None and found != json.loads(json.dumps(config)):
            raise DamagedCache(
                f"the feature store {folder} holds features of another configuration "
                f"({found}, not {config}); delete it, or choose another --cache-dir"
            )
        return cls(folder, found)

    def reload(self) -> None:
        """Read ``entries.jsonl`` again (another process may have added images). A line cut short by a kill is
        left out; a line that cannot be read, or points at a shard that is missing or too short, is left out with
        a warning (its image is computed again)."""
        self.entries, shards_needed, skipped = {}, {}, 0
        path = self.folder / ENTRIES
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        for line in text.split("\n")[:-1]:  # the part after the last newline is a line not yet complete
            try:
                key, shard, row, ok = json.loads(line)
                shards_needed[int(shard)] = max(shards_needed.get(int(shard), 0), int(row) + 1)
                self.entries[str(key)] = (int(shard), int(row), bool(ok))
            except (ValueError, TypeError):
                skipped += 1
        for shard, rows in shards_needed.items():
            if not (rows <= self.capacity[shard] if shard in self.shards else self._open_shard(shard, rows)):
                self.entries = {key: entry for key, entry in self.entries.items() if entry[0] != shard}
        if skipped:
            log.warning(
                "feature store %s: %d line(s) of %s cannot be read; their features are computed again",
                self.folder,
                skipped,
                ENTRIES,
            )

    def _open_shard(self, shard: int, rows: int) -> bool:
        path = self._shard_path(shard)
        try:
            features = np.load(path, mmap_mode="r")
            if features.shape[1:] != self.feature_shape or len(features) < rows or features.dtype != np.float16:
                raise ValueError(f"{features.shape} {features.dtype} for {rows} rows of {self.feature_shape}")
        except (OSError, ValueError) as error:
            log.warning(
                "feature store %s: %s cannot be read (%s); its features are computed again",
                self.folder,
                path.name,
                error,
            )
            return False
        self.shards[shard], self.capacity[shard] = features, len(features)
        return True

    def _shard_path(self, shard: int) -> Path:
        return self.folder / f"shard-{shard:06d}.npy"

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The distinct keys among ``keys`` that the store lacks, in their first order."""
        return [key for key in dict.fromkeys(keys) if key not in self.entries]

    def view(self, keys: Sequence[str]) -> StoredFeatures:
        """The features of ``keys`` (every one stored), one row per key."""
        entries = [self.entries[key] for key in keys]
        shard_of = np.array([entry[0] for entry in entries], dtype=np.int64)
        row_of = np.array([entry[1] for entry in entries], dtype=np.int64)
        ok = np.array([entry[2] for entry in entries], dtype=bool)
        return StoredFeatures(self.folder, FeatureView(self.shards, shard_of, row_of, self.feature_shape), ok)

    def free_slots(self, count: int) -> list[tuple[int, int]]:
        """``count`` (shard, row) places for new images: the unused ends of shards that no other process is
        writing into first, then new shards (allocated here, their disk space reserved) of at most
        :data:`SHARD_BYTES`. This process holds every shard it takes rows of until :meth:`release`."""
        with exclusive(self.folder / WRITE_LOCK, f"taking rows in {self.folder}"):
            self.reload()  # rows that other processes recorded meanwhile are taken
            used = {}
            for shard, row, _ in self.entries.values():
                used[shard] = max(used.get(shard, 0), row + 1)
            slots = []
            for shard in sorted(self.capacity):
                if len(slots) < count and used.get(shard, 0) < self.capacity[shard] and self._hold(shard):
                    slots += [(shard, row) for row in range(used.get(shard, 0), self.capacity[shard])][
                        : count - len(slots)
                    ]
            row_bytes = 2 * int(np.prod(self.feature_shape))
            next_shard = (
                max([*self.capacity, *(int(p.stem.split("-")[1]) for p in self.folder.glob("shard-*.npy")), -1]) + 1
            )
            while len(slots) < count:
                rows = min(count - len(slots), max(1, SHARD_BYTES // row_bytes))
                self._hold(next_shard)
                self.shards[next_shard] = _allocate(self._shard_path(next_shard), (rows, *self.feature_shape))
                self.capacity[next_shard] = rows
                slots += [(next_shard, row) for row in range(rows)]
                next_shard += 1
            return slots

    def _hold(self, shard: int) -> bool:
        """Take the lock of ``shard``'s file for writing into it; False when another process holds it."""
        if shard not in self.held:
            lock = try_lock(self._shard_path(shard).with_suffix(".writer"))
            if lock is None:
                return False
            self.held[shard] = lock
        return True

    def release(self) -> None:
        """Let other processes write into the shards this one took rows of (at the end of an extraction)."""
        for lock in self.held.values():
            lock.release()
        self.held.clear()

    def writable(self, shard: int) -> np.ndarray:
        """Shard ``shard`` opened for writing."""
        if not self.shards[shard].flags.writeable:
            self.shards[shard] = np.load(self._shard_path(shard), mmap_mode="r+")
        return self.shards[shard]

    def record(self, lines: list[tuple[str, int, int, bool]]) -> None:
        """Append ``lines`` (key, shard, row, readable) to the entries, after their shards are flushed."""
        for shard in {shard for _, shard, _, _ in lines}:
            self.shards[shard].flush()
        with (
            exclusive(self.folder / WRITE_LOCK, f"recording features in {self.folder}"),
            open(self.folder / ENTRIES, "a", encoding="utf-8") as entries,
        ):
            entries.write("".join(json.dumps([key, shard, row, ok]) + "\n" for key, shard, row, ok in lines))
            entries.flush()
            os.fsync(entries.fileno())
        for key, shard, row, ok in lines:
            self.entries[key] = (shard, row, ok)

    def cut_incomplete_line(self) -> None:
        """Drop a last line that a kill left without its newline, so that the next one appended stays whole
        (reading the whole file only then: a complete one is checked by its last byte)."""
        path = self.folder / ENTRIES
        if not path.exists():
            return
        with exclusive(self.folder / WRITE_LOCK, f"recording features in {self.folder}"), open(path, "r+b") as entries:
            size = entries.seek(0, os.SEEK_END)
            if size and (entries.seek(size - 1), entries.read(1))[1] != b"\n":
                entries.seek(0)
                entries.truncate(entries.read().rfind(b"\n") + 1)


def _allocate(path: Path, shape: tuple) -> np.ndarray:
    """A float16 array of ``shape`` memory-mapped to ``path``, with its disk space reserved at once where the system
    can (``posix_fallocate``): a disk without room fails here, with ENOSPC, rather than killing the process with
    SIGBUS on a later write into the mapping."""
    features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as file:
            try:
                os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
            except OSError as error:
                if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it: go on
                    return features
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    del features
                    path.unlink(missing_ok=True)
                    raise InputError(
                        f"no space left on the device of {path.parent} for the image features: they need "
                        f"{_size(2 * int(np.prod(shape)))} more. Free some space or choose another --cache-dir, and "
                        "run the same command again."
                    ) from error
                raise OSError(error.errno, os.strerror(error.errno), str(path)) from error
    return features


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"
