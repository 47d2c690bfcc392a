"""GloVe word vectors: the file's messages, reading it, and the cache of the rows a vocabulary needs.

Numpy alone, no TensorFlow: a phase checks its GloVe file (and says how to get it) before its heavy imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emorec.data.manifest import DEMO_FOLDER
from emorec.errors import InputError
from emorec.fileio import atomic_path
from emorec.storage import beside_or_fallback, fallback_path

log = logging.getLogger("emorec")

# The first two words of every vocabulary: Keras' TextVectorization's padding and unknown-word tokens.
PAD, OOV = "", "[UNK]"


DEFAULT_GLOVE = "data_files/glove.twitter.27B.200d.txt"
GLOVE_DOWNLOAD = "https://nlp.stanford.edu/data/glove.twitter.27B.zip"


def glove_fix(path: str | os.PathLike) -> str:
    """How to get the GloVe file that ``path`` names, or how to train without it."""
    return (
        f"Download {GLOVE_DOWNLOAD} (1.4 GB), unzip it and place glove.twitter.27B.200d.txt "
        f"at {path} (or pass --glove PATH). To train without pretrained vectors, pass --glove none; "
        f"the demo's vectors are --glove {DEMO_FOLDER}/glove.demo.200d.txt."
    )


def missing_glove_message(path: str | os.PathLike) -> str:
    """Explain that the GloVe file ``path`` is missing, and how to get it or train without it."""
    return f"GloVe file not found: {path}\n{glove_fix(path)}"


def check_glove_dimension(path: str | os.PathLike, dim: int) -> None:
    """Check, from its first line alone, that the GloVe file ``path`` has ``dim`` values per word, so a wrong file
    is refused before a phase writes anything; :class:`InputError` saying which file to use otherwise."""
    with open(path, "rb") as lines:
        first = lines.readline().rstrip(b"\r\n").rstrip(b" ")
    if first.count(b" ") != dim:
        raise InputError(_dimension_message(Path(path), first.count(b" "), dim))


def _dimension_message(path: Path, found: int, dim: int) -> str:
    return (
        f"{path}, line 1: {found} values per word, but the model uses {dim} (--embedding-dim). Use the "
        f"{dim}-dimensional file (glove.twitter.27B.{dim}d.txt) or set --embedding-dim to the file's dimension."
    )


def read_glove(path: str | os.PathLike, vocabulary: Sequence[str] | None, dim: int) -> dict[str, np.ndarray]:
    """Parse a GloVe text file (``word v1 ... v<dim>`` per line).

    With a ``vocabulary``, only its words' vectors are parsed (every line is
    still checked to have ``dim`` values); with ``None``, every vector is.
    Returns a dict word -> float32 vector. Raises :class:`InputError` for a
    missing file, a dimension that is not ``dim`` or a malformed line, naming
    the line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(missing_glove_message(path))
    wanted = None if vocabulary is None else {word.encode("utf-8") for word in vocabulary}
    vectors: dict[str, np.ndarray] = {}
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            line = line.rstrip(b"\r\n").rstrip(b" ")
            if line.count(b" ") != dim:
                if number == 1:
                    raise InputError(_dimension_message(path, line.count(b" "), dim))
                raise InputError(
                    f"{path}, line {number}: {line.count(b' ')} values instead of {dim}: "
                    f"{line[:60].decode('utf-8', 'replace')!r}... The file may be truncated or corrupt; "
                    "download it again."
                )
            word, values = line.split(b" ", 1)
            if wanted is not None and word not in wanted:
                continue
            try:
                vectors[word.decode("utf-8")] = np.array(values.split(b" "), dtype=np.float32)
            except (ValueError, UnicodeDecodeError) as error:
                raise InputError(
                    f"{path}, line {number}: cannot be parsed ({error}); download the file again."
                ) from error
    return vectors


def glove_cache_path(path: str | os.PathLike, vocabulary: Sequence[str], dim: int) -> Path:
    """Return where the vectors of ``vocabulary`` from the GloVe file ``path`` are cached.

    Beside the GloVe file (in a fallback folder when the GloVe file's folder
    is read-only, see :func:`emorec.storage.beside_or_fallback`), named by two
    keys: the file's (its size and modification time, and the dimension), so a
    changed file misses, and the vocabulary's.
    """
    path = Path(path)
    vocabulary_key = hashlib.sha256(json.dumps(list(vocabulary)).encode("utf-8")).hexdigest()[:16]
    return beside_or_fallback(
        path.with_name(f"{path.name}.{_glove_file_key(path, dim)}-{vocabulary_key}.cache.npz"), "the GloVe cache"
    )


