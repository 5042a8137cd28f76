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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/03_srgan_pretrain.ipynb)
#
# # 03 · SRResNet: pretraining the SRGAN generator with a pixel loss
#
# SRGAN (Ledig et al., CVPR 2017) is trained in two stages. This notebook is the first one:
# the generator, called **SRResNet**, learns x4 super-resolution with a plain pixel loss.
# Notebook 04 then starts from the weights trained here and adds the perceptual and
# adversarial losses.
#
# **Learning goals**
#
# - Read the SRResNet architecture: 9x9 head, residual blocks, global skip, sub-pixel upsampling.
# - Say what the pixel loss (MSE, or L1) optimises and why it is the same thing as PSNR.
# - Train a generator with `srlab.train.train`, read its curves, checkpoints and sample strips,
#   and resume an interrupted run.
# - Check, with numbers and zoomed crops, that the network beats bicubic interpolation.

# %%
# Setup: on Colab, install srlab from the repository, once per runtime (Colab's torch is kept as is).
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("srlab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/srlab-course/srlab"], check=True)
from srlab import notebook as nb
print(nb.device_summary())

# %% tags=["parameters"]
PRESET = nb.choose_preset()  # quick without a GPU, colab with one; SRLAB_PRESET overrides
USE_DRIVE = True  # Colab: runs and downloads on Google Drive (False: on the runtime, lost with it)
STEPS = None                 # None = the preset's length (colab 100k, cpu 1000, quick 1600, smoke 6)
BATCH_SIZE = None            # None = the preset's batch size
RESUME = True                # continue from last.pt when this run folder already has one; False starts over
TIME_BUDGET = nb.time_budget(PRESET)  # colab: pause each training run after 50 min with a checkpoint; rerun to go on

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
print(nb.colab_plan("03_srgan_pretrain"))

# %% [markdown]
# ## Training data
#
# The `colab` preset trains on DIV2K cut into a *patch store* (notebook 01 teaches it: the
# decoded images in memory-mapped shards, each pixel stored once, a random crop cut when a
# batch is read) at `DATA_DIR / PRESET / "patches"`. This runtime is new, so `nb.training_data`
# builds the store here when it is missing, as notebook 01 does: it takes DIV2K's archive
# from Drive (downloaded only the first time in the course, resumed after a disconnect, its
# size and SHA-256 checked), extracts it onto this runtime's disk and cuts the store, a few
# minutes (the plan above). The CPU presets train on the store notebook 01 cut from the
# embedded photos when this machine has it, else on the embedded photos directly (all but
# `coffee`, held out). Validation always uses the central crop of `coffee`
# (`srlab.presets.VALIDATION_IMAGE`). `nb.training_data` says which.

# %%
DATA = nb.training_data(DATA_DIR, PRESET)  # the patch store's path, or None: the embedded photos

# %% [markdown]
# ## The SRResNet architecture
#
# The generator maps an LR image $x$ of size $h \times w$ to an SR image $\hat y = G(x)$ of size
# $4h \times 4w$. Almost all its work happens at low resolution, which keeps it cheap:
#
# 1. **Head**: one 9x9 convolution (3 → 64 channels) + PReLU. The large kernel sees a
#    9x9 neighbourhood of raw pixels at once.
# 2. **Body**: $B$ residual blocks (16 in the paper), each
#    `conv3x3 → BatchNorm → PReLU → conv3x3 → BatchNorm`, plus an identity skip:
#    $\mathbf{h}_{k+1} = \mathbf{h}_k + F(\mathbf{h}_k)$. A block only learns a correction,
#    so a deep stack stays trainable.
# 3. **Global skip**: conv3x3 + BatchNorm after the body, then the head's features are
#    added back. The low-frequency content reaches the upsampler directly; the body
#    specialises in detail.
# 4. **Upsampling**: two sub-pixel stages (Shi et al. 2016), each
#    `conv3x3 (64 → 256) → PixelShuffle(2) → PReLU`. PixelShuffle rearranges 4 channels
#    at one position into a 2x2 block of pixels: the upsampling filter is learned and
#    computed at low resolution. Two x2 stages give x4.
# 5. **Tail**: one 9x9 convolution (64 → 3) to RGB.
#
# With the paper's 16 blocks and 64 features this is **1,549,462 parameters**.

