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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/02_bicubic_baseline.ipynb)
#
# # 02 · Baselines: interpolation, SRCNN, an autoencoder, and how the numbers are made
#
# Before any GAN we need a floor to beat and a ruler to measure with. The floor is classical
# interpolation (nearest, bilinear, bicubic, Lanczos) and two small CNNs trained with a pixel
# loss. The ruler is PSNR/SSIM, computed the way SR papers compute them, because a
# different convention moves the number by more than most papers' improvements.
#
# **Learning goals**
#
# - Describe the four interpolation kernels and see their artefacts (blocks, blur, ringing)
#   in zoomed crops.
# - Train SRCNN and a small convolutional autoencoder with the course's training engine.
# - Explain why a network trained with MSE (or L1) produces blurry images: the minimiser of
#   the expected MSE is the *mean* of the plausible HR images.
# - Compute PSNR and SSIM with the benchmark conventions (Y channel, border crop, MATLAB
#   bicubic) and measure how far each other convention moves the number.
# - Read a results table of all baselines on the test images.

# %%
# Setup: on Colab, install srlab from the repository, once per runtime (Colab's torch is kept as is).
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("srlab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/srlab-course/srlab"], check=True)
from srlab import notebook as nb
print(nb.device_summary())

# %% tags=["parameters"]
PRESET = nb.choose_preset()  # "quick" on a CPU, "colab" on a GPU; SRLAB_PRESET overrides
USE_DRIVE = True  # Colab: runs and downloads on Google Drive (False: on the runtime, lost with it)
SCALE = 4

# Training steps of each learned baseline; None keeps the preset's own length (6 in smoke).
# These are baselines, not the course's models, so a real run gets a short budget.
STEPS = {"smoke": None, "quick": 200, "cpu": 300, "colab": 5000, "seed": 5000}[nb.size_preset(PRESET)]

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
print(nb.colab_plan("02_bicubic_baseline"))

# %% [markdown]
# ## 0. Test images and training data
#
# Test images must be images **no model trained on**. With the `colab`, `cpu` and `seed`
# presets we use the two classic test sets, downloaded once from the EDSR authors'
# `benchmark.tar`: **Set5** (5 images) and **Set14** (14 images). In `quick` and `smoke`
# (`srlab.presets.EMBEDDED_PRESETS`) nothing is downloaded: the seven embedded photos are the
# test folder. Six of them are also the training photos of those presets, so there the
# learned rows of the results table (section 7) are scores on training images, which flatter
# them; `coffee`, the validation photo `srlab.presets.VALIDATION_IMAGE`, is the held-out one,
# and every single-image comparison below uses it.
#
# Training data: with `colab`, DIV2K's patch store, which `nb.training_data` builds on this
# new runtime when it is missing (from the archive on Drive, as notebook 01 does; a few
# minutes). In the CPU presets, the store notebook 01 cut from the embedded photos but
# `coffee` when this machine has it, else the embedded photos directly (the training engine
# holds `coffee` out for validation). `nb.training_data` picks and says which.

# %%
from srlab.data import embedded_images
from srlab.download import download_dataset
from srlab.images import list_images, write_image
from srlab.presets import EMBEDDED_PRESETS, VALIDATION_IMAGE

EMBEDDED = PRESET in EMBEDDED_PRESETS  # quick and smoke: the embedded photos, nothing downloaded
if EMBEDDED:
    test_sets = {"embedded": RUNS / PRESET / "test_hr"}
    for name, img in embedded_images().items():
        write_image(test_sets["embedded"] / f"{name}.png", img)
else:
    test_sets = {name: download_dataset(name.lower(), DATA_DIR, archives=nb.archive_dir()) / "HR"
                 for name in ("Set5", "Set14")}  # the archive is kept on Drive, downloaded once
for name, folder in test_sets.items():
    print(f"{name}: {len(list_images(folder))} images in {folder}")

DATA = nb.training_data(DATA_DIR, PRESET)  # notebook 01's patch store, else None: the embedded photos
overrides = {"data": DATA}
if STEPS is not None:
    overrides["steps"] = STEPS