def _glove_file_key(path: Path, dim: int) -> str:
    stat = path.stat()
    return hashlib.sha256(json.dumps([path.name, stat.st_size, stat.st_mtime_ns, dim]).encode("utf-8")).hexdigest()[:12]


def _from_a_larger_cache(path: Path, vocabulary: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray, Path] | None:
    """The vectors of ``vocabulary`` taken from any cache of the same file whose words include them all, or None.

    A label-efficiency sweep trains on subsamples whose vocabularies are parts
    of the whole training split's, so one parse serves every setting.
    """
    pattern = f"{path.name}.{_glove_file_key(path, dim)}-*.cache.npz"
    for cache in sorted([*path.parent.glob(pattern), *fallback_path(path).parent.glob(pattern)]):
        try:
            with np.load(cache) as stored:
                words, vectors, found = stored["words"].tolist(), stored["vectors"], stored["found"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("GloVe: the cache %s is damaged (%s: %s); removing it", cache, type(error).__name__, error)
            with contextlib.suppress(OSError):  # a read-only folder keeps it; it is skipped all the same
                cache.unlink()
            continue
        index = {word: row for row, word in enumerate(words)}
        if all(word in index for word in vocabulary):
            rows = np.array([index[word] for word in vocabulary], dtype=np.int64)
            return vectors[rows], found[rows], cache
    return None


def load_glove_vectors(path: str | os.PathLike, vocabulary: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the GloVe vectors of ``vocabulary``, from a cache when one holds them, else parsed and cached.

    Returns (vectors, found): a float32 array (len(vocabulary), dim) with zeros
    where a word has no vector, and a boolean mask of the words found. A cache
    of this vocabulary, or of a larger one from the same file, spares the
    parse. Logs the hits and misses.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(missing_glove_message(path))
    cached = _from_a_larger_cache(path, vocabulary, dim)
    if cached is not None:
        vectors, found, cache = cached
        log.info("GloVe: %s of %s words from the cache %s", f"{found.sum():,}", _word_count(vocabulary), cache.name)
        return vectors, found
    cache = glove_cache_path(path, vocabulary, dim)  # where it can be written, known before the long parse
    log.info("GloVe: reading %s for %s vocabulary words (once; cached afterwards)", path, _word_count(vocabulary))
    parsed = read_glove(path, vocabulary, dim)
    vectors = np.zeros((len(vocabulary), dim), dtype=np.float32)
    found = np.zeros(len(vocabulary), dtype=bool)
    for row, word in enumerate(vocabulary):
        if word in parsed:
            vectors[row], found[row] = parsed[word], True
    with atomic_path(cache) as tmp, open(tmp, "wb") as out:
        np.savez(out, words=np.array(list(vocabulary), dtype=str), vectors=vectors, found=found)
    log.info("GloVe: found %s of %s words; cached in %s", f"{found.sum():,}", _word_count(vocabulary), cache)
    return vectors, found


def _word_count(vocabulary: Sequence[str]) -> str:
    """How many real words (not padding or out-of-vocabulary) a vocabulary has, formatted with commas."""
    return f"{sum(word not in (PAD, OOV) for word in vocabulary):,}"


def embedding_matrix(glove: str | None, vocabulary: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """Return the initial embedding matrix (len(vocabulary), dim), float32, for the given vocabulary.

    Words with a GloVe vector get it; the others (and every word when
    ``glove`` is None) are drawn from a normal distribution with the GloVe
    vectors' standard deviation (0.05 without GloVe), seeded. The padding row
    is zero.
    """
    rng = np.random.default_rng(seed)
    if glove is None:
        matrix = rng.normal(0.0, 0.05, size=(len(vocabulary), dim)).astype(np.float32)
        log.info("GloVe: none; %s words initialised at random", f"{len(vocabulary):,}")
    else:
        vectors, found = load_glove_vectors(glove, vocabulary, dim)
        scale = float(vectors[found].std()) if found.any() else 0.05
        matrix = rng.normal(0.0, scale, size=(len(vocabulary), dim)).astype(np.float32)
        matrix[found] = vectors[found]
    matrix[0] = 0.0  # padding
    return matrix
