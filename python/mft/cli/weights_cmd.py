"""`mft weights inspect PATH [--json]`: what is inside safetensors files."""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections import defaultdict

from mft.errors import MftError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights",
        help="inspect weight files",
        description="Look inside safetensors weight files.",
    )
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    ins = wsub.add_parser(
        "inspect",
        help="list tensors, dtypes, shapes and sizes of a .safetensors file or folder",
        description="List every tensor (name, dtype, shape, bytes) and totals for a .safetensors file "
        "or every .safetensors file in a folder. Only headers are read.",
    )
    ins.add_argument("path", help="a .safetensors file or a folder of them")
    ins.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    ins.set_defaults(func=run_inspect)


def safetensors_files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise MftError(f"{path}: folder has no .safetensors files")
        return files
    if os.path.isfile(path):
        return [path]
    raise MftError(f"{path}: no such file or folder")


def describe(path: str) -> dict:
    """Every tensor of every file plus totals, from headers alone."""
    from mft.weights.safetensors import read_header

    files, by_dtype = [], defaultdict(lambda: {"tensors": 0, "parameters": 0, "bytes": 0})
    total = {"tensors": 0, "parameters": 0, "bytes": 0}
    for f in safetensors_files(path):
        header, metadata, _ = read_header(f)
        tensors = []
        for name, e in header.items():
            params = 1
            for d in e["shape"]:
                params *= d
            nbytes = e["data_offsets"][1] - e["data_offsets"][0]
            tensors.append({"name": name, "dtype": e["dtype"], "shape": e["shape"], "parameters": params, "bytes": nbytes})
            for agg in (total, by_dtype[e["dtype"]]):
                agg["tensors"] += 1
                agg["parameters"] += params
                agg["bytes"] += nbytes
        files.append({"file": f, "metadata": metadata, "tensors": tensors})
    return {"files": files, "total": total, "by_dtype": dict(by_dtype)}


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def run_inspect(args: argparse.Namespace) -> int:
    info = describe(args.path)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for f in info["files"]:
        print(f"{f['file']}  ({len(f['tensors'])} tensors)")
        if f["metadata"]:
            print("  metadata: " + ", ".join(f"{k}={v}" for k, v in f["metadata"].items()))
        width = max((len(t["name"]) for t in f["tensors"]), default=4)
        for t in sorted(f["tensors"], key=lambda t: t["name"]):
            shape = "x".join(map(str, t["shape"])) or "scalar"
            print(f"  {t['name']:<{width}}  {t['dtype']:<7} {shape:<20} {t['bytes']:>14,d}")
    tot = info["total"]
    print(f"total: {tot['tensors']} tensors, {tot['parameters']:,d} parameters, {tot['bytes']:,d} bytes ({_human(tot['bytes'])})")
    for dtype, agg in sorted(info["by_dtype"].items()):
        print(f"  {dtype:<7} {agg['tensors']:>6} tensors {agg['parameters']:>16,d} parameters {_human(agg['bytes']):>12}")
    return 0
