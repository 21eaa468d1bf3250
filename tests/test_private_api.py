"""The private names of other libraries that the package uses: each one listed in ``lit_cs201.private_api`` still
exists in the installed versions, and none is used without being listed.

A release that renames one fails here, naming it and the library's version, rather than somewhere in a run. The
scan reads the package's source: ``x._name`` and ``getattr(x, "_name")`` for a name the package does not define
itself, ``super()._name`` always (the parent is a library's class, or the name would be ours), imports of private
names or modules; and, at run time, the package's classes that override or assign a private name of the library
class they extend.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import pkgutil
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

import lit_cs201
from lit_cs201.private_api import PRIVATE_NAMES, PrivateName

PACKAGE = Path(lit_cs201.__file__).parent
#: Receivers whose attributes a class assigns as its own.
OWN = ("self", "cls")


def private(name: str) -> bool:
    """``_x`` and ``__x`` are private; ``__x__`` is Python's protocol, public."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def sources() -> dict[str, ast.Module]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text("utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def defined_here(trees: dict[str, ast.Module]) -> set[str]:
    """Every name the package defines: functions, classes, variables, arguments, aliases, and attributes it assigns
    on ``self`` or ``cls``."""
    names: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in OWN:
                    names.add(node.attr)
    return names


def _is_super(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def private_uses(trees: dict[str, ast.Module] | None = None) -> dict[tuple[str, str], list[int]]:
    """(module of the package, private name of another library) -> the lines that use it."""
    trees = sources() if trees is None else trees
    uses: dict[tuple[str, str], list[int]] = defaultdict(list)
    ours = defined_here(trees)
    for module, tree in trees.items():
        for node in ast.walk(tree):
            found: list[str] = []
            if isinstance(node, ast.Attribute) and private(node.attr):
                if node.attr not in ours or _is_super(node.value):
                    found.append(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] != "lit_cs201":
                found += [part for part in node.module.split(".") if private(part)]
                found += [alias.name for alias in node.names if private(alias.name)]
            elif isinstance(node, ast.Import):
                found += [part for alias in node.names for part in alias.name.split(".") if private(part)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2:
                name = node.args[1]
                if node.func.id in ("getattr", "hasattr", "setattr", "delattr") and isinstance(name, ast.Constant):
                    if isinstance(name.value, str) and private(name.value) and name.value not in ours:
                        found.append(name.value)
            for name in found:
                uses[module, name].append(node.lineno)
    return uses


def listed_names(entry: PrivateName) -> set[str]:
    return {entry.key} if entry.key else {part for part in entry.path.split(".") if private(part)}


# -- the scan ----------------------------------------------------------------------------------------------------


def test_every_private_name_the_package_uses_is_listed():
    listed = {(module, name) for entry in PRIVATE_NAMES for module in entry.used_in for name in listed_names(entry)}
    unlisted = [
        f"{module}:{lines[0]} uses {name}" for (module, name), lines in sorted(private_uses().items())
        if (module, name) not in listed
    ]  # fmt: skip
    assert not unlisted, (
        "private names of other libraries used but not listed in lit_cs201/private_api.py (use a public API, or "
        "add the name, where it is used and why no public API serves):\n  " + "\n  ".join(unlisted)
    )


def test_every_listed_use_still_exists():
    """An entry whose use was removed goes too, so the list stays the package's real dependence on private names."""
    uses = {**private_uses(), **shared_with_bases()}
    stale = []
    for entry in PRIVATE_NAMES:
        for module in entry.used_in:
            if module not in sources():
                stale.append(f"{entry.path}: lit_cs201/{module} does not exist")
            elif entry.key and not _has_string(sources()[module], entry.key):
                stale.append(f"{entry.path} key {entry.key!r}: not used in lit_cs201/{module}")
            elif not entry.key and not any((module, name) in uses for name in listed_names(entry)):
                stale.append(f"{entry.path}: no longer used in lit_cs201/{module}; remove it from used_in")
    assert not stale, "lit_cs201/private_api.py lists uses that are gone:\n  " + "\n  ".join(stale)


def _has_string(tree: ast.AST, text: str) -> bool:
    return any(isinstance(node, ast.Constant) and node.value == text for node in ast.walk(tree))


def test_the_scan_sees_each_kind_of_use():
    """The scan itself: each form of use is found, the package's own names and Python's dunders are not."""
    code = """
import torch._dynamo
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lit_cs201.errors import _own_helper

class Writer(SummaryWriter):
    def _get_file_writer(self):
        self._mine = 1
        return super()._get_file_writer()

def use(trainer, logger):
    trainer._signal_connector.received_sigterm = True
    getattr(logger, "_version")
    logger._mine, logger.__class__, _own_helper()
"""
    found = {name for _, name in private_uses({"example.py": ast.parse(code)})}
    assert found == {"_dynamo", "_is_local_file_protocol", "_get_file_writer", "_signal_connector", "_version"}


# -- the listed names in the installed versions ----------------------------------------------------------------


def _version(path: str) -> str:
    top = path.split(".")[0]
    if top in sys.stdlib_module_names:
        return f"Python {sys.version.split()[0]}"
    try:
        return f"{top} {importlib.metadata.version(top)}"
    except importlib.metadata.PackageNotFoundError:
        return top


def _assigned_on_self(cls: type, name: str) -> ast.expr | None:
    """The value a class of the library (or a base) assigns to ``self.<name>``, or None if none does."""
    for klass in cls.__mro__:
        try:
            tree = ast.parse(inspect.getsource(klass).strip() if klass.__module__ != "builtins" else "")
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []  # fmt: skip
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == name and isinstance(target.value, ast.Name):
                    if target.value.id == "self":
                        return getattr(node, "value", None) or ast.Constant(None)
    return None


def resolve(path: str) -> object:
    """The object at ``path``: the longest importable module, then attributes; an attribute set on instances by the
    library's own code is found in its source, and followed where the library builds it by calling a class."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:end]))
            break
        except ImportError:
            continue
    else:
        raise LookupError(f"cannot import {parts[0]}")
    for index, part in enumerate(parts[end:], start=end):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        value = _assigned_on_self(obj, part) if isinstance(obj, type) else None
        if value is None:
            raise LookupError(f"{'.'.join(parts[:index])} has no {part}")
        if index == len(parts) - 1:
            return value
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
            raise LookupError(f"{'.'.join(parts[: index + 1])} is not built by a class call: list the class instead")
        obj = vars(sys.modules[obj.__module__])[value.func.id]
    return obj


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=lambda e: f"{e.path}:{e.key}" if e.key else e.path)
def test_each_listed_name_exists_in_the_installed_version(entry):
    try:
        found = resolve(entry.path)
        if entry.key:
            source = inspect.getsource(found)
            if not _has_string(ast.parse(source), entry.key):
                raise LookupError(f"{entry.path} no longer writes or reads the key {entry.key!r}")
    except LookupError as err:
        pytest.fail(
            f"{entry.path} (used by lit_cs201/{', '.join(entry.used_in)}) is gone in {_version(entry.path)}: {err}. "
            f"The package relies on it because: {entry.why}"
        )


def test_each_entry_says_where_and_why():
    for entry in PRIVATE_NAMES:
        assert entry.used_in and entry.why.strip() and "\n" not in entry.why, entry.path
        assert entry.key or listed_names(entry), f"{entry.path} names nothing private"


# -- classes that extend a library's class ------------------------------------------------------------------------


def _own_private_attributes(cls: type) -> set[str]:
    """The private names a class of the package defines in its body or uses on ``self``, as its source has them
    (not ``vars(cls)``, which holds what metaclasses add, such as ``abc``'s ``_abc_impl``)."""
    try:
        tree = ast.parse(inspect.getsource(cls).strip())
    except (OSError, TypeError):
        return set()
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    names = {node.name for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    names |= {
        target.id for node in body if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(target, ast.Name)
    }  # fmt: skip
    names |= {
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    }  # fmt: skip
    return {name for name in names if private(name) and not name.startswith(f"_{cls.__name__}__")}


def _library_names(cls: type) -> set[str]:
    """The names the library classes among ``cls``'s bases define or assign on ``self``."""
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in ("lit_cs201", "builtins"):
            continue
        names |= set(vars(base))
        try:
            tree = ast.parse(inspect.getsource(base).strip())
        except (OSError, TypeError, SyntaxError):
            continue
        names |= {
            node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
        }  # fmt: skip
    return names


@cache
def shared_with_bases() -> dict[tuple[str, str], list[str]]:
    """(module of the package, private name) -> its classes that share that name with a library class they extend."""
    shared: dict[tuple[str, str], list[str]] = defaultdict(list)
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="lit_cs201."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        where = Path(module.__file__).relative_to(PACKAGE).as_posix()
        for cls in [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == info.name]:
            for name in sorted(_own_private_attributes(cls) & _library_names(cls)):
                shared[where, name].append(cls.__name__)
    return shared


def test_classes_that_extend_a_library_class_list_the_private_names_they_share_with_it():
    """A method of ours named like a private one of the base class overrides it; an attribute of ours named like
    one of the base's is the base's own state: both are uses of the library's private names."""
    listed = {(module, name) for entry in PRIVATE_NAMES for module in entry.used_in for name in listed_names(entry)}
    unlisted = [
        f"{module}: {', '.join(classes)}.{name} is also a private name of a base class"
        for (module, name), classes in sorted(shared_with_bases().items()) if (module, name) not in listed
    ]  # fmt: skip
    assert not unlisted, "list these in lit_cs201/private_api.py:\n  " + "\n  ".join(unlisted)