# %%
import torch
from srlab.models import SRResNet, count_parameters

paper = SRResNet(num_block=16, num_feat=64, scale=4)  # the paper's generator
print(f"paper SRResNet (16 blocks): {count_parameters(paper):,} parameters")
for part in ("conv_head", "body", "conv_body", "bn_body", "upsample", "conv_tail"):
    print(f"  {part:<10} {count_parameters(getattr(paper, part)):>9,}")
x = torch.rand(1, 3, 24, 24)  # an LR patch (N, C, h, w)
with torch.no_grad():
    print("LR", tuple(x.shape), "-> SR", tuple(paper(x).shape))

# %% [markdown]
# What to notice: the 16 residual blocks hold nearly all the parameters (each has two
# 64 → 64 3x3 convolutions, about 74k parameters); the upsampler is the second biggest part
# because its convolutions produce 4x the channels that PixelShuffle turns into pixels.
# The output is exactly 4x the input on each side.

# %% [markdown]
# ## The pixel loss
#
# SRResNet is trained to make each output pixel close to the ground truth $y$. The paper
# uses the mean squared error over all $N$ pixel values of a batch:
#
# $$\mathcal{L}_{MSE} = \frac{1}{N}\sum_{i=1}^{N} (\hat y_i - y_i)^2$$
#
# Since $\mathrm{PSNR} = 10 \log_{10} \frac{1}{\mathrm{MSE}}$ (images in $[0, 1]$),
# minimising MSE *is* maximising PSNR. The price: when several sharp textures are
# plausible for one LR patch, the MSE-optimal answer is their **average**, which is blurry.
# That is why notebook 04 adds other losses.
#
# Two choices in srlab's presets differ from the paper:
#
# - **L1 instead of MSE** (`cpu` and `quick` presets):
#   $\mathcal{L}_{1} = \frac{1}{N}\sum_i |\hat y_i - y_i|$. Its gradient does not shrink
#   with the error, so small errors keep being corrected, and large ones (outliers) do not
#   dominate; EDSR and ESRGAN train with it and report equal or better PSNR.
# - **A bicubic residual** (`cpu`, `quick` and `smoke`): the network's output is added to a
#   MATLAB bicubic upsampling of its input, $\hat y = \mathrm{bicubic}(x) + G(x)$, and the last
#   convolution starts at zero. An untrained network is therefore *exactly* bicubic, and a
#   short CPU run only has to learn the missing detail. The `colab` preset trains the
#   paper's plain network with MSE; `smoke` keeps MSE but uses the residual.
#
# The CPU presets also shrink the network and the run: `cpu` (about an hour for the course)
# has 8 residual blocks; `quick`, the default without a GPU (the six notebooks in about a
# quarter of an hour), fewer and narrower blocks, 1600 steps on small patches of the
# embedded photos; `smoke` (CI, seconds) a tiny network for 6 steps. The cell prints this
# preset's choices.

# %%
from srlab.checkpoint import generator_from_config
from srlab.presets import make_config

overrides = {k: v for k, v in {"steps": STEPS, "batch_size": BATCH_SIZE, "data": DATA}.items() if v is not None}
cfg = make_config("srresnet", PRESET, **overrides)
SCALE = cfg.scale
generator = generator_from_config(cfg)  # the untrained network this config describes
print(f"preset {PRESET}: generator {cfg.generator}, x{SCALE}, {count_parameters(generator):,} parameters")
print(f"pixel loss: {cfg.pixel_loss}, bicubic residual: {cfg.generator.get('bicubic_residual', False)}")
print(f"{cfg.steps} steps, batch {cfg.batch_size} of {cfg.hr_size}px HR patches, Adam lr {cfg.lr_g}, "
      f"validation every {cfg.val_every} steps")

