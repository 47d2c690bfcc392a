"""GloVe loading: a full parse into a dict, the vocabulary-only parse, and the cached reload.

Writes a GloVe-format file with the real file's shape (1,193,514 words x 200
dimensions, about 2 GB) or a stated fraction of it (default 1/8, with the
times extrapolated to the full size), and a vocabulary of 40,000 words of which
31,000 are in the file, as with the real data (both scaled by the same
fraction). Prints seconds and ratios:

    .venv/bin/python benchmarks/glove_load.py [--fraction 0.125]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emorec import text  # noqa: E402

REAL_WORDS, DIM, VOCABULARY, HITS = 1_193_514, 200, 40_000, 31_000


def write_file(path: Path, words: int, seed: int = 0) -> None:
    """Write ``words`` lines of ``word v1 ... v200`` with 5-decimal values, as GloVe does."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, words, 10_000):
            block = rng.normal(0, 0.4, size=(min(10_000, words - start), DIM))
            rows = np.char.mod("%.5f", block)
            out.writelines(f"w{start + i} " + " ".join(row) + "\n" for i, row in enumerate(rows))


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.125, help="share of the real file's 1,193,514 lines")
    parser.add_argument("--folder", default=None, help="where to write the file (default: a temporary folder)")
    args = parser.parse_args()
    words = int(REAL_WORDS * args.fraction)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "glove.bench.200d.txt"
        seconds, _ = timed(write_file, path, words)
        print(f"wrote {words:,} words x {DIM} ({path.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
        # The vocabulary shrinks with the file, so every cost scales with the fraction and extrapolates.
        rng = np.random.default_rng(1)
        hits = int(HITS * args.fraction)
        vocabulary = ["", "[UNK]"] + [f"w{i}" for i in rng.choice(words, hits, replace=False)]
        vocabulary += [f"absent{i}" for i in range(int(VOCABULARY * args.fraction) - len(vocabulary))]

        full, parsed = timed(text.read_glove, path, None, DIM)
        assert len(parsed) == words
        del parsed
        vocab_only, _ = timed(text.load_glove_vectors, path, vocabulary, DIM)  # parses, then writes the cache
        cached, (_, found) = timed(text.load_glove_vectors, path, vocabulary, DIM)
        assert found.sum() == hits
    scale = REAL_WORDS / words
    print(f"full parse into a dict:        {full:8.2f} s  (about {full * scale:.0f} s for the real file)")
    print(f"vocabulary-only parse + cache: {vocab_only:8.2f} s  (about {vocab_only * scale:.0f} s)")
    print(f"cached reload:                 {cached:8.4f} s")
    print(f"ratios: full / vocabulary-only = {full / vocab_only:.1f}x, full / cached = {full / cached:.0f}x")


if __name__ == "__main__":
    main()
