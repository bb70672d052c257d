"""`mft weights inspect|convert|reshard`: look inside, convert and reshard weights."""

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
        help="inspect, convert, reshard weight files; merge LoRA adapters",
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

    conv = wsub.add_parser(
        "convert",
        help="convert MindSpore .ckpt <-> .safetensors, or a .safetensors file to another float dtype",
        description="By suffix: SRC.ckpt -> DST.safetensors, SRC.safetensors -> DST.ckpt (MindSpore's checkpoint API), "
        "or SRC.safetensors -> DST.safetensors with --dtype.",
    )
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--dtype", choices=["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"], help="float dtype to write")
    conv.set_defaults(func=run_convert)

    rs = wsub.add_parser(
        "reshard",
        help="rewrite a checkpoint for another tensor/pipeline/expert-parallel layout (or merge to one HF folder)",
        description="Reads any layout (mft checkpoint with layout.json, Hugging Face folder, .safetensors file) "
        "and writes DST (a new folder): one file per rank + layout.json, or for --tp 1 --pp 1 --ep 1 a Hugging "
        "Face folder (sharded by --max-shard-size). Streams tensors; config and tokenizer files are copied.",
    )
    rs.add_argument("src")
    rs.add_argument("dst")
    rs.add_argument("--tp", type=int, default=1)
    rs.add_argument("--pp", type=int, default=1)
    rs.add_argument("--ep", type=int, default=1)
    rs.add_argument("--dtype", choices=["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"], help="float dtype to write")
    rs.add_argument("--max-shard-size", help="for tp=pp=ep=1: largest file, e.g. 5GB (default: one file)")
    rs.set_defaults(func=run_reshard)

    from mft.cli.merge_lora_cmd import add_merge_lora_parser

    add_merge_lora_parser(wsub)


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

    info = _describe_files(path, read_header)
    if os.path.isdir(path):
        from mft.weights.layout import folder_layout

        _, layout = folder_layout(path)
        split = defaultdict(int)
        for t in layout["tensors"].values():
            split[str(t.get("split_axis"))] += 1
        info["layout"] = {"parallel": layout.get("parallel"), "tensors": len(layout["tensors"]), "by_split_axis": dict(split)}
    return info


def _describe_files(path: str, read_header) -> dict:
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
    if "layout" in info:
        lay = info["layout"]
        par = ", ".join(f"{k}={v}" for k, v in (lay["parallel"] or {}).items())
        axes = ", ".join(f"axis {k}: {v}" if k != "None" else f"whole: {v}" for k, v in sorted(lay["by_split_axis"].items()))
        print(f"layout: {par}; {lay['tensors']} global tensors ({axes})")
    tot = info["total"]
    print(f"total: {tot['tensors']} tensors, {tot['parameters']:,d} parameters, {tot['bytes']:,d} bytes ({_human(tot['bytes'])})")
    for dtype, agg in sorted(info["by_dtype"].items()):
        print(f"  {dtype:<7} {agg['tensors']:>6} tensors {agg['parameters']:>16,d} parameters {_human(agg['bytes']):>12}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from mft.weights.ckpt import convert

    n = convert(args.src, args.dst, args.dtype)
    print(f"wrote {args.dst} ({n} tensors)")
    return 0


def run_reshard(args: argparse.Namespace) -> int:
    import time

    from mft.weights.reshard import reshard

    t0 = time.perf_counter()
    stats = reshard(args.src, args.dst, args.tp, args.pp, args.ep, dtype=args.dtype, max_shard_size=args.max_shard_size)
    dt = time.perf_counter() - t0
    print(f"wrote {args.dst}: {stats['files']} files, {stats['tensors']} tensors, {_human(stats['bytes'])} "
          f"in {dt:.2f} s (tp={args.tp} pp={args.pp} ep={args.ep})")
    return 0