# %% [markdown]
# ## Training
#
# `srlab.train.train(cfg, out_dir)` runs the whole loop. Besides the loss, on every run it:
#
# - keeps an **EMA** (exponential moving average) of the generator's weights, which
#   validates better than the raw weights;
# - **validates** every `val_every` steps: PSNR/SSIM on the Y channel of the `coffee` crop;
# - writes **checkpoints**: `last.pt` (the latest state, for resuming) and `best.pt` (the
#   best validation PSNR so far, which notebook 04 starts from);
# - saves a **sample strip** `samples/step_XXXXXXX.png` at each validation:
#   LR (nearest-upscaled) | output | HR;
# - appends every logged value to `history.jsonl` and stops early when validation PSNR has
#   not improved for `early_stop_patience` validations.
#
# **Resume**: with `resume=True` the run continues from `last.pt` (weights, optimiser, learning
# rate schedule, random state: N steps + resume + N steps gives the same weights as 2N steps).
# On Colab, after a disconnect, reconnect, mount Drive again and rerun the notebook; a
# finished run is not trained again. Set `RESUME = False` to start over (`overwrite=True`: the old
# checkpoints and history are replaced). The same from a
# terminal: `python -m srlab train srresnet --preset colab --out runs/colab/srresnet --resume`.
#
# **Time budget**: `TIME_BUDGET` (50 minutes with `colab`, none otherwise; `SRLAB_TIME_BUDGET`
# overrides) pauses a run cleanly when it is spent: `last.pt`, a sample strip, and a line
# saying how to continue. Rerunning the notebook resumes exactly where it stopped (the same
# weights as a run never paused), so every Colab session ends with a result to look at.
# From a terminal: `--time-budget 50m`.
#
# **On Colab** the `colab` preset is sized so that this stage fits one budget on a free T4; the
# line below is the estimate from the stage's FLOP count (`srlab.plan`), with the size of the
# checkpoint it rewrites (only `last.pt` and `best.pt` are kept).

# %%
from srlab.plan import colab_duration
from srlab.train import train

print(colab_duration("srresnet"))
OUT = RUNS / PRESET / "srresnet"
summary = train(cfg, OUT, resume=RESUME, overwrite=not RESUME, time_budget=TIME_BUDGET)
print(summary)
print("run folder:", sorted(p.name for p in OUT.iterdir()))

# %% [markdown]
# What to notice: the progress bar shows the pixel loss (`pixel`) and the total (`g`, the
# same here). `best_psnr` is the EMA model's best validation PSNR-Y in dB; the folder now
# holds `best.pt`, `last.pt`, `history.jsonl` and `samples/`. In the `smoke` preset the run
# is only 6 steps of a tiny network, so expect a number close to bicubic's; the line under the
# next plot puts it next to bicubic, whatever the preset.

# %% [markdown]
# ## Training curves, against bicubic
#
# `srlab.viz.plot_history` draws the curves of `history.jsonl`. To judge the validation
# PSNR we need a reference: bicubic on **the same validation crop**, computed the way
# `Trainer.validate` does it (the central `val_crop` square of `coffee`, its MATLAB-bicubic
# LR, PSNR on Y with a border of `SCALE` pixels cropped).

# %%
import matplotlib.pyplot as plt
from srlab.data import center_crops, embedded_images
from srlab.metrics import batch_psnr
from srlab.presets import VALIDATION_IMAGE
from srlab.resize import imresize_torch
from srlab.viz import plot_history

val_image = embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE]
(lr_val, hr_val), = center_crops([val_image], cfg.val_crop, SCALE)  # (1, 3, h, w), (1, 3, H, W)
bicubic_val = batch_psnr(imresize_torch(lr_val, SCALE).clamp(0, 1), hr_val, crop_border=SCALE).item()
print(f"validation crop of {VALIDATION_IMAGE} {tuple(hr_val.shape[-2:])}: "
      + nb.psnr_versus("SRResNet best", summary["best_psnr"], "bicubic", bicubic_val))