# %% [markdown]
# ## 1. Classical interpolation
#
# Upscaling by $s$ places the LR pixels $x_j$ on a grid $s$ times coarser than the output and
# fills the gaps with a fixed kernel $k$:
#
# $$\hat y(t) = \sum_j x_j \, k\!\left(\tfrac{t}{s} - j\right)$$
#
# (one axis shown; images are done rows then columns). The four classic kernels:
#
# - **nearest**: $k(u) = 1$ for $|u| < \tfrac12$: copies each LR pixel into an $s \times s$
#   block.
# - **bilinear**: $k(u) = \max(0, 1 - |u|)$, the tent: linear ramps between neighbours.
# - **bicubic** (Keys): a piecewise cubic with parameter $a$,
#   $$k(u) = \begin{cases} (a+2)|u|^3 - (a+3)|u|^2 + 1 & |u| \le 1 \\ a|u|^3 - 5a|u|^2 + 8a|u| - 4a & 1 < |u| < 2 \\ 0 & \text{otherwise} \end{cases}$$
#   MATLAB uses $a = -0.5$, OpenCV and PyTorch $a = -0.75$. The negative lobes sharpen edges
#   slightly (and ring a little).
# - **Lanczos-4**: $k(u) = \operatorname{sinc}(u)\operatorname{sinc}(u/4)$ for $|u| < 4$: a
#   windowed ideal low-pass, the sharpest of the four and the one that rings most.
#
# The LR test image is made the benchmark way: crop HR to a multiple of the scale (`modcrop`)
# and shrink it with MATLAB's bicubic, $x = \operatorname{imresize}(y, 1/s)$. Bicubic is
# MATLAB's (`srlab.resize.imresize`), the three others OpenCV's. `srlab.viz.compare` scores
# every output against HR (PSNR-Y, SSIM-Y, PSNR-RGB, the benchmark conventions of section 6),
# shows the table and draws the same zoomed crop of each, with its PSNR-Y under the label.

# %%
import matplotlib.pyplot as plt

from srlab.data import to_rgb8
from srlab.evaluate import CLASSICAL_METHODS, upscale_classical
from srlab.images import read_image
from srlab.resize import imresize, modcrop
from srlab.viz import compare

test_dir = next(iter(test_sets.values()))
example = test_dir / (f"{VALIDATION_IMAGE}.png" if EMBEDDED else "butterfly.png")
example = example if example.exists() else list_images(test_dir)[0]
hr = modcrop(to_rgb8(read_image(example)), SCALE)
lr = imresize(hr, 1 / SCALE)
print(f"{example.name}: HR {hr.shape[1]}x{hr.shape[0]}, LR {lr.shape[1]}x{lr.shape[0]}")

outputs = {m: upscale_classical(lr, SCALE, m) for m in CLASSICAL_METHODS}
scores = compare(outputs, hr, SCALE, lr=lr, name=example.stem, niqe=False)  # {method: {"psnr_y", "ssim_y", "psnr_rgb"}}
plt.show()

# %% [markdown]
# What to notice: nearest shows the $4 \times 4$ blocks; bilinear removes them but smears
# edges; bicubic and Lanczos are a little sharper and score higher. None of them creates
# detail: every output is a smooth function of the same few LR pixels, so thin lines and
# texture that fell between LR samples are gone for good. The PSNR differences between the
# last three are a few tenths of a dB: what a fully trained model adds is more than that, but
# `quick`'s 200 steps only bring the autoencoder to about Lanczos's level (section 4's lines
# give the numbers).

