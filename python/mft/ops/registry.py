"""Register C++ functions as MindSpore ops that work inside `ms.jit` train steps.

MindSpore's `ops.Custom(func_type="aot")` dlopens a shared library and calls
an `extern "C"` function with the convention

    int Func(int nparam, void **params, int *ndims, int64_t **shapes,
             const char **dtypes, void *stream, void *extra)

(inputs then outputs in `params`; outputs are allocated by MindSpore from the
shapes/dtypes the Python inference functions return; non-zero return =
error). It runs in PyNative and graph mode, and a Python `bprop` makes it
differentiable, including inside a jitted `value_and_grad`. This module adds
what mft and user models need on top: early, clear errors (missing library,
missing symbol, wrong device), a name registry, and the path of mft's own
kernel library. See docs/feature/custom_ops.md for a worked example.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from mft.errors import MftError

ShapeInfer = Union[Callable[..., Any], tuple, list]
DtypeInfer = Union[Callable[..., Any], Any]


@dataclass(frozen=True)
class AotOpSpec:
    """What a registered op was built from (for error messages and listing)."""

    name: str
    library: str
    function: str
    has_bprop: bool
    op: Any  # the mindspore.ops.Custom primitive


_REGISTRY: dict[str, AotOpSpec] = {}


def build_at_import(fused_ops: Callable[[], Any]) -> None:
    """Runs a module's `fused_ops()` at import, so graph-mode code (which
    cannot build them) finds the ops as module globals. Where the kernels
    cannot run the ops stay None on purpose: a later `fused=True` call, or
    `fused_ops()` itself, raises the MftError saying why."""
    builds(fused_ops)


def builds(fused_ops: Callable[[], Any]) -> bool:
    """True when `fused_ops()` registers its ops here (the library loads, the device can run them)."""
    try:
        fused_ops()
    except MftError:
        return False
    return True


def kernels_library() -> str:
    """Absolute path of mft's own C++ library (`mft._kernels`), which exports
    the aot entry points of mft's fused ops."""
    try:
        from mft import _kernels
    except ImportError as e:  # built by `pip install .` / `make setup`
        raise MftError(
            f"mft's C++ kernels (mft._kernels) are not built or failed to load ({e}); "
            "run `pip install -e .` or `make setup`"
        ) from e
    return os.path.realpath(_kernels.__file__)


def check_aot_symbol(library: str, function: str) -> str:
    """Checks that `library` is a loadable shared library exporting `function`;
    returns its absolute path. Raises MftError naming the file otherwise."""
    path = os.path.realpath(os.fspath(library))
    if not os.path.isfile(path):
        raise MftError(f"aot op library {library!r} does not exist (resolved to {path})")
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise MftError(f"aot op library {path} cannot be loaded: {e}") from e
    if not hasattr(lib, function):
        raise MftError(
            f"aot op library {path} does not export a function named {function!r} "
            '(declare it extern "C" and with default visibility)'
        )
    return path


def _check_device(what: str) -> None:
    import mindspore as ms

    target = ms.get_context("device_target")
    if target == "Ascend":
        raise MftError(
            f"{what}: C++ aot ops from a host shared library run on the CPU (or GPU) target, "
            "but MindSpore's device_target is Ascend; use the op's MindSpore reference there "
            "(Ascend C kernels come later, see ascend_kernels/README.md)"
        )


def aot_op(
    library: str,
    function: str,
    *,
    out_shape: ShapeInfer,
    out_dtype: DtypeInfer,
    bprop: Optional[Callable[..., Any]] = None,
):
    """Builds a MindSpore primitive calling `function` in the shared `library`.

    out_shape / out_dtype: either fixed values (a shape tuple / a mindspore
      dtype, or tuples of them for several outputs) or functions called with
      one argument per input (its shape as a list / its dtype) returning them.
      They run when MindSpore infers the graph, so they are the place to reject
      bad shapes with an MftError.
    bprop: optional backward, MindSpore's convention: called with every input,
      then the forward output `out`, then its gradient `dout`; returns a tuple
      with one gradient per input. It is traced like any graph code, so it may
      call other aot ops (typically the C++ backward kernel).

    The returned primitive is called with tensors: `op(x, y)`. Several outputs
    come back as a tuple.
    """
    from mindspore import ops

    _check_device(f"aot op {function}")
    path = check_aot_symbol(library, function)
    if bprop is not None and not callable(bprop):
        raise MftError(f"aot op {function}: bprop must be callable, got {type(bprop).__name__}")
    return ops.Custom(f"{path}:{function}", out_shape=out_shape, out_dtype=out_dtype,
                      func_type="aot", bprop=bprop)


def register_aot_op(
    name: str,
    library: str,
    function: str,
    *,
    out_shape: ShapeInfer,
    out_dtype: DtypeInfer,
    bprop: Optional[Callable[..., Any]] = None,
):
    """`aot_op(...)`, also recorded under `name` so other code can `get_op(name)`.

    Registering the same name again with the same library and function returns
    the existing op; with a different one it is an error (two ops fighting
    over one name is always a bug).
    """
    path = os.path.realpath(os.fspath(library))
    old = _REGISTRY.get(name)
    if old is not None:
        if old.library == path and old.function == function:
            return old.op
        raise MftError(
            f"aot op name {name!r} is already registered for {old.library}:{old.function}; "
            f"cannot register it again for {path}:{function}"
        )
    op = aot_op(library, function, out_shape=out_shape, out_dtype=out_dtype, bprop=bprop)
    _REGISTRY[name] = AotOpSpec(name, path, function, bprop is not None, op)
    return op


def get_op(name: str):
    """The primitive registered under `name`."""
    spec = _REGISTRY.get(name)
    if spec is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise MftError(f"no aot op registered as {name!r} (registered: {known})")
    return spec.op


def registered_ops() -> dict[str, AotOpSpec]:
    """A copy of the registry: name -> AotOpSpec."""
    return dict(_REGISTRY)
