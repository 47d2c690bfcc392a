"""MVSA's labels file and the field's protocol that turns a tweet's labels into one.

``labelResultAll.txt`` has a header line, then one line per tweet:
``<ID>\\t<text label>,<image label>`` in MVSA-Single, three such columns (one
per annotator) in MVSA-Multiple. The layout is read from the file: the number
of label columns most lines have.

The protocol (Xu and Mao, 2017, followed by MultiSentiNet, HSAN, CLMLF, MDSE):

1. MVSA-Multiple: each modality's label is the one at least two of the three
   annotators gave; a tweet whose text or image has no such label is dropped.
2. A tweet whose text and image labels agree keeps that label.
3. A neutral label yields to a polar one (neutral + positive: positive).
4. Positive against negative is dropped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from emorec.errors import InputError, list_some

CLASS_NAMES = ("negative", "neutral", "positive")
LAYOUTS = {1: "MVSA-Single", 3: "MVSA-Multiple"}  # label columns per line -> name
RULES = (
    "no label two of three annotators gave the text (dropped)",
    "no label two of three annotators gave the image (dropped)",
    "text and image agree (kept)",
    "neutral yields to the polar label (kept)",
    "positive against negative (dropped)",
)


def read_label_file(path: Path) -> pd.DataFrame:
    """Read ``labelResultAll.txt``: a DataFrame with columns ``id``, ``text`` and ``image``, each label column a
    tuple of one label per annotator, and ``attrs["layout"]`` (MVSA-Single or MVSA-Multiple).

    Raises one :class:`InputError` naming the malformed lines (a wrong number of columns, a label other than
    positive, neutral or negative, an id given twice) and what a line holds.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a text file of MVSA labels ({error}).") from error
    numbered = [(number, line.rstrip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if numbered and numbered[0][1].split("\t")[0].strip().lower() == "id":
        numbered = numbered[1:]
    if not numbered:
        raise InputError(
            f"{path}: no labelled tweet (a header line, then '<ID><TAB><text label>,<image label>' per tweet)."
        )
    widths = Counter(len(line.split("\t")) - 1 for _, line in numbered)
    columns = widths.most_common(1)[0][0]
    if columns not in LAYOUTS:
        raise InputError(
            f"{path}: lines have {columns} label column(s); MVSA-Single has 1 per line, "
            "MVSA-Multiple 3 ('<ID><TAB><text>,<image>', one column per annotator)."
        )
    rows, bad, seen = [], [], set()
    for number, line in numbered:
        tweet, *pairs = (field.strip() for field in line.split("\t"))
        parsed = [tuple(label.strip().lower() for label in pair.split(",")) for pair in pairs]
        if len(pairs) != columns or any(len(pair) != 2 or not set(pair) <= set(CLASS_NAMES) for pair in parsed):
            bad.append(f"line {number}: {line[:200]!r}")
        elif not tweet or tweet in seen:
            bad.append(f"line {number}: id {tweet!r} " + ("given twice" if tweet else "missing"))
        else:
            seen.add(tweet)
            rows.append({"id": tweet, "text": tuple(p[0] for p in parsed), "image": tuple(p[1] for p in parsed)})
    if bad:
        raise InputError(
            f"{path}: {len(bad)} malformed line(s) of {len(numbered)}; {LAYOUTS[columns]} has one line per tweet, "
            f"'<ID>' then {columns} tab-separated '<text label>,<image label>' column(s), each label "
            f"{', '.join(CLASS_NAMES)}:\n{list_some(bad)}"
        )
    labels = pd.DataFrame(rows, columns=["id", "text", "image"])
    labels.attrs["layout"] = LAYOUTS[columns]
    return labels


def apply_protocol(labels: pd.DataFrame) -> tuple[pd.Series, dict[str, int]]:
    """Apply the protocol (see the module's notes) to :func:`read_label_file`'s frame.

    Returns the kept tweets' labels (a Series of class names indexed by id, in the file's order) and how many
    tweets each rule applied to (only the annotator-majority rules where there are three annotators).
    """
    counts = Counter()
    kept = {}
    for tweet, text, image in labels[["id", "text", "image"]].itertuples(index=False):
        text, image = _majority(text), _majority(image)
        if text is None or image is None:
            counts[RULES[0] if text is None else RULES[1]] += 1
        elif text == image:
            counts[RULES[2]] += 1
            kept[tweet] = text
        elif "neutral" in (text, image):
            counts[RULES[3]] += 1
            kept[tweet] = image if text == "neutral" else text
        else:
            counts[RULES[4]] += 1
    rules = RULES if labels.attrs.get("layout") == LAYOUTS[3] else RULES[2:]
    return pd.Series(kept, dtype=object, name="label"), {rule: counts[rule] for rule in rules}


def _majority(votes: tuple[str, ...]) -> str | None:
    """The label most annotators gave, if at least two did (one annotator: that label)."""
    label, count = Counter(votes).most_common(1)[0]
    return label if count >= 2 or len(votes) == 1 else None
