"""The code's layers point one way: a module imports only from the layers below its own.

From the bottom up (CONTRIBUTING.md, "The code"); a room may import itself, never a room beside
or above it.
"""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = [
    {"settings", "contract", "apikeys", "lifecycle"},
    {"storage", "connexion_ext"},
    {"logging_ext", "etags"},
    {"problems"},
    {"middleware", "handlers"},
    {"app"},
    {"serving", "bench"},
    {"gunicorn.conf"},
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def rooms() -> list[tuple[str, Path]]:
    found = []
    for room in sorted(LEVEL):
        module = ROOT / f"{room}.py"
        package = ROOT / room
        files = [module] if module.exists() else sorted(package.rglob("*.py"))
        # Not migrations, nor what tools keep in hidden folders (make bench's bench/.venv-*).
        found += [
            (room, path)
            for path in files
            if "migrations" not in path.parts
            and not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
        ]
    return found


def first_party_imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        imported |= {name.split(".")[0] for name in names if name.split(".")[0] in LEVEL}
    return imported


@pytest.mark.parametrize(
    ("room", "path"),
    rooms(),
    ids=lambda value: str(value.relative_to(ROOT)) if isinstance(value, Path) else value,
)
def test_imports_point_down(room: str, path: Path) -> None:
    upward = {other for other in first_party_imports(path) - {room} if LEVEL[other] >= LEVEL[room]}
    assert not upward, f"{path.relative_to(ROOT)} ({room}) imports {sorted(upward)} at or above it"


def test_every_room_of_the_repository_has_a_layer() -> None:
    ours = {
        path.stem if path.is_file() else path.name
        for path in ROOT.iterdir()
        if (path.suffix == ".py" or (path / "__init__.py").exists()) and path.name != "tests"
    }
    assert ours - {"gunicorn.conf"} <= set(LEVEL), sorted(ours - set(LEVEL))