fig = plot_history(OUT / "history.jsonl")  # plain dB tick labels, even for tiny differences
ax = fig.axes[-1]  # the validation panel
ax.axhline(bicubic_val, color="gray", ls=":", label="bicubic")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# What to notice: the validation PSNR should rise above the dotted bicubic line; it is the
# curve to read. With a bicubic residual the pixel loss starts near its floor, so in a short
# run (`quick`) its trend is buried in batch-to-batch noise; the plain `colab` network's loss
# falls quickly, then slowly (log scale). With a bicubic residual the PSNR starts *on*
# the line (the untrained net is bicubic); the plain `colab` network starts far below it
# and needs a few thousand steps to cross it. The validation panel spans at least 1 dB, so
# a run that barely moved (the few `smoke` steps) shows a flat line, not noise blown up into
# a trend; the line above the plot gives the numbers.

# %% [markdown]
# ## The whole `coffee` image, and zoomed crops
#
# `srlab.checkpoint.load_generator` rebuilds the network from `best.pt` (with its EMA weights)
# and `srlab.evaluate.model_upscaler` wraps it as a function on numpy images, so it can be
# scored exactly like bicubic. `srlab.viz.compare` scores each output (PSNR-Y, SSIM-Y,
# PSNR-RGB, with `srlab.evaluate.score_pair`), shows the table and draws zoomed crops. The
# table's last column, NIQE, is a score that needs no HR image (lower = more natural, HR's
# own in the last row); notebooks 04 and 06 explain it. A pixel loss does not aim at it.

# %%
from srlab.checkpoint import load_generator
from srlab.evaluate import model_upscaler, upscale_classical
from srlab.resize import imresize, modcrop
from srlab.viz import compare

model, info = load_generator(OUT / "best.pt")
print(f"best.pt: step {info['step']}, {info['architecture']}")
srresnet = model_upscaler(model, "SRResNet")
hr = modcrop(val_image, SCALE)
lr = imresize(hr, 1 / SCALE)  # the benchmark degradation: MATLAB bicubic x1/SCALE
outputs = {"bicubic": upscale_classical(lr, SCALE, "bicubic"), "SRResNet": srresnet(lr, SCALE)}
scores = compare(outputs, hr, SCALE, lr=lr, name=VALIDATION_IMAGE, path=OUT / f"crops_{VALIDATION_IMAGE}.png")
plt.show()
print(nb.psnr_versus("SRResNet", scores["SRResNet"]["psnr_y"], "bicubic", scores["bicubic"]["psnr_y"]))
print(nb.niqe_versus("SRResNet", scores["SRResNet"]["niqe"], "bicubic", scores["bicubic"]["niqe"]))
print(nb.difference_note("SRResNet", outputs["SRResNet"], "bicubic", outputs["bicubic"]))

# %% [markdown]
# What to notice: the red box on the left marks the most textured 96x96 region, shown
# magnified in the other panels. A trained SRResNet has cleaner, straighter edges than
# bicubic, but fine texture is still smooth: this is the averaging effect of the pixel
# loss, and the reason for notebook 04. The lines under the crops say how far this run's
# SRResNet is from bicubic, in dB, in NIQE and in grey levels: when they look the same (a run
# of a few steps), there is nothing to compare in the crops yet. Expect its NIQE to stay
# well above HR's (the table has both), whatever the PSNR gain: cleaner edges are not
# natural texture.

# %% [markdown]
# ## Sample strips
#
# Each validation saved a strip in `samples/`: LR (nearest) | EMA output | HR, on the
# validation crop. Comparing the first and the last shows what training changed.

# %%
from srlab.images import read_image

strips = sorted((OUT / "samples").glob("step_*.png"))
shown = [strips[0], strips[-1]] if len(strips) > 1 else strips  # the first and the last
fig, axes = plt.subplots(len(shown), 1, figsize=(9, 3.2 * len(shown)), squeeze=False)
for ax, path in zip(axes[:, 0], shown):
    ax.imshow(read_image(path))
    ax.set_title(f"{path.name}: LR (nearest) | SRResNet (EMA) | HR", fontsize=9)
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## A benchmark (colab and cpu presets)
#
# One image is a weak test. With a real run, evaluate on Set5, the standard benchmark
# (downloaded once into `DATA_DIR`). The `quick` and `smoke` presets skip this: they
# train and test on the embedded photos and download nothing.