# %% [markdown]
# ## 2. SRCNN: the first CNN for super-resolution
#
# SRCNN (Dong et al., ECCV 2014) upsamples the LR image with bicubic first, then refines it
# with three convolutions, read as the three steps of sparse-coding SR:
#
# | layer | kernel | channels | role |
# |---|---|---|---|
# | conv1 + ReLU | $9 \times 9$ | 3 → 64 | patch extraction: 64 feature maps of local structure |
# | conv2 + ReLU | $5 \times 5$ | 64 → 32 | non-linear mapping of LR features to HR features |
# | conv3 | $5 \times 5$ | 32 → 3 | reconstruction: the HR image |
#
# About 69,000 parameters, a receptive field of $9 + 4 + 4 = 17$ HR pixels, and no skip
# connection. The paper trains it to minimise the mean squared error to the HR patch:
#
# $$\mathcal{L}_{MSE} = \frac{1}{N}\sum_{i=1}^{N} (\hat y_i - y_i)^2, \qquad \hat y = G(x)$$
#
# over all $N$ pixels and channels of a batch. We train it with the same engine and recipe as
# the course's SRResNet (`make_config("srresnet", ...)` from `srlab.presets`: its pixel loss,
# MSE in `colab` and `smoke` and the mean absolute error L1 in `cpu` and `quick`, as the line
# printed below says; Adam, EMA of the weights, validation PSNR, checkpoints) and only swap
# the generator: the `srresnet` stage's own
# generator spec is replaced by `{"name": "srcnn"}`. (`make_config(..., generator={...})` would
# merge the new spec into the preset's, keeping SRResNet's `num_block` and the like, so the
# cell replaces it on the finished config with `dataclasses.replace`.)

# %%
import dataclasses

from srlab.presets import make_config
from srlab.train import train

from srlab.data import center_crops
from srlab.metrics import batch_psnr
from srlab.resize import imresize_torch

base = make_config("srresnet", PRESET, init_from=None, **overrides)  # the srresnet stage's recipe
cfg = dataclasses.replace(base, generator={"name": "srcnn"})  # with SRCNN as its generator
print(f"SRCNN: {cfg.steps} steps, batch {cfg.batch_size}, HR patches {cfg.hr_size} px, {cfg.pixel_loss} loss, "
      f"lr {cfg.lr_g}")
srcnn_summary = train(cfg, RUNS / PRESET / "srcnn", resume=True, progress=True)
print(srcnn_summary)

# bicubic on the crop validation scores (the central val_crop square of coffee), the reference for best_psnr
(lr_val, hr_val), = center_crops([embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE]], cfg.val_crop, SCALE)
BICUBIC_VAL = batch_psnr(imresize_torch(lr_val, SCALE).clamp(0, 1), hr_val, crop_border=SCALE).item()
print(nb.psnr_versus("SRCNN, best validation PSNR-Y", srcnn_summary["best_psnr"], "bicubic", BICUBIC_VAL))

# %% [markdown]
# What to notice: the summary gives the best validation PSNR-Y (`best_psnr`, in dB) on the
# held-out crop, and the last line puts it next to bicubic on the same crop. SRCNN starts from
# random weights and has no shortcut to its bicubic input: it must first learn to pass that
# input through, and until it has, it scores below bicubic, at first far below. A short run
# (`smoke`'s six steps, `quick`'s 200) ends there, several dB below; with a longer budget it
# climbs past bicubic (exercise 2 measures when). The run folder holds `best.pt`, `last.pt`, `history.jsonl` and a sample
# strip per validation in `samples/`.

# %%
from srlab.viz import plot_history

plot_history(RUNS / PRESET / "srcnn" / "history.jsonl")
plt.show()

# %% [markdown]
# What to notice: the loss curve (log scale) and the validation PSNR at each validation (its
# panel spans at least 1 dB, so a change of a few thousandths of a dB stays flat, as it should).
# With a real budget the loss drops fast in the first few hundred steps (learning to copy the
# bicubic input), then slowly (learning the missing detail). A run of a handful of steps
# (`smoke`) shows no trend: the loss jumps with each batch of two patches. `quick`'s 200 steps
# validate once (`val_every` is 200), so its PSNR panel has a single point.

