"""Command line: ``python -m srlab {demo,evaluate} ...``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .evaluate import CLASSICAL_METHODS, evaluate_folder, format_table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m srlab", description="srlab: GAN super-resolution lab")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="classical upscalers on the embedded scikit-image photos")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--scale", type=int, default=4, choices=(2, 3, 4, 8))

    ev = sub.add_parser("evaluate", help="PSNR/SSIM of an upscaler on a folder of HR images")
    ev.add_argument("--hr", required=True, help="folder of HR images")
    ev.add_argument("--lr", help="folder of LR images (paired by sorted order); default: MATLAB bicubic of HR")
    ev.add_argument("--scale", type=int, default=4)
    ev.add_argument("--model", default="bicubic", help=f"one of {', '.join(CLASSICAL_METHODS)}")
    ev.add_argument("--json", help="also write the report to this JSON file")
    return parser


def _demo(args) -> int:
    from .demo import run_demo

    result = run_demo(args.out, scale=args.scale)
    print((Path(args.out) / "metrics.md").read_text())
    print(f"wrote {args.out}/comparison.png, metrics.json and metrics.md ({len(result['images'])} images)")
    return 0


def _evaluate(args) -> int:
    if args.model not in CLASSICAL_METHODS:
        if Path(args.model).exists():
            print(f"error: {args.model} looks like a checkpoint; evaluating checkpoints arrives with the "
                  f"training engine. For now --model takes {', '.join(CLASSICAL_METHODS)}.", file=sys.stderr)
        else:
            print(f"error: unknown --model {args.model!r}: use {', '.join(CLASSICAL_METHODS)}", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_folder(args.hr, args.lr, scale=args.scale, upscaler=args.model)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    report.update(hr_dir=str(args.hr), lr_dir=args.lr)
    print(format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"demo": _demo, "evaluate": _evaluate}[args.command](args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
