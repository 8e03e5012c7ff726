"""docs/architecture.md is one true page (issue 23): its Layout block names every module of the code
folders under its folder, and every ``.py`` file the page names exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/architecture.md"
CODE_FOLDERS = ("services", "functions", "imageflow", "imageflow_cli")
MODULE = re.compile(r"[\w./]*\w\.py\b")


def layout_block(text: str) -> list[str]:
    """The lines of the code block under '## Layout'."""
    section = text.split("## Layout", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def layout_modules(lines: list[str]) -> tuple[set[str], list[str]]:
    """(repository paths of the modules the tree names, names that resolve to no file). A line whose first
    word ends in '/' opens a folder, nested under the folders indented less; a name on any line is
    looked up in the innermost open folder, then the ones around it."""
    open_folders: list[tuple[int, str]] = []
    named, missing = set(), []
    for line in lines:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first, *_ = line.split()
        if indent <= (open_folders[-1][0] if open_folders else -1) or first.endswith("/"):
            while open_folders and open_folders[-1][0] >= indent:
                open_folders.pop()
        if first.endswith("/"):
            open_folders.append((indent, (open_folders[-1][1] if open_folders else "") + first))
        for name in MODULE.findall(line):
            found = next((folder + name for _, folder in reversed(open_folders) if (ROOT / folder / name).is_file()),
                         name if (ROOT / name).is_file() else None)
            if found is None:
                missing.append(f"{name} (under {open_folders[-1][1] if open_folders else 'the root'})")
            else:
                named.add(found)
    return named, missing


def code_modules() -> set[str]:
    """Every module of the code folders; an __init__.py that is only a docstring marks a package and is left out."""
    modules = set()
    for folder in CODE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            if path.name == "__init__.py":
                body = ast.parse(path.read_text()).body
                if all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body):
                    continue
            modules.add(path.relative_to(ROOT).as_posix())
    return modules


def test_every_module_is_named_in_its_room():
    named, _ = layout_modules(layout_block(DOC.read_text()))
    unnamed = sorted(code_modules() - named)
    assert unnamed == [], f"docs/architecture.md's Layout does not name (add each under its folder): {unnamed}"


def test_every_module_the_layout_names_exists():
    _, missing = layout_modules(layout_block(DOC.read_text()))
    assert missing == [], f"docs/architecture.md's Layout names modules that do not exist: {missing}"


def test_every_python_file_the_page_names_exists():
    files = [path.relative_to(ROOT).as_posix() for path in ROOT.rglob("*.py")
             if not {".venv", "node_modules", ".git", "__pycache__"} & set(path.relative_to(ROOT).parts)]
    gone = sorted({name for name in MODULE.findall(DOC.read_text())
                   if not any(f == name or f.endswith("/" + name.lstrip("./")) for f in files)})
    assert gone == [], f"docs/architecture.md names files that do not exist: {gone}"


def test_the_checks_catch_a_missing_and_an_invented_module():
    lines = ["services/image_processor/", "  app.py                    the worker",
             "  fan_out.py                invented", "imageflow/", "  bus/   the port in __init__.py; sqlite.py"]
    named, missing = layout_modules(lines)
    assert named == {"services/image_processor/app.py", "imageflow/bus/__init__.py", "imageflow/bus/sqlite.py"}
    assert missing == ["fan_out.py (under services/image_processor/)"]
    assert "services/image_processor/dedupe.py" in code_modules() - named
