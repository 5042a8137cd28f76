"""Benchmarks: speed and quality targets live here, never in timed unit tests.

    python -m srlab.bench train   [--preset cpu] [--batch-size 16] [--hr-size 96] [--json OUT]
    python -m srlab.bench quality [--steps 1000] [--hr DIR ...] [--json OUT]

``train`` times one training step of every stage on whatever device is there, in fp32,
fp32 + channels-last, and mixed precision (+ channels-last) side by side.
``quality`` trains an 8-block SRResNet from scratch on the embedded photos (never on a test
set) and reports its PSNR/SSIM gain over bicubic on Set5 and Set14.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .train import STAGES, Trainer, make_config, pick_amp

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
MODES = {"fp32": ("off", False), "channels_last": ("off", True), "amp+channels_last": ("auto", True)}


def _stage_config(stage: str, preset: str, batch_size: int, hr_size: int, amp: str, channels_last: bool):
    cfg = make_config(stage, preset, init_from=None, vgg_weights=None, batch_size=batch_size, amp=amp,
                      channels_last=channels_last)
    if cfg.discriminator and cfg.discriminator["name"] == "vgg":
        hr_size = 128 if hr_size <= 128 else 256  # ESRGAN's discriminator takes 128 or 256
    disc = dict(cfg.discriminator, input_size=hr_size) if cfg.discriminator else None
    return dataclasses.replace(cfg, hr_size=hr_size, discriminator=disc)


def time_train_steps(cfg, device: str | None, warmup: int, steps: int) -> dict:
    """Seconds per step of ``Trainer.train_step`` on fixed random data (after ``warmup`` steps)."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, tmp, device=device, progress=False)
        lr, hr = trainer.patches.batch(0)
        for _ in range(warmup):
            trainer.train_step(lr, hr)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(lr, hr)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - start) / steps
        amp = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"
    return {"s_per_step": per_step, "steps_per_s": 1 / per_step, "samples_per_s": cfg.batch_size / per_step,
            "hr_size": cfg.hr_size, "dtype": amp, "device": str(trainer.device)}


def bench_train(args) -> dict:
    results = {}
    for stage in args.stages:
        for mode, (amp, channels_last) in MODES.items():
            cfg = _stage_config(stage, args.preset, args.batch_size, args.hr_size, amp, channels_last)
            r = time_train_steps(cfg, args.device, args.warmup, args.steps)
            results.setdefault(stage, {})[mode] = r
            print(f"{stage:<9} {mode:<18} {r['dtype']:<9} HR {r['hr_size']:<4} "
                  f"{r['s_per_step']:7.3f} s/step  {r['steps_per_s']:6.2f} steps/s  {r['samples_per_s']:7.1f} samples/s",
                  flush=True)
    return {"preset": args.preset, "batch_size": args.batch_size, "results": results}


def _benchmark_folders(hr_dirs: list[str] | None) -> dict[str, Path]:
    if hr_dirs:
        return {Path(d).parent.name if Path(d).name == "HR" else Path(d).name: Path(d) for d in hr_dirs}
    found = {name: BENCHMARKS / name / "HR" for name in ("Set5", "Set14")}
    found = {k: v for k, v in found.items() if v.is_dir()}
    if not found:
        raise SystemExit("no benchmark images: pass --hr path/to/Set5/HR (download them with your browser "
                         "or a later `python -m srlab download set5`)")
    return found


def bench_quality(args) -> dict:
    """Train SRResNet-8 (the cpu preset's recipe) for N steps, then evaluate against bicubic."""
    from .evaluate import evaluate_folder, model_upscaler

    folders = _benchmark_folders(args.hr)
    cfg = make_config("srresnet", "cpu", steps=args.steps, batch_size=16, hr_size=96,
                      val_every=max(args.steps // 4, 1), ckpt_every=max(args.steps // 4, 1),
                      early_stop_patience=None, seed=args.seed)
    out = Path(args.out)
    start = time.perf_counter()
    trainer = Trainer(cfg, out, device=args.device, progress=True)
    trainer.history_path.unlink(missing_ok=True)
    trainer.fit()
    minutes = (time.perf_counter() - start) / 60
    model = trainer.ema.module.float().eval()
    report = {"steps": args.steps, "batch_size": 16, "hr_size": 96, "model": "SRResNet-8 (bicubic residual, L1)",
              "train_minutes": round(minutes, 2), "device": str(trainer.device)}
    for name, folder in folders.items():
        sr = evaluate_folder(folder, scale=4, upscaler=model_upscaler(model, "srresnet8", str(trainer.device)),
                             progress=False)["mean"]
        bic = evaluate_folder(folder, scale=4, upscaler="bicubic", progress=False)["mean"]
        report[name] = {"psnr_y": sr["psnr_y"], "ssim_y": sr["ssim_y"], "bicubic_psnr_y": bic["psnr_y"],
                        "bicubic_ssim_y": bic["ssim_y"], "gain_db": sr["psnr_y"] - bic["psnr_y"],
                        "ssim_gain": sr["ssim_y"] - bic["ssim_y"]}
        print(f"{name:<6} SRResNet-8 {sr['psnr_y']:.2f} dB / {sr['ssim_y']:.4f}   bicubic {bic['psnr_y']:.2f} dB / "
              f"{bic['ssim_y']:.4f}   gain {report[name]['gain_db']:+.2f} dB")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srlab.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    tr = sub.add_parser("train", help="steps/s of every stage in fp32, channels-last and mixed precision")
    tr.add_argument("--preset", default="cpu", help="whose model sizes to time (colab = the papers')")
    tr.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--hr-size", type=int, default=96)
    tr.add_argument("--warmup", type=int, default=2)
    tr.add_argument("--steps", type=int, default=5)
    tr.add_argument("--device")
    tr.add_argument("--json")
    q = sub.add_parser("quality", help="SRResNet-8 trained N steps on the embedded photos vs bicubic")
    q.add_argument("--steps", type=int, default=1000)
    q.add_argument("--hr", nargs="+", help="HR benchmark folders (default: ../shared/benchmarks Set5, Set14)")
    q.add_argument("--out", default="runs/bench_quality")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device")
    q.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    result = bench_train(args) if args.what == "train" else bench_quality(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
