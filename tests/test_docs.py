"""The README and docs/ as a reader meets them (issue 29): a README short enough to read in ten minutes, every link
between the pages landing on a file and a heading that exist, and every flag of every command in docs/flags.md.
(Their command blocks are run by test_readme.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\((?!https?://)([^)#\s]*)(?:#([^)\s]+))?\)")
COMMANDS = {
    "TER.py": "python TER.py",
    "IER.py": "python IER.py",
    "Intermediate_fusion.py": "python Intermediate_fusion.py",
    "Late_fusion.py": "python Late_fusion.py",
    "predict.py": "python predict.py",
    "sweep.py": "python sweep.py",
    "emorec.demo": "python -m emorec.demo",
    "emorec.bt4sa": "python -m emorec.bt4sa",
    "emorec.mvsa": "python -m emorec.mvsa",
}


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_readme_is_at_most_250_lines_and_maps_every_docs_page():
    readme = (REPO / "README.md").read_text("utf-8")
    assert len(readme.splitlines()) <= 250
    assert {page.name for page in PAGES[1:]} == set(re.findall(r"\(docs/(\w+\.md)\)", readme))
    assert len(PAGES) >= 9


def test_every_link_between_the_pages_lands_on_a_file_and_a_heading():
    checked = 0
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text("utf-8")):
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.name} links to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path), f"{page.name} links to {target}#{anchor}: no such heading"
            checked += 1
    assert checked > 40  # the pages link to each other: the test is not vacuous


def test_every_flag_of_every_command_is_in_flags_md():
    """Each command's flags, from its own parser in a fresh interpreter, each under the command's heading."""
    flags = (REPO / "docs/flags.md").read_text("utf-8")
    sections = dict(re.findall(r"^## `(python [^`]+)`\n(.*?)(?=^## |\Z)", flags, re.M | re.S))
    shared = flags[flags.index("## The flags every training phase takes") : flags.index("## `python TER.py`")]
    listing = subprocess.run(
        [sys.executable, "-c", OPTIONS, *COMMANDS], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    found = 0
    for line in listing.splitlines():
        module, option = line.split()
        section = sections[COMMANDS[module]]
        training = module in ("TER.py", "IER.py", "Intermediate_fusion.py")
        assert f"`{option}`" in section or (training and f"`{option}`" in shared), (module, option)
        found += 1
    assert found > 80


# Prints "<command> <option>" for every option of each command's parser, caught as parse_args would run it.
OPTIONS = """
import argparse, importlib, sys
for name in sys.argv[1:]:
    module = importlib.import_module(name.removesuffix(".py"))
    caught = []
    def grab(self, args=None, namespace=None):
        caught.append(self)
        raise SystemExit(0)
    argparse.ArgumentParser.parse_args = grab
    try:
        module.parse_args([])
    except SystemExit:
        pass
    for action in caught[0]._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                print(name, option)
"""


def test_every_command_that_reads_the_default_data_says_so_before_it():
    """Issue 45: a command of a phase or the sweep without --manifest reads data_files/image_labels.csv, which
    `make demo` does not make: the text just before its block must say that it needs a data set there."""
    block = re.compile(r"```\w*\n(.*?)```", re.S)
    unsaid = []
    for page in PAGES:
        text = page.read_text("utf-8")
        for found in block.finditer(text):
            lines = found[1].replace("\\\n", " ").splitlines()
            reading = [
                line
                for line in lines
                if re.search(r"python (TER|IER|Intermediate_fusion|sweep)\.py", line) and "--manifest" not in line
            ]
            before = text[max(0, found.start() - 600) : found.start()]
            if reading and "data_files/image_labels.csv" not in before and "real data" not in before:
                unsaid += [f"{page.name}: {line.strip()[:80]}" for line in reading]
    assert not unsaid, "commands that read data_files/image_labels.csv without saying so:\n" + "\n".join(unsaid)
