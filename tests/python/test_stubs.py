"""The type stubs of the native modules equal the built modules (issue 17).

python/mft/_native.pyi (Rust, PyO3) and python/mft/_kernels.pyi (C++, pybind11)
are parsed with `ast` and compared with the imported modules: the same public
names (classes, their methods and properties, functions, constants), and for
every callable the same parameters in order with the same defaults present.
PyO3 gives signatures as `__text_signature__`; pybind11 writes them as the
first docstring line. When a binding changes, update the .pyi beside it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "python", "mft")


def _stub_params(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
    """(name, has default) for each parameter, `self` dropped, a trailing `_` (keyword clash) removed."""
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
    out = [(p.arg.rstrip("_"), d) for p, d in zip(positional, defaults)]
    out += [(p.arg.rstrip("_"), d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return [p for p in out if p[0] not in ("self", "cls")]


def _stub(module: str) -> dict:
    """name -> ('function', params) | ('class', {member: ('function', params) | ('property', None)}) | ('value', None)."""
    with open(os.path.join(PKG, module + ".pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out: dict = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = ("function", _stub_params(node))
        elif isinstance(node, ast.ClassDef):
            members = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    is_prop = any(isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list)
                    members[item.name] = ("property", None) if is_prop else ("function", _stub_params(item))
            out[node.name] = ("class", members)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not node.target.id.startswith("_"):
            out[node.target.id] = ("value", None)
    return out


def _split_params(text: str) -> list[tuple[str, bool]]:
    """(name, has default) from a parameter list `a, b: T = 1, *, c=2` (top-level commas only)."""
    params, depth, cur = [], 0, ""
    for ch in text + ",":
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            item = cur.strip()
            cur = ""
            name = item.split(":")[0].split("=")[0].strip()
            if name and name not in ("/", "*") and not name.startswith("$") and name not in ("self", "cls"):
                params.append((name.lstrip("*"), "=" in item))
        else:
            cur += ch
    return params


def _runtime_params(obj) -> list[tuple[str, bool]] | None:
    """Parameters of a native callable, or None when it declares none we can read."""
    sig = getattr(obj, "__text_signature__", None)
    if sig:  # PyO3: "($self, text, add_special_tokens=True)"
        if sig.startswith("($type"):
            return None
        return _split_params(sig.strip()[1:-1])
    doc = (getattr(obj, "__doc__", None) or "").splitlines()
    m = re.match(rf"^{re.escape(obj.__name__)}\((.*)\)\s*->", doc[0]) if doc else None
    return _split_params(m.group(1)) if m else None


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", ["_native", "_kernels"])
def test_stub_names_and_signatures_match_the_module(module):
    mod = importlib.import_module(f"mft.{module}")
    stub = _stub(module)
    fix = f"update python/mft/{module}.pyi to match the binding"
    assert _public(dir(mod)) == set(stub), (
        f"mft.{module}: only in the module {sorted(_public(dir(mod)) - set(stub))}, "
        f"only in the stub {sorted(set(stub) - _public(dir(mod)))}; {fix}"
    )
    checked = 0
    for name, (kind, detail) in sorted(stub.items()):
        obj = getattr(mod, name)
        if kind == "value":
            assert not callable(obj), f"mft.{module}.{name} is callable at runtime; {fix}"
            continue
        if kind == "function":
            assert callable(obj) and not inspect.isclass(obj), f"mft.{module}.{name} is not a function; {fix}"
            params = _runtime_params(obj)
            assert params is not None, f"mft.{module}.{name}: no readable signature at runtime"
            assert params == detail, f"mft.{module}.{name}: runtime parameters {params}, stub {detail}; {fix}"
            checked += 1
            continue
        assert inspect.isclass(obj), f"mft.{module}.{name} is not a class; {fix}"
        runtime_members = _public(vars(obj))
        assert runtime_members == _public(detail), (
            f"mft.{module}.{name}: only at runtime {sorted(runtime_members - _public(detail))}, "
            f"only in the stub {sorted(_public(detail) - runtime_members)}; {fix}"
        )
        init = detail.get("__init__")
        if init is not None:
            params = _runtime_params(obj)
            assert params == init[1], f"mft.{module}.{name}(): runtime parameters {params}, stub {init[1]}; {fix}"
            checked += 1
        for member, (mkind, mparams) in sorted(detail.items()):
            if member.startswith("_"):
                continue
            value = inspect.getattr_static(obj, member)
            if mkind == "property":
                assert type(value).__name__ == "getset_descriptor", (
                    f"mft.{module}.{name}.{member} is a property in the stub but not at runtime; {fix}"
                )
                continue
            fn = getattr(obj, member)
            params = _runtime_params(fn)
            assert params is not None, f"mft.{module}.{name}.{member}: no readable signature at runtime"
            assert params == mparams, f"mft.{module}.{name}.{member}: runtime parameters {params}, stub {mparams}; {fix}"
            checked += 1
    assert checked >= 5, f"only {checked} signatures compared"


def test_the_package_is_marked_typed():
    assert os.path.exists(os.path.join(PKG, "py.typed"))


def test_the_stub_checker_sees_a_wrong_parameter(tmp_path, monkeypatch):
    """The comparison itself can fail: a stub with a renamed parameter is caught."""
    with open(os.path.join(PKG, "_kernels.pyi"), encoding="utf-8") as f:
        text = f.read()
    broken = text.replace("def rms_norm_forward(x:", "def rms_norm_forward(xs:", 1)
    assert broken != text
    (tmp_path / "_kernels.pyi").write_text(broken, encoding="utf-8")
    monkeypatch.setattr(__import__(__name__), "PKG", str(tmp_path))
    with pytest.raises(AssertionError, match="rms_norm_forward"):
        test_stub_names_and_signatures_match_the_module("_kernels")
