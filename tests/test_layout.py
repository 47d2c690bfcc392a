"""The code's shape (issues 29 and 44): one job per module, no module over 350 lines, no function over 60 lines (a
script's main: 90) or 8 parameters, no import circle, the package never importing the scripts that use it, and only
the commands importing the command line. Read from the source with
``ast``: every import counts, the ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 350
MAX_FUNCTION_LINES = 60  # a function reads on one screen
MAX_MAIN_LINES = 90  # a script's main reads top to bottom like a method section: arguments to outputs
MAX_PARAMETERS = 8  # beyond that a function takes a value object (TrainingOptions, RunFolders, Extraction, ...)
SCRIPTS = {path.stem for path in REPO.glob("*.py")}  # TER, IER, ..., predict, sweep: the commands at the root


def modules() -> dict[str, Path]:
    """Every module of the package and every script at the root, by its import name."""
    found = {path.stem: path for path in REPO.glob("*.py")}
    for path in (REPO / "emorec").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    every = modules()
    return {name: imports(path, set(every)) - {name} for name, path in every.items()}


def is_command(path: Path) -> bool:
    """Whether a module runs as a command (``python -m emorec.demo``): it has an ``if __name__ == "__main__"``."""
    return '\nif __name__ == "__main__":' in path.read_text(encoding="utf-8")


def test_no_module_is_over_350_lines():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert len(lengths) > 30  # the package and the scripts were found
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def functions() -> list[tuple[str, ast.FunctionDef]]:
    """Every function and method of the package and the scripts, with its module's name."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((name, node))
    return found


def test_no_function_is_over_60_lines_but_a_scripts_main_over_90():
    every = functions()
    assert len(every) > 300  # the functions were found
    too_long = {}
    for module, node in every:
        lines = node.end_lineno - node.lineno + 1
        limit = MAX_MAIN_LINES if module in SCRIPTS and node.name == "main" else MAX_FUNCTION_LINES
        if lines > limit:
            too_long[f"{module}.{node.name}"] = lines
    assert too_long == {}


def test_no_function_takes_more_than_8_parameters():
    too_many = {}
    for module, node in functions():
        arguments = node.args
        names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
        names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
        count = len([n for n in names if n not in ("self", "cls")])
        if count > MAX_PARAMETERS:
            too_many[f"{module}.{node.name}"] = count
    assert too_many == {}


def test_no_import_circle():
    graph = import_graph()
    assert graph["TER"] and graph["emorec.runs"]  # the graph has edges: the test is not vacuous
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            assert state.get(imported) != "open", "import circle: " + " -> ".join([*path, name, imported])
            if imported not in state:
                visit(imported, [*path, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_package_never_imports_the_scripts_that_use_it():
    graph = import_graph()
    assert {name: graph[name] & SCRIPTS for name in graph if name.startswith("emorec") and graph[name] & SCRIPTS} == {}
    assert {"TER", "IER", "Intermediate_fusion", "Late_fusion"} <= graph["sweep"]  # the sweep's explicit list


def test_only_the_commands_import_the_command_line():
    every, graph = modules(), import_graph()
    library = {name for name in graph if name.startswith("emorec") and not is_command(every[name])}
    assert "emorec.runs" in library and "emorec.demo" not in library
    assert {name for name in library if "emorec.cli" in graph[name]} == set()


def test_no_library_function_takes_the_parsed_arguments():
    """The library takes values (TrainingOptions, RunFolders, a dict of flags); only the command line module and
    the commands (which parse their own) see an argparse Namespace."""
    every = modules()
    library = {name for name in every if name.startswith("emorec") and not is_command(every[name])} - {"emorec.cli"}
    taking = set()
    for module, node in functions():
        if module in library:
            arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            if any(
                a.arg == "args" or "Namespace" in ast.unparse(a.annotation or ast.Constant(None)) for a in arguments
            ):
                taking.add(f"{module}.{node.name}")
    assert "emorec.runs" in library and taking == set()