# %%
from srlab.presets import EMBEDDED_PRESETS

if PRESET not in EMBEDDED_PRESETS:
    from srlab.download import download_dataset
    from srlab.evaluate import evaluate_folder, format_table

    set5 = download_dataset("set5", DATA_DIR, archives=nb.archive_dir()) / "HR"
    for upscaler in ("bicubic", srresnet):
        report = evaluate_folder(set5, scale=SCALE, upscaler=upscaler)
        nb.show_markdown(f"**{report['model']} on Set5 x{SCALE}**\n\n{format_table(report)}")
else:
    print(f"{PRESET} preset: Set5 evaluation skipped, nothing is downloaded (run with the cpu or colab preset)")

# %% [markdown]
# What to notice: bicubic gives 28.43 dB on Set5; the paper's SRResNet reaches 32.05 dB
# after 1M steps on ImageNet, and the `cpu` preset's SRResNet-8 about 30.4 dB after 1000 steps
# (see the README). Notebook 04 starts from `RUNS / PRESET / "srresnet" / "best.pt"`.

# %% [markdown]
# ## Exercises
#
# 1. Switch the pixel loss (`make_config("srresnet", PRESET, pixel_loss="mse")`, or `"l1"`
#    on the colab preset), train into a new folder such as `RUNS / PRESET / "srresnet_mse"`
#    and compare the validation curves and crops. Which gives the higher PSNR after the
#    same number of steps?
# 2. Count the parameters of `SRResNet(num_block=B)` for B = 4, 8, 16, 32. How does the count
#    grow with B, and which part of the network stays constant?
# 3. Interrupt a run: train with `stop_at=` half the steps, then call `train(..., resume=True)`.
#    Check in `history.jsonl` that the steps continue where they stopped.
# 4. Build `SRResNet(bicubic_residual=True)` and check, without training, that its output on
#    `lr` scores bicubic's PSNR (up to rounding to 8 bits). Why does the last convolution
#    have to start at zero?
# 5. Turn the batch-norm layers off (`generator={"name": "srresnet", "num_block": 8,
#    "batch_norm": False, "bicubic_residual": True}`): EDSR argued BN hurts SR. Does it here?

# %% [markdown]
# ## Going further: training on several GPUs
#
# This notebook trains in one process on one GPU. A machine with several GPUs runs the same
# training from a terminal on all of them, one process each, with PyTorch's `torchrun` and
# DistributedDataParallel (DDP):
#
# ```bash
# torchrun --nproc_per_node=4 -m srlab train srresnet --preset colab --batch-size 64
# ```
#
# `--batch-size` is the **global** batch (16 patches per GPU here; it must divide evenly).
# Every process builds the same batch of the step and trains on its quarter; DDP averages the
# four gradients, which is the gradient of the whole batch's mean loss. So the run is the
# one a single GPU would do with a batch of 64, only faster. Rank 0 alone validates, writes
# `best.pt`/`last.pt`, `history.jsonl` and W&B and shows the progress bar. The checkpoints are
# ordinary single-process ones: a run resumes (`--resume`) with any number of GPUs, or here.
#
# SRResNet has **BatchNorm**, which normalises with the mean and variance of the batch it sees.
# With plain BN, each GPU would use the statistics of its own 16 patches, not those of the 64
# in the step, and the result would depend on the number of GPUs. So when srlab runs on several
# processes it converts the BN layers to **SyncBatchNorm**, whose statistics are those of
# the global batch (on CPU processes, where PyTorch's SyncBatchNorm has no kernels,
# `srlab.distributed.CPUSyncBatchNorm` does the same). It costs communication inside every
# forward and backward pass. To turn it off, set `sync_bn=False` in the config, e.g. in a
# script started with `torchrun --nproc_per_node=4 my_run.py`:
# `train(make_config("srresnet", "colab", sync_bn=False), "runs/colab/srresnet")`.
# Exercise 5's BN-free generator doesn't need either.
