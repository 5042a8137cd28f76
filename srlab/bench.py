"""Benchmarks: speed and quality targets live here, never in timed unit tests.

    python -m srlab.bench train   [--preset cpu] [--batch-size 16] [--hr-size 96] [--json OUT]
    python -m srlab.bench quality [--steps 1000] [--hr DIR ...] [--json OUT]
    python -m srlab.bench data    [--hr DIR] [--json OUT]
    python -m srlab.bench infer   [--model rrdbnet] [--sizes 256 512 1024] [--tile 128] [--json OUT]

``train`` times one training step of every stage on whatever device is there, in fp32,
fp32 + channels-last, and mixed precision (+ channels-last) side by side.
``quality`` trains an 8-block SRResNet from scratch on the embedded photos (never on a test
set) and reports its PSNR/SSIM gain over bicubic on Set5 and Set14.
``data`` measures training patches per second through a DataLoader with 2 workers: the
patch store (``PatchDataset``) against the naive way (decode a full 2K PNG per sample).
``infer`` upscales square photos of each size whole and in tiles, each run in a fresh
process, and reports seconds per output megapixel and the peak memory the call added
(resident memory on a CPU, allocated memory on CUDA).
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

from .train import STAGES, Trainer, make_config

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
# "amp" is what training picks by itself (fp32 on a CPU without AMX); bf16 is forced to show its cost.
MODES = {
    "fp32": ("off", False),
    "channels_last": ("off", True),
    "amp+channels_last": ("auto", True),
    "bf16+channels_last": ("bf16", True),
}


def _stage_config(stage: str, preset: str, batch_size: int, hr_size: int, amp: str, channels_last: bool):
    cfg = make_config(
        stage, preset, init_from=None, vgg_weights=None, batch_size=batch_size, amp=amp, channels_last=channels_last
    )
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
    return {
        "s_per_step": per_step,
        "steps_per_s": 1 / per_step,
        "samples_per_s": cfg.batch_size / per_step,
        "hr_size": cfg.hr_size,
        "dtype": amp,
        "device": str(trainer.device),
    }


def bench_train(args) -> dict:
    results = {}
    for stage in args.stages:
        for mode, (amp, channels_last) in MODES.items():
            if amp == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
                continue
            cfg = _stage_config(stage, args.preset, args.batch_size, args.hr_size, amp, channels_last)
            r = time_train_steps(cfg, args.device, args.warmup, args.steps)
            results.setdefault(stage, {})[mode] = r
            print(
                f"{stage:<9} {mode:<18} {r['dtype']:<9} HR {r['hr_size']:<4} "
                f"{r['s_per_step']:7.3f} s/step  {r['steps_per_s']:6.2f} steps/s  {r['samples_per_s']:7.1f} samples/s",
                flush=True,
            )
    return {"preset": args.preset, "batch_size": args.batch_size, "results": results}


def _benchmark_folders(hr_dirs: list[str] | None) -> dict[str, Path]:
    if hr_dirs:
        return {Path(d).parent.name if Path(d).name == "HR" else Path(d).name: Path(d) for d in hr_dirs}
    found = {name: BENCHMARKS / name / "HR" for name in ("Set5", "Set14")}
    found = {k: v for k, v in found.items() if v.is_dir()}
    if not found:
        raise SystemExit(
            "no benchmark images: pass --hr path/to/Set5/HR (download them with your browser "
            "or a later `python -m srlab download set5`)"
        )
    return found


def bench_quality(args) -> dict:
    """Train SRResNet-8 (the cpu preset's recipe) for N steps, then evaluate against bicubic."""
    from .evaluate import evaluate_folder, model_upscaler

    folders = _benchmark_folders(args.hr)
    cfg = make_config(
        "srresnet",
        "cpu",
        steps=args.steps,
        batch_size=16,
        hr_size=96,
        val_every=max(args.steps // 4, 1),
        ckpt_every=max(args.steps // 4, 1),
        early_stop_patience=None,
        seed=args.seed,
    )
    out = Path(args.out)
    start = time.perf_counter()
    trainer = Trainer(cfg, out, device=args.device, progress=True)
    trainer.history_path.unlink(missing_ok=True)
    trainer.fit()
    minutes = (time.perf_counter() - start) / 60
    model = trainer.ema.module.float().eval()
    report = {
        "steps": args.steps,
        "batch_size": 16,
        "hr_size": 96,
        "model": "SRResNet-8 (bicubic residual, L1)",
        "train_minutes": round(minutes, 2),
        "device": str(trainer.device),
    }
    for name, folder in folders.items():
        sr = evaluate_folder(
            folder, scale=4, upscaler=model_upscaler(model, "srresnet8", str(trainer.device)), progress=False
        )["mean"]
        bic = evaluate_folder(folder, scale=4, upscaler="bicubic", progress=False)["mean"]
        report[name] = {
            "psnr_y": sr["psnr_y"],
            "ssim_y": sr["ssim_y"],
            "bicubic_psnr_y": bic["psnr_y"],
            "bicubic_ssim_y": bic["ssim_y"],
            "gain_db": sr["psnr_y"] - bic["psnr_y"],
            "ssim_gain": sr["ssim_y"] - bic["ssim_y"],
        }
        print(
            f"{name:<6} SRResNet-8 {sr['psnr_y']:.2f} dB / {sr['ssim_y']:.4f}   bicubic {bic['psnr_y']:.2f} dB / "
            f"{bic['ssim_y']:.4f}   gain {report[name]['gain_db']:+.2f} dB"
        )
    return report


def _make_2k_pngs(folder: Path, n: int = 8) -> Path:
    """DIV2K-sized (2040 px wide) PNGs from the embedded photos, with mild noise so they
    compress (and decode) like real photos rather than like smooth upscales."""
    from .data import embedded_images
    from .images import write_image
    from .resize import imresize

    rng = np.random.default_rng(0)
    photos = list(embedded_images().values())
    for k in range(n):
        big = imresize(photos[k % len(photos)], size=(1356, 2040)).astype(np.int16)
        big = np.clip(big + rng.integers(-6, 7, big.shape), 0, 255).astype(np.uint8)
        write_image(folder / f"{k:04d}.png", big)
    return folder


class NaivePatches(torch.utils.data.Dataset):
    """The slow way: decode a whole HR PNG for every sample, crop it, make its LR."""

    def __init__(self, hr_dir, hr_size: int, length: int, scale: int = 4):
        from .images import list_images

        self.paths, self.hr_size, self.length, self.scale = list_images(hr_dir), hr_size, length, scale

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        from .data import _to_chw_tensor, to_rgb8
        from .images import read_image
        from .resize import imresize

        rng = np.random.default_rng(i)
        img = to_rgb8(read_image(self.paths[i % len(self.paths)]))
        top = int(rng.integers(0, img.shape[0] - self.hr_size + 1))
        left = int(rng.integers(0, img.shape[1] - self.hr_size + 1))
        hr = np.ascontiguousarray(img[top : top + self.hr_size, left : left + self.hr_size])
        return _to_chw_tensor(imresize(hr, 1 / self.scale)), _to_chw_tensor(hr)


def _patches_per_second(dataset, n_batches: int, batch_size: int = 16, workers: int = 2) -> float:
    """Patches/s through a DataLoader, not counting worker start-up (the first batch)."""
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=batch_size * (n_batches + 1), generator=torch.Generator().manual_seed(0)
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(n_batches):
        seen += len(next(it)[1])
    return seen / (time.perf_counter() - start)


def bench_data(args) -> dict:
    from .data import PatchDataset, extract_patches

    with tempfile.TemporaryDirectory() as tmp:
        hr_dir = Path(args.hr) if args.hr else _make_2k_pngs(Path(tmp) / "hr")
        store = extract_patches(hr_dir, Path(tmp) / "store", size=480, stride=240, workers=2, progress=False)
        fast, naive, speedup = {}, {}, {}
        for size in args.sizes:
            fast[str(size)] = _patches_per_second(PatchDataset(store, hr_size=size), args.batches)
            naive[str(size)] = _patches_per_second(
                NaivePatches(hr_dir, size, length=16 * (args.naive_batches + 2)), args.naive_batches
            )
            speedup[str(size)] = fast[str(size)] / naive[str(size)]
            print(
                f"HR {size:<4} patch store {fast[str(size)]:8.0f} patches/s   naive (decode a 2K PNG) "
                f"{naive[str(size)]:6.0f} patches/s   speed-up {speedup[str(size)]:5.1f}x",
                flush=True,
            )
    return {
        "patches_per_s": fast,
        "naive_patches_per_s": naive,
        "speedup": speedup,
        "workers": 2,
        "batch_size": 16,
        "degradation": "bicubic",
    }


def _peak_reset(device: torch.device) -> int:
    """Reset the peak-memory counter; returns the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    return _proc_status_bytes("VmRSS")


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return _proc_status_bytes("VmHWM")


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _time_upscale(spec: dict) -> dict:
    """One measurement, in its own process so that no earlier run's memory is counted."""
    from skimage import data

    from .infer import upscale
    from .models import build_generator
    from .resize import imresize

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = build_generator(spec["model"], **spec["kwargs"]).eval().to(device)
    photo = imresize(data.astronaut(), size=(spec["size"], spec["size"]))  # (size, size, 3) uint8
    upscale(photo[:64, :64], model, device=device)  # warm-up: kernels chosen, weights in place
    before = _peak_reset(device)
    start = time.perf_counter()
    out = upscale(photo, model, tile=spec["tile"], tile_overlap=spec["overlap"], device=device, half=spec["half"])
    seconds = time.perf_counter() - start
    peak = _peak_bytes(device) - before
    megapixels = out.shape[0] * out.shape[1] / 1e6
    return {"seconds": seconds, "s_per_output_mp": seconds / megapixels, "peak_mib": peak / 2**20}


def bench_infer(args) -> dict:
    import multiprocessing

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"num_block": args.blocks} if args.blocks else {}
    results = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for size in args.sizes:
            row = {}
            for mode, tile in (("untiled", None), ("tiled", args.tile)):
                spec = dict(
                    model=args.model,
                    kwargs=kwargs,
                    size=size,
                    tile=tile,
                    overlap=args.overlap,
                    device=device,
                    half=args.half,
                )
                row[mode] = pool.apply(_time_upscale, (spec,))
            row["time_ratio"] = row["tiled"]["seconds"] / row["untiled"]["seconds"]
            results[str(size)] = row
            print(
                f"{size:>5} px  untiled {row['untiled']['s_per_output_mp']:7.3f} s/MP "
                f"{row['untiled']['peak_mib']:8.0f} MiB"
                f"   tiled {row['tiled']['s_per_output_mp']:7.3f} s/MP {row['tiled']['peak_mib']:8.0f} MiB"
                f"   time tiled/untiled {row['time_ratio']:.2f}",
                flush=True,
            )
    growth = {}
    if len(args.sizes) >= 2:
        small, large = str(sorted(args.sizes)[-2]), str(max(args.sizes))
        growth = {
            mode: results[large][mode]["peak_mib"] / max(results[small][mode]["peak_mib"], 1e-9)
            for mode in ("untiled", "tiled")
        }  # a tiny input may add no memory at all
        print(f"peak memory {large} px / {small} px: untiled {growth['untiled']:.2f}x, tiled {growth['tiled']:.2f}x")
    return {
        "model": args.model,
        "kwargs": kwargs,
        "device": device,
        "tile": args.tile,
        "overlap": args.overlap,
        "half": args.half,
        "results": results,
        "peak_growth": growth,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m srlab.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    d = sub.add_parser("data", help="PatchDataset vs decoding a 2K PNG per sample, DataLoader with 2 workers")
    d.add_argument("--hr", help="folder of 2K HR PNGs (default: 8 made from the embedded photos)")
    d.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 256])
    d.add_argument("--batches", type=int, default=100)
    d.add_argument("--naive-batches", type=int, default=6)
    d.add_argument("--json")
    inf = sub.add_parser("infer", help="s per output megapixel and peak memory, tiled and untiled")
    inf.add_argument("--model", default="rrdbnet", choices=("rrdbnet", "srresnet"))
    inf.add_argument("--blocks", type=int, help="number of blocks (default: the paper's, 23 RRDBs / 16)")
    inf.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="input sizes in pixels")
    inf.add_argument("--tile", type=int, default=128)
    inf.add_argument("--overlap", type=int, default=32)
    inf.add_argument("--half", action="store_true", help="fp16 on CUDA, bf16 on CPU")
    inf.add_argument("--device")
    inf.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    result = {"train": bench_train, "quality": bench_quality, "data": bench_data, "infer": bench_infer}[args.what](args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