# %% [markdown]
# ## 3. A small convolutional autoencoder
#
# The second baseline (from student project B) compresses the bicubic-upsampled image
# through a bottleneck and decodes a *correction* that is added back to it:
#
# $$\hat y = \operatorname{bicubic}(x) + D\big(E(\operatorname{bicubic}(x))\big)$$
#
# - encoder $E$: two $3 \times 3$ convolutions with stride 2 (64 then 128 channels, ReLU),
#   so the code is 4 times smaller per side than the output;
# - decoder $D$: two $4 \times 4$ transposed convolutions with stride 2 (128 → 64 → 3),
#   back to full size.
#
# Because of the residual sum (bicubic with srlab's MATLAB kernel), the network only has to
# learn a correction, and a zero correction already scores the floor. The decoder's last
# layer starts at zero, so the untrained autoencoder *is* MATLAB bicubic. The bottleneck
# limits how much fine detail the correction can carry. Same loss, same engine.

# %%
cfg = dataclasses.replace(base, generator={"name": "autoencoder"})
autoencoder_summary = train(cfg, RUNS / PRESET / "autoencoder", resume=True, progress=True)
print(autoencoder_summary)
best = autoencoder_summary["best_psnr"]
print(nb.psnr_versus("autoencoder, best validation PSNR-Y", best, "bicubic", BICUBIC_VAL))
print(nb.psnr_versus("autoencoder, best validation PSNR-Y", best, "SRCNN", srcnn_summary["best_psnr"]))

# %% [markdown]
# What to notice: the two lines put the autoencoder's best validation PSNR next to bicubic's
# and SRCNN's. The residual connection gives the autoencoder a head start: it starts exactly at
# bicubic and never has to learn to copy the input, which SRCNN must do first. So after
# `smoke`'s six steps it is still level with bicubic (it has barely moved from where it
# started), a few hundred steps (`quick`) usually lift it above, and SRCNN, on the same budget, is
# still climbing up to bicubic, far below both. The two lines say where this run ended.

# %% [markdown]
# ## 4. Looking at the learned baselines
#
# `srlab.checkpoint.load_generator` rebuilds a model from a checkpoint (its config says the
# architecture) with the EMA weights; `model_upscaler` wraps it as a function
# `(lr, scale) -> sr` on numpy images, the same interface as `upscale_classical`.

# %%
import torch

from srlab.checkpoint import load_generator
from srlab.evaluate import model_upscaler
from srlab.models import count_parameters

device = "cuda" if torch.cuda.is_available() else "cpu"
upscalers = {}
for name in ("srcnn", "autoencoder"):
    model, info = load_generator(RUNS / PRESET / name / "best.pt", device=device)
    upscalers[name] = model_upscaler(model, name, device=device)
    print(f"{name}: {count_parameters(model):,} parameters, step {info['step']}")

learned = {name: up(lr, SCALE) for name, up in upscalers.items()}
scores.update(compare({"bicubic": outputs["bicubic"], **learned}, hr, SCALE, lr=lr, name=example.stem, niqe=False))
plt.show()
for name in learned:
    print(nb.psnr_versus(name, scores[name]["psnr_y"], "bicubic", scores["bicubic"]["psnr_y"]))

# %% [markdown]
# What to notice: the lines under the crops say where each network stands against bicubic on
# this image. A network above bicubic is sharper on strong edges, but its texture is still
# smooth: fine, random-looking detail (fur, hair, foliage) comes out as a soft average. That is
# not a lack of training; the next section shows it is what a pixel loss asks for. A network
# still below bicubic has not yet learned what interpolation gives for free (its crop shows
# it), and one level with bicubic has not moved from where it started: its crop cannot look
# different from bicubic's either.

# %% [markdown]
# ## 5. Why pixel losses blur
#
# Many HR images $y$ are consistent with one LR image $x$: the detail that downsampling
# removed could have been anything that averages to the same LR pixels. Call their
# distribution $p(y \mid x)$. A network trained with MSE minimises, for each $x$,
#
# $$\mathbb{E}_{y \sim p(y\mid x)}\big[\lVert \hat y - y \rVert^2\big]
#   = \lVert \hat y - \mathbb{E}[y \mid x] \rVert^2 + \operatorname{tr}\operatorname{Cov}[y \mid x],$$
#
# and only the first term depends on $\hat y$. So the best answer is
# $\hat y^\star = \mathbb{E}[y \mid x]$: the **mean** of all plausible HR images. Averaging
# sharp images that disagree on where the texture is gives a smooth image. (With L1 the
# minimiser is the per-pixel median, which is no sharper where the candidates split evenly.)
#
# A minimal example: vertical stripes one pixel wide, and the same stripes shifted by one
# pixel. Both shrink to the same flat grey LR image, so no model can tell them apart.

