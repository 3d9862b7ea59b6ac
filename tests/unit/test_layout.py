"""The packages' dependency rule (README, "How the code is laid out"), checked on every import.

errors  <-  contract  <-  rules  <-  live  <-  tools
                           patches  <-  live
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import streams

PACKAGE = Path(streams.__file__).parent

#: What each package of ours may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "contract": {"errors"},
    "rules": {"errors", "contract"},
    "patches": {"errors"},
    "live": {"errors", "contract", "rules", "patches"},
    "readside": {"errors", "contract", "rules", "live"},
    "tools": {"errors", "contract", "rules", "live", "patches", "readside"},
    "__init__": set(),
    "__main__": {"tools"},
}
#: Frameworks and servers the pure packages never import.
ADAPTER_LIBRARIES = {"faust", "mode", "aiokafka", "redis", "prometheus_client", "rocksdict"}
PURE = ("contract", "rules")


def package_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            if node.module == "streams":
                # `from streams import errors` names a module; `__version__` does not
                names = (alias.name for alias in node.names if not alias.name.startswith("__"))
                found.update(f"streams.{name}" for name in names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_known_package() -> None:
    assert {package_of(path) for path in MODULES} == set(MAY_IMPORT)


def test_the_wheel_lists_every_package() -> None:
    # pyproject.toml lists packages (to map topics/ into the wheel): a new one must be added
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(init.parent.relative_to(PACKAGE.parent).parts)
        for init in PACKAGE.rglob("__init__.py")
    }
    assert {name for name in listed if ".files" not in name} == folders


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_the_packages_below_its_own(path: Path) -> None:
    own = package_of(path)
    ours = {m.split(".")[1] for m in imports(path) if m.startswith("streams.")}
    assert ours - {own} <= MAY_IMPORT[own], f"{own} may import only {sorted(MAY_IMPORT[own])}"
    if own in PURE:
        libraries = {m.split(".")[0] for m in imports(path)}
        assert not libraries & ADAPTER_LIBRARIES, f"{own} is pure"


def test_the_pure_packages_load_no_framework_at_run_time() -> None:
    # what is imported, transitively, when only the engine and the contract are used
    code = (
        "import sys, pkgutil, importlib, streams.contract, streams.rules\n"
        "for pkg in (streams.contract, streams.rules):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "print(sorted({name.split('.')[0] for name in sys.modules}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert not set(eval(loaded)) & ADAPTER_LIBRARIES


def test_the_worker_handles_a_record_without_faust() -> None:
    code = (
        "import sys, streams.live.handler, streams.live.outbox, streams.live.catchup\n"
        "print('faust' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
