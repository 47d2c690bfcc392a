"""Decoding a text file whose encoding nobody wrote down: UTF-8, else the legacy encoding its bytes really are in.

Social-media data sets were often saved again on a machine of another locale.
About a quarter of MVSA-Single's text files are GBK, as a Chinese-locale
re-save leaves them: ``“`` is the bytes ``A1 B0``, which cp1252 would read as
the mojibake ``¡°``. Which legacy encoding a file is in is checked per file,
never assumed: each candidate that decodes the bytes strictly is read, and the
one whose text looks least like mojibake wins (ties to the earlier candidate).

Two signs of a wrong reading are counted (:func:`mojibake_signs`):

- a two-byte character read one byte at a time: a Latin-1 symbol (U+0080 to
  U+00BF: ``¡ ° ¨ ¤ §``...) beside another non-ASCII character, as ``¡°`` or
  ``fianc¨¦`` (GBK read as cp1252);
- single bytes read in pairs: a Chinese, Japanese or Korean letter glued to a
  Latin one, as ``Stra遝`` for ``Straße`` (cp1252 read as GBK).

A reading with a control character (other than tab and line breaks) or an
unassigned code point is refused outright. Detection libraries were tried and
refused for this job: charset-normalizer, on these one-line tweets, picks cp850,
Big5 or cp1252 for most GBK files and so writes the mojibake, and ftfy's
badness measure does not flag ``¡°``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# GB18030 is GBK's superset (the euro sign, the rest of Unicode): a GBK file decodes the same under it.
DEFAULT_LEGACY_ENCODINGS = ("gb18030", "cp1252")
EAST_ASIAN_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO")
ALLOWED_CONTROLS = "\t\n\r"


def decode_text(raw: bytes, legacy: Sequence[str] = DEFAULT_LEGACY_ENCODINGS) -> tuple[str, str]:
    """Decode a text file's bytes: UTF-8 (a byte-order mark is dropped), else the likeliest of ``legacy``.

    Returns ``(text, encoding)``. Where neither UTF-8 nor any of ``legacy``
    gives a clean reading (:func:`plausible`), the text is UTF-8 with U+FFFD
    for the bytes it cannot read, and the encoding ``"undecodable"``.
    """
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    readings = []
    for order, encoding in enumerate(legacy):
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        if plausible(text):
            readings.append((mojibake_signs(text), order, text, encoding))
    if not readings:
        return raw.decode("utf-8", errors="replace"), "undecodable"
    _, _, text, encoding = min(readings)
    return text, encoding


def plausible(text: str) -> bool:
    """Whether ``text`` has no control character (but tab and line breaks) and no unassigned code point."""
    categories = ((char, unicodedata.category(char)) for char in text)
    return not any(
        (category == "Cc" and char not in ALLOWED_CONTROLS) or category == "Cn" for char, category in categories
    )


def mojibake_signs(text: str) -> int:
    """How many neighbouring pairs of characters in ``text`` look like a wrong decoding (see the module's notes)."""
    signs = 0
    for first, second in zip(text, text[1:]):
        if first.isascii() and second.isascii():
            continue
        if (_latin1_symbol(first) and not second.isascii()) or (_latin1_symbol(second) and not first.isascii()):
            signs += 1
        elif _script(first) != _script(second) and {_script(first), _script(second)} <= {"LATIN", "EAST ASIAN"}:
            signs += 1
    return signs


def _latin1_symbol(char: str) -> bool:
    return "\x80" <= char <= "\xbf"


def _script(char: str) -> str | None:
    """LATIN or EAST ASIAN for a letter of those scripts, else None."""
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    if name.startswith("LATIN"):
        return "LATIN"
    if name.startswith(EAST_ASIAN_SCRIPTS):
        return "EAST ASIAN"
    return None