# %%
import numpy as np

stripes_a = np.zeros((32, 32)); stripes_a[:, ::2] = 1.0  # white columns 0, 2, 4, ...
stripes_b = 1.0 - stripes_a  # the same texture, shifted by one pixel
lr_a, lr_b = imresize(stripes_a, 1 / SCALE), imresize(stripes_b, 1 / SCALE)
inner = (slice(2, -2), slice(2, -2))  # 2 LR pixels from each edge feel the border padding
print(f"largest difference of the two LR images (inside): {np.abs(lr_a - lr_b)[inner].max():.1e}")

guesses = {"guess A": stripes_a, "guess B": stripes_b, "mean of A and B": (stripes_a + stripes_b) / 2}
print(f"\n{'prediction':<16} {'E[MSE]':>7} {'E[L1]':>6}   (truth is A or B, 50/50)")
for name, guess in guesses.items():
    mse = np.mean([np.mean((guess - truth) ** 2) for truth in (stripes_a, stripes_b)])
    l1 = np.mean([np.mean(np.abs(guess - truth)) for truth in (stripes_a, stripes_b)])
    print(f"{name:<16} {mse:7.3f} {l1:6.3f}")

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
panels = [(stripes_a[:16, :16], "plausible HR A (16 px)"), (stripes_b[:16, :16], "plausible HR B (16 px)"),
          (lr_a[inner], "their LR (the same)"), (guesses["mean of A and B"][:16, :16], "MSE-optimal output")]
for ax, (img, title) in zip(axes, panels):
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])  # keep the frame: white stripes touch the edge
fig.tight_layout()
plt.show()

# %% [markdown]
# What to notice: committing to either sharp answer costs an expected MSE of 0.5; the flat
# grey, which is neither, costs 0.25 and wins. Under L1 all three tie, so L1 gives no reason
# to prefer the sharp answers either. Real textures are this example many times over: a
# pixel-loss network learns to hedge, and hedging looks like blur. Notebooks 03-05 add
# losses that reward a *plausible* sample of $p(y \mid x)$ instead of its mean: a perceptual
# (VGG feature) loss and an adversarial loss.

# %% [markdown]
# ## 6. How PSNR and SSIM are computed
#
# **PSNR** compares an output $\hat y$ with the HR image $y$ through their MSE, on a log
# scale, with $L$ the value of white (255 for 8-bit images):
#
# $$\mathrm{PSNR} = 10 \log_{10} \frac{L^2}{\frac{1}{N}\sum_i (\hat y_i - y_i)^2} \;\text{dB}.$$
#
# **SSIM** (Wang et al. 2004) compares local means $\mu$, variances $\sigma^2$ and the
# covariance $\sigma_{ab}$ in an $11 \times 11$ Gaussian window ($\sigma = 1.5$), with
# $C_1 = (0.01 L)^2$, $C_2 = (0.03 L)^2$, averaged over all window positions:
#
# $$\mathrm{SSIM}(a, b) = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}{(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)}.$$
#
# SR papers (since SRCNN) add three conventions, each of which changes the number:
#
# 1. **Y channel.** Both images are converted to the luma of BT.601 as MATLAB's `rgb2ycbcr`
#    gives it, $Y = 16 + 65.481 R + 128.553 G + 24.966 B$ for $R, G, B \in [0, 1]$
#    ($Y \in [16, 235]$), and only $Y$ is compared. Colour errors, which eyes forgive, are
#    left out.
# 2. **Border crop.** $s$ pixels (the scale) are removed from every edge before comparing,
#    because the outermost pixels depend on how each method pads the border.
# 3. **MATLAB bicubic.** LR images are made with MATLAB's `imresize(y, 1/s)`: cubic kernel
#    with $a = -0.5$, *antialiased* (the kernel is stretched by $s$ when shrinking), edge
#    pixels replicated, and rounded to 8 bits after each axis. OpenCV's `INTER_CUBIC` uses
#    $a = -0.75$ and does not antialias when shrinking: it samples the HR image and keeps its
#    aliasing, a different problem. PIL's `BICUBIC` antialiases with $a = -0.5$ too, but
#    its filter and rounding are not MATLAB's: on Set5 and Set14, 10-19 % of the LR values
#    differ (by a few grey levels, up to 14). The cell below counts them on the example.
#
# `srlab.metrics.psnr(sr, hr, crop_border=..., y_channel=...)` makes each choice explicit.
# Below, the bicubic baseline on the example image, with one convention changed per row.

