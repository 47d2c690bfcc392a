"""Fonts for the explanation's picture: matplotlib's own, then a system font with emoji where one is installed, and
each character that no font can draw written as its Unicode name (``:broken heart:``) rather than an empty box.

matplotlib draws outline fonts only, so a colour-bitmap emoji font (Noto Color Emoji, Apple Color Emoji) cannot
serve; the monochrome ones below can.
"""

from __future__ import annotations

import functools
import unicodedata

# Monochrome fonts with emoji and symbols, the first ones installed used after matplotlib's own, in this order.
EMOJI_FONTS = ("Noto Emoji", "Symbola", "Segoe UI Emoji", "Segoe UI Symbol", "Noto Sans Symbols 2", "Noto Sans Symbols")


@functools.cache
def installed_emoji_fonts() -> tuple[str, ...]:
    """The :data:`EMOJI_FONTS` that matplotlib finds on this system."""
    from matplotlib import font_manager

    found = {font.name for font in font_manager.fontManager.ttflist}
    return tuple(name for name in EMOJI_FONTS if name in found)


def families(base: str) -> list[str]:
    """The font families to draw with: ``base`` (a matplotlib family, e.g. ``"DejaVu Sans"``), then the installed
    emoji fonts, which matplotlib falls back to glyph by glyph."""
    return [base, *installed_emoji_fonts()]


@functools.cache
def _characters(family: str) -> frozenset[int]:
    """The code points the font of ``family`` has a glyph for."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    return frozenset(FT2Font(path).get_charmap())


@functools.cache
def _covered(families_: tuple[str, ...]) -> frozenset[int]:
    """The code points any of ``families_`` has a glyph for (once per list of families, not per word)."""
    return frozenset().union(*(_characters(family) for family in families_))


def drawable(text: str, base: str) -> str:
    """``text`` with each character that none of :func:`families` (``base``'s) can draw written as its lower-case
    Unicode name between colons; a variation selector or joiner without a glyph is dropped."""
    covered = _covered(tuple(families(base)))
    out = []
    for character in text:
        if ord(character) in covered or character.isspace():
            out.append(character)
        elif unicodedata.category(character) not in ("Mn", "Cf"):  # VS16, ZWJ: nothing to show on their own
            out.append(f":{unicodedata.name(character, f'U+{ord(character):04X}').lower()}:")
    return "".join(out)
