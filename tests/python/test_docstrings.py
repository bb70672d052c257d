"""Every public module, function, class and method of the documented API has a docstring (issue 17).

The documented API: mft.tokenizer, mft.data, mft.weights, mft.models, mft.ops (docs/index.md's API
reference) and mft.finetune, every public submodule of them. Public: a name without a leading
underscore, defined in that module (not imported into it). A method counts as documented when
`inspect.getdoc` finds a docstring, so an override inherits its base method's; MindSpore's
`construct` (the forward of a Cell, described by the class) and properties are not asked for.
Importing only, no MindSpore kernels run: the test takes about the import time.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

PACKAGES = ("mft.tokenizer", "mft.data", "mft.weights", "mft.models", "mft.ops", "mft.finetune")


def public_modules(package: str) -> list[str]:
    """The package and its submodules whose dotted names have no part starting with an underscore."""
    mod = importlib.import_module(package)
    subs = [m.name for m in pkgutil.walk_packages(mod.__path__, package + ".")]
    return [package] + sorted(n for n in subs if not any(part.startswith("_") for part in n.split(".")))


def undocumented(module_name: str) -> list[str]:
    """Dotted names in `module_name` that should have a docstring and do not."""
    module = importlib.import_module(module_name)
    missing = [] if (module.__doc__ or "").strip() else [f"{module_name} (module)"]
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module_name:
            continue
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(f"{module_name}.{name}")
        if not inspect.isclass(obj):
            continue
        for attr, value in vars(obj).items():
            if attr.startswith("_") or attr == "construct" or isinstance(value, property):
                continue
            func = getattr(value, "__func__", value)
            if inspect.isfunction(func) and not (inspect.getdoc(getattr(obj, attr)) or "").strip():
                missing.append(f"{module_name}.{name}.{attr}")
    return missing


def test_the_walk_sees_the_api():
    names = [m for p in PACKAGES for m in public_modules(p)]
    assert "mft.tokenizer.tokenizer" in names and "mft.models.llama.model" in names and "mft.finetune.lora" in names
    assert not any("._" in n for n in names)


def test_every_public_name_has_a_docstring():
    missing = [name for p in PACKAGES for m in public_modules(p) for name in undocumented(m)]
    assert not missing, f"{len(missing)} public names without a docstring:\n  " + "\n  ".join(missing)