# %%
import cv2
from PIL import Image

from srlab.evaluate import metrics_table
from srlab.metrics import psnr, ssim

h, w = hr.shape[:2]
small = (w // SCALE, h // SCALE)  # OpenCV and PIL take (width, height)
lr_opencv = cv2.resize(hr, small, interpolation=cv2.INTER_CUBIC)
lr_pil = np.asarray(Image.fromarray(hr).resize(small, Image.BICUBIC))
variants = [  # (what changes, SR image, metric arguments)
    (f"benchmark: MATLAB LR and SR, Y, crop {SCALE}", imresize(lr, SCALE), dict(y_channel=True, crop_border=SCALE)),
    ("RGB instead of Y", imresize(lr, SCALE), dict(y_channel=False, crop_border=SCALE)),
    ("no border crop", imresize(lr, SCALE), dict(y_channel=True, crop_border=0)),
    ("SR upscaled with OpenCV INTER_CUBIC", cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC),
     dict(y_channel=True, crop_border=SCALE)),
    ("LR made with OpenCV INTER_CUBIC", imresize(lr_opencv, SCALE), dict(y_channel=True, crop_border=SCALE)),
    ("LR made with PIL BICUBIC", imresize(lr_pil, SCALE), dict(y_channel=True, crop_border=SCALE)),
]
reference = psnr(variants[0][1], hr, **variants[0][2])
conventions = {}
for label, sr, kwargs in variants:
    p = psnr(sr, hr, **kwargs)
    conventions[label] = {"psnr": p, "change": p - reference, "ssim": ssim(sr, hr, **kwargs)}
nb.show_markdown(metrics_table(conventions, ("psnr", "change", "ssim"), label=f"{example.name}, bicubic x{SCALE}",
                               bold=False))
for name, other in (("OpenCV", lr_opencv), ("PIL", lr_pil)):
    print(f"{name} LR vs MATLAB LR: {psnr(other, lr, crop_border=0):.1f} dB apart; "
          f"{np.mean(other != lr):.1%} of the LR values differ, by at most {np.abs(other.astype(int) - lr).max()}")

# %% [markdown]
# What to notice, reading the `change` column: RGB PSNR is below Y PSNR on colour photos
# (typically by 1-2 dB). An LR image made without antialiasing (OpenCV) changes the task
# itself, often by a dB or more. The upscaling kernel alone moves bicubic too: on Set5,
# OpenCV's $a = -0.75$ scores *above* MATLAB's $a = -0.5$ by about 0.2 dB, because its
# stronger negative lobes sharpen more (its row gives the change for this image). PIL's LR is
# not MATLAB's either: the lines under the table count the LR values that differ and give
# their PSNR against MATLAB's LR; the PIL row gives what that does to the final number. The
# border crop can move the number in either direction (its row gives this image's change):
# on Set14 leaving the border in changes the bicubic mean by
# -0.23 dB, and by -1.97 dB on `foreman`, whose black left edge (two columns of a video
# frame's border) no interpolation can reproduce. For CNNs with zero padding, whose outermost pixels are often poor, it matters more.
# Changes of these sizes are as large as the gaps between many published methods: when you
# compare with a paper, check the conventions first. Every table in this course uses the
# benchmark row.

# %% [markdown]
# ## 7. Results table
#
# `evaluate_folder` runs the whole protocol on every image of a folder (modcrop, MATLAB LR,
# upscale, PSNR/SSIM on Y with a border of `SCALE` pixels cropped, RGB PSNR) and returns the per-image
# scores and their mean. For reference, the literature's bicubic x4 numbers are
# Set5 28.42 dB / 0.8104 and Set14 26.00 dB / 0.7027, and a fully trained SRCNN
# 30.48 dB / 0.8628 and 27.49 dB / 0.7503 (as tabulated in the VDSR paper).

# %%
from srlab.evaluate import evaluate_folder

methods = {**{m: m for m in CLASSICAL_METHODS}, **upscalers}  # name -> method name or upscaler
results = {method: {set_name: evaluate_folder(folder, scale=SCALE, upscaler=up)["mean"]
                    for set_name, folder in test_sets.items()}
           for method, up in methods.items()}  # method -> test set -> mean PSNR-Y, SSIM-Y, PSNR-RGB
nb.show_markdown(metrics_table(results, ("psnr_y", "ssim_y"), label=f"x{SCALE}", groups=list(test_sets)))
LITERATURE_BICUBIC = {"Set5": 28.42, "Set14": 26.00}  # x4 PSNR-Y, as tabulated in the VDSR paper
for set_name in test_sets:
    if set_name in LITERATURE_BICUBIC:
        print(nb.psnr_versus(f"bicubic on {set_name}", results["bicubic"][set_name]["psnr_y"], "the literature",
                             LITERATURE_BICUBIC[set_name]))
    for name in upscalers:
        print(nb.psnr_versus(f"{name} on {set_name}", results[name][set_name]["psnr_y"], "bicubic",
                             results["bicubic"][set_name]["psnr_y"]))

# %% [markdown]
# What to notice: on Set5 and Set14 the bicubic row should match the literature to 0.01 dB
# (the lines "bicubic on Set5/Set14 ... the literature" under the table check it: that is the
# check that our protocol is the papers' protocol; the embedded test folder of `quick` and
# `smoke` is not a benchmark, so there is nothing to check there, and since six of its seven
# photos were training photos, its learned rows score what the networks saw in training).
# Lanczos usually edges out bicubic. The other lines say where each learned baseline stands
# against bicubic; trained to the end, SRCNN gains about 2 dB on Set5 (the VDSR figures above).
# This table is the floor: every model from notebook 03 on must beat it, and the GAN models
# will beat it in *looks* while often losing in PSNR, for the reason section 5 gave.

# %% [markdown]
# ## Exercises
#
# 1. **Kernel parameter.** Implement Keys' kernel for $a \in \{-0.5, -0.75, -1\}$ (a few lines
#    of numpy), plot it, and say which value rings most. Check your $a = -0.5$ plot against
#    `srlab.resize.cubic_kernel`.
# 2. **Train longer.** Run SRCNN with `STEPS = 20000` (Colab) and plot validation PSNR against
#    steps with `plot_history`. When does it pass bicubic, and when does it flatten out?
# 3. **L1 or MSE.** Retrain the autoencoder with the other pixel loss (`pixel_loss="l1"` in
#    `colab` and `smoke`, `pixel_loss="mse"` in `cpu` and `quick`; a `make_config` override)
#    into a new folder such as `RUNS / PRESET / "autoencoder_other_loss"`. Do the numbers or the
#    crops change? Use section 5 to explain what you see.
# 4. **Conventions on a whole set.** Reproduce the convention table for all of Set5 (or the
#    embedded photos in `quick` and `smoke`) by looping over the images. Which convention moves the mean
#    most, and does it change the ranking of bicubic and Lanczos?
# 5. **Where is the error?** For the example image, plot $|{\rm bicubic}(x) - y|$ on the Y
#    channel as a heat map. Where is it large, and which of those regions could any method
#    recover from the LR image?
