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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/04_srgan_adversarial.ipynb)
#
# # 04 · SRGAN: content loss, adversarial loss, and a discriminator that wins too well
#
# Notebook 03 trained SRResNet with a pixel loss: good PSNR, smooth textures. SRGAN
# (Ledig et al., CVPR 2017) fine-tunes that generator with two other losses: a **content
# loss** measured in the feature space of a VGG-19 network, and an **adversarial loss**
# from a discriminator that learns to tell real HR patches from generated ones.
#
# **Learning goals**
#
# - Write the VGG content loss and the adversarial losses of D and G (BCE with logits,
#   non-saturating generator loss) and say why each form is used.
# - Describe the SRGAN discriminator and how it is trained in alternation with G.
# - Fine-tune the SRResNet of notebook 03 into an SRGAN and read its G/D loss and
#   D(real)/D(fake) curves.
# - Recognise discriminator collapse in the curves, and know what to change when it happens.

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
STEPS = None                 # None = the preset's length (colab 36k, cpu 400, quick 1200, smoke 6)
ADV_WEIGHT = None            # None = the preset's adversarial weight (paper 1e-3; seed preset 5e-2)
RESUME = True                # continue from last.pt when a run folder already has one; False starts over
TIME_BUDGET = nb.time_budget(PRESET)  # colab: pause each training run after 50 min with a checkpoint; rerun to go on
COLLAPSE_STEPS = None        # length of the collapse demonstration; None = a short run for the preset

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
print(nb.colab_plan("04_srgan_adversarial"))

# %% [markdown]
# ## Start from notebook 03
#
# A GAN trained from a random generator is unstable and easily stuck; SRGAN starts from the
# MSE-trained SRResNet. `init_from="auto"` (the `srgan` stage's default) loads
# `RUNS / PRESET / "srresnet" / "best.pt"`, so that file has to exist.

# %%
PRETRAINED = nb.require(RUNS / PRESET / "srresnet" / "best.pt", "03_srgan_pretrain")
print("pretrained generator:", PRETRAINED)

# %% [markdown]
# Training data, as in notebook 03: with `colab`, the DIV2K patch store, built on this new
# runtime from the archive on Drive when it is missing; in the CPU presets notebook 01's store
# of the embedded photos when this machine has it, else the embedded photos. Validation always
# uses the held-out `coffee` crop.

# %%
DATA = nb.training_data(DATA_DIR, PRESET)  # the patch store's path, or None: the embedded photos

# %% [markdown]
# ## The content loss: distances between VGG features
#
# Pixel MSE punishes a sharp texture that is shifted by one pixel more than a blur. SRGAN
# compares images where such a shift matters less: in the feature maps $\phi$ of a VGG-19
# network trained on ImageNet classification. With $\phi_{i,j}$ the feature map after the
# $j$-th convolution (and its ReLU) before the $i$-th max-pooling, and $W_{i,j}$ and $H_{i,j}$
# its width and height, the paper (Ledig et al., eq. 5) writes
#
# $$\mathcal{L}_{VGG/i,j} = \frac{1}{W_{i,j}H_{i,j}}\sum_{x=1}^{W_{i,j}}\sum_{y=1}^{H_{i,j}} \Big(\phi_{i,j}(y)_{x,y} - \phi_{i,j}\big(G(x_{LR})\big)_{x,y}\Big)^2$$
#
# normalised by the feature map's width and height only: the squared differences of all
# $C$ channels at a position are summed. srlab's `PerceptualLoss` takes the mean over the
# channels too (as BasicSR does): it divides by $W_{i,j} H_{i,j} C$ (and the batch size), so
# it is the paper's sum divided by $C$ (512 for `relu5_4`), a constant factor.
#
# | who | layer | meaning |
# |---|---|---|
# | SRGAN paper, "VGG54" | `relu5_4` | deep features: object parts, textures |
# | the seed project | `relu3_4` | shallower: edges and small patterns; closer to a pixel loss |
#
# Deeper layers leave more freedom in the exact pixels, which is what lets the GAN invent
# texture. (The paper also divides the features by 12.75, i.e. multiplies the loss by
# $1/12.75^2 \approx 0.006$; srlab's `PerceptualLoss` does not. With both differences the
# paper's content loss is $512 / 12.75^2 \approx 3.1$ times srlab's, so with the same weights
# the adversarial term counts about three times more here, relative to the content loss, than
# in the paper.)

# %%
import torch
from srlab.losses import VGG19_LAYERS
from srlab.presets import make_config

overrides = {k: v for k, v in {"steps": STEPS, "adversarial_weight": ADV_WEIGHT, "data": DATA}.items()
             if v is not None}
cfg = make_config("srgan", PRESET, **overrides)
vgg = (f"content loss: VGG-19 {cfg.perceptual_layer} (the first {VGG19_LAYERS[cfg.perceptual_layer] + 1} "
       f"layers of vgg19.features), {cfg.perceptual_criterion.upper()}, weight {cfg.perceptual_weight}\n")
if cfg.perceptual == "discriminator":  # quick: offline, no VGG at all (see the next cell)
    print(f"content loss: feature matching on the discriminator's blocks (perceptual='discriminator'), L1, "
          f"weight {cfg.perceptual_weight}; plus a {cfg.pixel_loss.upper()} pixel loss, weight {cfg.pixel_weight}; "
          f"adversarial weight {cfg.adversarial_weight}. An offline substitute for the VGG loss, not the paper's.")
elif cfg.vgg_weights is None:
    print(vgg + "VGG-19 weights: RANDOM (smoke preset, no download). The content loss here is NOT perceptual: "
          "the run only checks that the code works.")
else:
    print(vgg + f"VGG-19 weights: {cfg.vgg_weights}: torchvision's ImageNet weights (vgg19-dcbb9e9d.pth, 548 MB), "
          f"downloaded on first use into {torch.hub.get_dir()}/checkpoints")

# %% [markdown]
# On Colab (and with the `cpu` preset) torchvision downloads the ImageNet VGG-19 weights
# the first time the loss is built and caches them. The `smoke` preset uses a randomly
# initialised VGG so that it runs offline in seconds; the training engine prints a note
# saying so. Random features are not a perceptual metric: in smoke, look at the mechanics,
# not at the pictures.
#
# **Offline: feature matching instead of VGG (`quick`).** The `quick` preset, the default
# without a GPU, must run anywhere, offline included, so it uses no ImageNet VGG. It sets
# `perceptual="discriminator"` (`--perceptual discriminator` on the command line): the content
# loss compares the *discriminator's own* features of SR and HR, the feature-matching loss of
# pix2pixHD (Wang et al. 2018, Eq. 4),
#
# $$\mathcal{L}_{FM} = \sum_{k=1}^{T} \frac{1}{N_k} \big\| D^{(k)}(y) - D^{(k)}(G(x)) \big\|_1 ,$$
#
# summed over D's $T$ stride-2 blocks, $N_k$ the number of values in block $k$'s output. D
# learns features that tell real patches from generated ones, so matching them pulls $G$
# towards what makes HR look real, the role VGG's ImageNet features play in the paper. A small
# L1 pixel term (ESRGAN's weight $10^{-2}$) keeps colours and positions in place. It is a
# substitute, printed as such by the engine and saved in the checkpoint's config: D's features
# move while D trains, and the SRGAN paper's numbers were not obtained with it. The cell above
# prints the weights this preset uses: with feature matching the adversarial term has to teach
# the texture that ImageNet's features would otherwise carry, so `srlab.presets.FEATURE_MATCHING`
# raises its weight to $5 \cdot 10^{-2}$ (the primary student project's value) and doubles the
# learning rates for a short run.

# %% [markdown]
# ## The adversarial loss
#
# The discriminator $D$ outputs a logit $z$; $D(\cdot) = \sigma(z)$ is its probability that
# the input is a real HR patch. $D$ minimises the binary cross-entropy with real patches
# $y$ labelled 1 and generated ones $G(x)$ labelled 0:
#
# $$\mathcal{L}_D = -\mathbb{E}_{y}\big[\log D(y)\big] - \mathbb{E}_{x}\big[\log\big(1 - D(G(x))\big)\big]$$
#
# The original minimax game lets $G$ *maximise* that second term, i.e. minimise
# $\mathbb{E}_x[\log(1 - D(G(x)))]$. SRGAN (following Goodfellow et al. 2014) uses the
# **non-saturating** generator loss instead:
#
# $$\mathcal{L}_{adv} = -\mathbb{E}_{x}\big[\log D(G(x))\big]$$
#
# Both push $D(G(x))$ up, but early in training, when $D$ confidently rejects the fakes
# ($D(G(x)) \approx 0$), $\log(1 - D)$ is flat and gives $G$ almost no gradient, while
# $-\log D$ is steep. srlab computes both from logits with
# `binary_cross_entropy_with_logits`, which never takes the log of a saturated sigmoid.
#
# The generator's full loss ("perceptual loss" in the paper) is
#
# $$\mathcal{L}_G = \mathcal{L}_{VGG} + \lambda\,\mathcal{L}_{adv}, \qquad \lambda = 10^{-3}.$$
#
# Below: the gradient each generator loss sends back through the logit, for a fake that $D$
# scores $D(G(x))$, computed with srlab's own losses.

# %%
import matplotlib.pyplot as plt
from srlab.losses import gan_bce_loss, generator_bce_loss

z = torch.linspace(-9, 4, 300, requires_grad=True)  # logits D gives to fakes
non_saturating = torch.autograd.grad(generator_bce_loss(z) * len(z), z)[0]  # d/dz of -log D
minimax = torch.autograd.grad(-gan_bce_loss(z, real=False) * len(z), z)[0]  # d/dz of log(1 - D)
d_fake = torch.sigmoid(z).detach()
plt.figure(figsize=(5, 3.2))
plt.loglog(d_fake, non_saturating.abs(), label=r"non-saturating $-\log D(G(x))$")
plt.loglog(d_fake, minimax.abs(), label=r"minimax $\log(1 - D(G(x)))$")
plt.xlabel("D(G(x)): how real D thinks the fake is")
plt.ylabel("|gradient w.r.t. the logit|")
plt.legend(fontsize=8)
plt.grid(alpha=0.3)
plt.show()

# %% [markdown]
# What to notice: where $D$ rejects the fake ($D(G(x)) \ll 1$, left), the minimax loss gives a
# gradient as small as $D(G(x))$ itself, while the non-saturating loss gives a gradient near 1.
# The two are equal at $D(G(x)) = 0.5$; once $D$ is fooled (right), the non-saturating
# gradient shrinks towards 0 (it is $1 - D$) and the minimax one approaches 1.

# %% [markdown]
# ## The SRGAN discriminator
#
# A VGG-like classifier of HR patches (Ledig et al., Fig. 4):
#
# - eight 3x3 convolutions with 64, 64, 128, 128, 256, 256, 512, 512 channels; every second
#   one has stride 2, so the patch shrinks 16x per side;
# - BatchNorm after every convolution but the first, LeakyReLU(0.2) everywhere;
# - Dense(1024), LeakyReLU(0.2), Dense(1): one logit per patch. The paper's final sigmoid is
#   left to the loss (BCE with logits).
#
# The Dense layer fixes the input size: 96x96 in the paper, so G is trained on 96 px HR
# patches (`quick` uses 64 px patches and 32 base channels, `smoke` 32 px and 8).

# %%
from srlab.models import SRGANDiscriminator, count_parameters

paper_d = SRGANDiscriminator(num_feat=64, input_size=96)
print(f"paper discriminator (96 px): {count_parameters(paper_d):,} parameters")
spec = {k: v for k, v in cfg.discriminator.items() if k != "name"}
D = SRGANDiscriminator(**spec)
patches = torch.rand(2, 3, cfg.hr_size, cfg.hr_size)  # (N, 3, H, W) HR patches
print(f"preset {PRESET}: SRGANDiscriminator({spec}), {count_parameters(D):,} parameters; "
      f"{tuple(patches.shape)} -> logits {tuple(D(patches).shape)}")

# %% [markdown]
# What to notice: the paper's discriminator has 23.6M parameters, 15x the generator's 1.5M,
# and most of them sit in the first Dense layer (512 x 6 x 6 inputs x 1024 outputs). A big
# discriminator learns fast; that is one side of the balance this notebook is about.

# %% [markdown]
# ## Training SRGAN
#
# Each step alternates:
#
# 1. **G step**: $\hat y = G(x)$; loss $\mathcal{L}_{VGG}(\hat y, y) + \lambda\,\mathcal{L}_{adv}$ with
#    $D$ frozen; update $G$.
# 2. **D step**: $\mathcal{L}_D$ on $D(y)$ and $D(\hat y)$, with $\hat y$ *detached* so this
#    step does not train $G$; update $D$.
#
# The engine logs `loss_perceptual`, `loss_adv` (unweighted), `loss_g` (the weighted sum),
# `loss_d`, and `d_real` / `d_fake`: the mean $\sigma$ of D's logits on the real and fake
# batch. GAN stages do not stop early on PSNR: they trade PSNR for texture on purpose.
# `RESUME` works as in notebook 03.

# %%
from srlab.plan import colab_duration
from srlab.train import train

print(colab_duration("srgan"))  # on a free Colab T4: this run and the collapse demo fit one 50-minute budget
OUT = RUNS / PRESET / "srgan"
print(f"{cfg.steps} steps, batch {cfg.batch_size} of {cfg.hr_size}px, adversarial weight "
      f"{cfg.adversarial_weight}, lr G {cfg.lr_g} / D {cfg.lr_d}")
summary = train(cfg, OUT, resume=RESUME, overwrite=not RESUME, time_budget=TIME_BUDGET)
print(summary)

# %% [markdown]
# What to notice: the run starts with "generator initialised from .../srresnet/best.pt"; in
# smoke you also see the engine's note that the VGG is random, in quick its note that the
# content loss is feature matching on the discriminator. (On a first run with
# `RESUME = True`, "no checkpoint at .../last.pt: starting a new srgan run" only means a
# fresh run: G is still initialised from SRResNet.) The progress bar shows `d` (the D loss) next to
# the G losses.

# %% [markdown]
# ## Curves
#
# First the standard figure of `srlab.viz.plot_history`, then a closer look at the two
# players from `srlab.train.read_history`: the terms of $\mathcal{L}_G$ as they enter the
# sum (each times its weight; `quick` also has the small pixel term), the D loss against its chance value $2\ln 2 \approx 1.39$ (D outputs 0.5 on
# everything), and D(real) / D(fake).

# %%
import math

import numpy as np
from srlab.train import read_history
from srlab.viz import plain_ticks, plot_history


def smooth(values, n_points):
    """A running mean over ~1/50 of the run, so long noisy runs stay readable."""
    k = max(1, n_points // 50)
    return np.convolve(values, np.ones(k) / k, mode="valid") if k > 1 else np.asarray(values)


def gan_curves(history, cfg, title):
    """The weighted terms of L_G, the D loss and D(real)/D(fake) of one run (config ``cfg``), with
    any collapse step marked."""
    rows = [r for r in history if "loss_d" in r]
    steps = np.array([r["step"] for r in rows])
    get = lambda key: np.array([r[key] for r in rows])
    k = max(1, len(rows) // 50)
    x = steps[k - 1:] if k > 1 else steps
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    content = "content (feature matching)" if cfg.perceptual == "discriminator" else "content (VGG)"
    terms = (("loss_pixel", cfg.pixel_weight, f"pixel ({cfg.pixel_loss.upper()})"),
             ("loss_perceptual", cfg.perceptual_weight, content), ("loss_adv", cfg.adversarial_weight, "adversarial"))
    for key, weight, label in terms:
        if weight and all(key in r for r in rows):  # a term is logged only when its weight is not 0
            axes[0].plot(x, smooth(weight * get(key), len(rows)), label=f"{weight:g} x {label}")
    axes[0].set_yscale("log")
    axes[0].set_title("generator: the terms of L_G, weighted", fontsize=10)
    axes[1].plot(x, smooth(get("loss_d"), len(rows)), color="C3", label="loss_d")
    axes[1].axhline(2 * math.log(2), color="gray", ls=":", label="chance (2 ln 2)")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("discriminator loss", fontsize=10)
    axes[2].plot(x, smooth(get("d_real"), len(rows)), label="D(real)")
    axes[2].plot(x, smooth(get("d_fake"), len(rows)), label="D(fake)")
    axes[2].axhline(0.5, color="gray", ls=":")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("discriminator outputs", fontsize=10)
    collapses = [r["step"] for r in history if r.get("event") == "discriminator_collapse"]
    for ax in axes:
        for step in collapses:
            ax.axvline(step, color="red", ls="--", lw=1)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        plain_ticks(ax)  # plain numbers on the linear axes, never an offset such as "1e-5+3.069e1"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def last_step(history):
    """D's loss and outputs at the last logged step, next to their chance values."""
    r = [r for r in history if "loss_d" in r][-1]
    return (f"last logged step {r['step']}: D loss {r['loss_d']:.2f} (chance {2 * math.log(2):.2f}), "
            f"D(real) {r['d_real']:.2f}, D(fake) {r['d_fake']:.2f} (chance 0.50)")


history = read_history(OUT / "history.jsonl")
plot_history(history)
plt.show()
gan_curves(history, cfg, f"SRGAN, preset {PRESET}")
plt.show()
print(last_step(history))

# %% [markdown]
# What to notice, in a real run (`colab`, `cpu`):
#
# - The content loss drops, then slowly levels off; the weighted adversarial term is usually
#   much smaller, but its gradient is what adds texture. (In smoke the order is reversed:
#   a random VGG's deep features are tiny. In `quick` the feature-matching "content" loss need
#   not fall at all: it is measured in D's features, which change as D learns.)
# - A healthy D loss stays well above 0, often around or below the chance line, and
#   oscillates: neither player wins for long. D(real) sits above D(fake), both moving.
# - Validation PSNR *falls* a little below the SRResNet's: hallucinated texture is never
#   pixel-exact. That is expected, not a bug.
#
# In `smoke` (a handful of steps, random VGG, tiny D) neither network has time to learn
# anything, so everything should stay near chance: D(real) ≈ D(fake) ≈ 0.5 and D loss ≈ 1.39.
# The line under the curves gives the last step's values, whatever the preset: in `quick`,
# how far D moved from chance in its 1200 steps.

# %% [markdown]
# ## Bicubic, SRResNet and SRGAN side by side
#
# For the SRGAN we load `last.pt`, not `best.pt`: `best.pt` is picked by validation PSNR,
# which a GAN gives up on purpose, so it is usually one of the first checkpoints.
# `srlab.viz.compare` scores the three on the whole held-out photo, shows the table and
# draws the zoomed crops, as in notebook 03.
#
# Next to PSNR-Y, the table and the captions give **NIQE** (Mittal et al. 2013; notebook 06
# explains how it works). It needs no HR image, only the one judged: it measures how far the
# statistics of local contrast in the image are from those of clean natural photos, lower
# meaning more natural. PSNR rewards a blur that is never far from the truth; NIQE penalises
# it. So the trade-off this notebook is about shows as two numbers: a GAN stage that works
# leaves SRGAN *below* SRResNet in PSNR and *below* it in NIQE too.

# %%
from srlab.checkpoint import load_generator
from srlab.data import embedded_images
from srlab.evaluate import model_upscaler, upscale_classical
from srlab.presets import VALIDATION_IMAGE
from srlab.resize import imresize, modcrop
from srlab.viz import compare

SCALE = cfg.scale
hr = modcrop(embedded_images((VALIDATION_IMAGE,))[VALIDATION_IMAGE], SCALE)
lr = imresize(hr, 1 / SCALE)
outputs = {"bicubic": upscale_classical(lr, SCALE, "bicubic")}
for name, ckpt in (("SRResNet", PRETRAINED), ("SRGAN", OUT / "last.pt")):
    model, info = load_generator(ckpt)
    outputs[name] = model_upscaler(model, name)(lr, SCALE)
    print(f"{name}: {ckpt.name} of step {info['step']}")
scores = compare(outputs, hr, SCALE, lr=lr, name=VALIDATION_IMAGE, path=OUT / f"crops_{VALIDATION_IMAGE}.png")
plt.show()
print(nb.psnr_versus("SRGAN", scores["SRGAN"]["psnr_y"], "SRResNet", scores["SRResNet"]["psnr_y"]))
print(nb.niqe_versus("SRGAN", scores["SRGAN"]["niqe"], "SRResNet", scores["SRResNet"]["niqe"]))
print(nb.difference_note("SRGAN", outputs["SRGAN"], "SRResNet", outputs["SRResNet"]))

# %% [markdown]
# What to notice: after a real run, SRGAN's crop shows grain and texture that SRResNet
# smooths away, at a *lower* PSNR: the perception-distortion trade-off (Blau & Michaeli
# 2018). Notebook 06 measures it on benchmarks. The three lines under the crops say whether
# this run got there: when SRGAN is level with SRResNet and their outputs differ by less than
# a grey level (a run of a few steps, like `smoke`'s), the crops look alike and show nothing
# of the trade-off. Read a NIQE gain together with the grey-level line and the crops: NIQE
# is easily moved, and faint grain that nobody can see lowers it too (notebook 06 measures
# by how much).

# %% [markdown]
# ## Discriminator collapse
#
# A GAN needs the two players to stay matched. When $D$ becomes much stronger than $G$ it
# separates real from fake perfectly: $D(y) \to 1$, $D(G(x)) \to 0$, $\mathcal{L}_D \to 0$.
# From then on $D$ stops being a useful teacher: its decision is saturated, the gradient it
# sends to $G$ through the image carries little information about *how* to look real
# (Arjovsky & Bottou 2017), and with $\lambda = 10^{-3}$ that signal is tiny next to the
# content loss anyway. $G$ keeps training on the content loss alone while $D$ keeps winning.
# (This is not *mode* collapse, where $G$ produces the same output for different inputs.)
#
# The seed project hit exactly this within 7 epochs with $\lambda = 10^{-3}$, and fixed it
# by raising the adversarial weight to $5 \cdot 10^{-2}$. srlab watches for it: the
# **collapse detector** keeps a running mean of $\mathcal{L}_D$ and, when it stays below
# `collapse_threshold` (0.05) for `collapse_patience` steps (200), it warns with what to
# change and writes a `discriminator_collapse` event into `history.jsonl`;
# `plot_history` draws a **red dashed line** at that step.
#
# Below we provoke it with a second, short run: the weak adversarial weight $10^{-3}$ and a
# stronger discriminator (learning rate 10x the generator's), starting from the same
# SRResNet, in its own folder `RUNS / PRESET / "srgan_collapse"`.
#
# **Honest note for `smoke`:** four steps cannot make a real collapse. There the detector's
# knobs are set so it fires on purpose: `collapse_threshold=2.0` is *above* the chance loss
# 1.39, and `collapse_patience=2`. What you see in smoke is the detector's machinery (the
# warning, the event, the red line), not a discriminator that actually won. In the `quick`,
# `cpu` and `colab` presets the real threshold is kept (only the patience is shortened in
# `quick` and `cpu`, to fit runs of 50 and 100 steps), and whether D collapses is up to the
# training: the line under the run says whether the detector fired.

# %%
collapse_cfg = make_config("srgan", PRESET, **{
    **overrides,
    "adversarial_weight": 1e-3,   # the weight the seed project collapsed with
    "lr_d": 10 * cfg.lr_g,        # a discriminator that learns 10x faster than G
    "steps": COLLAPSE_STEPS or {"smoke": 4, "quick": 50, "cpu": 100}.get(nb.size_preset(PRESET), 3000),
    **{"smoke": {"collapse_threshold": 2.0, "collapse_patience": 2},  # forced: see the note above
       "quick": {"collapse_patience": 15}, "cpu": {"collapse_patience": 30}}.get(nb.size_preset(PRESET), {}),
})
print(f"collapse demo: {collapse_cfg.steps} steps, adversarial weight {collapse_cfg.adversarial_weight}, "
      f"lr D {collapse_cfg.lr_d}, detector: loss_d below {collapse_cfg.collapse_threshold} "
      f"for {collapse_cfg.collapse_patience} steps")
COLLAPSE_OUT = RUNS / PRESET / "srgan_collapse"
train(collapse_cfg, COLLAPSE_OUT, resume=RESUME, overwrite=not RESUME, time_budget=TIME_BUDGET)
collapse_history = read_history(COLLAPSE_OUT / "history.jsonl")
events = [r["step"] for r in collapse_history if r.get("event") == "discriminator_collapse"]
print("discriminator_collapse events at steps:", events or "none (D did not collapse in this run)")

# %% [markdown]
# What to notice: when the detector fired, the `UserWarning` above ("discriminator collapse:
# D loss has stayed below ...") is the detector speaking, with its advice. (When the run
# resumed from a finished checkpoint, no warning is printed again, but the event is still in
# the history.) Now the curves: a red dashed line marks the step where the detector fired;
# with no event there is no line.

# %%
plot_history(collapse_history)
plt.show()
gan_curves(collapse_history, collapse_cfg, "collapse demonstration: strong D, weak adversarial weight")
plt.show()

# %% [markdown]
# What to notice: the red dashed line in every panel, when the detector fired (the line
# under the run says whether it did; a short run may end before D wins). In a real collapse,
# to its left the D loss slides towards 0 and D(real) and D(fake) drift apart, towards 1
# and 0; to its right they stay there and the adversarial term grows (G is losing every
# time) while the images stop gaining texture. Compare with the healthy run's curves above. In `smoke` the
# line sits near the start with all curves still near chance: the threshold forced it.
#
# What to change when it happens (the detector's advice): raise the adversarial weight
# (1e-3 → 5e-2 in the seed project), lower D's learning rate, start from a better
# pretrained generator, or switch to ESRGAN's relativistic loss (notebook 05), where D
# judges whether a real image is *more* realistic than a fake and does not saturate the
# same way.

# %% [markdown]
# ## Exercises
#
# 1. Rerun the main training with `ADV_WEIGHT = 5e-2` (the seed project's value) into a new
#    folder. How do D(real)/D(fake) and the PSNR change? Do the crops show more texture?
# 2. Switch the content layer to `relu3_4` (`make_config(..., perceptual_layer="relu3_4")`)
#    and compare the crops with the `relu5_4` run. Which one looks sharper, which is closer
#    in PSNR to SRResNet?
# 3. Make the collapse demonstration milder: keep `lr_d = lr_g` and only the weight 1e-3.
#    Does the detector still fire? Then try `adversarial_weight=5e-2` with `lr_d = 10 * lr_g`.
# 4. Using the gradient plot, explain why the *minimax* generator loss would make a collapse
#    worse than the non-saturating one.
# 5. Train SRGAN with `init_from="none"` (from a random generator) for as many steps as the
#    main run and compare its crops and curves. What does pretraining buy?

# %% [markdown]
# ## Going further: training on several GPUs
#
# `torchrun --nproc_per_node=4 -m srlab train srgan --preset colab --batch-size 64` trains
# SRGAN on four GPUs, one process each (the global batch of 64 is split into four slices of 16;
# notebook 03's note explains the split). Both networks are wrapped in DistributedDataParallel,
# so the gradients of G and of D are averaged over the GPUs. The generator's step calls D
# *unwrapped*, with its weights frozen: D gets no gradient there, and a wrapped D would wait
# for gradients that never come. The SRGAN discriminator has BatchNorm, synchronised over the
# GPUs (SyncBatchNorm) like SRResNet's, unless the config says `sync_bn=False`. The logged
# losses and D(real)/D(fake) are averages over all GPUs, so the collapse detector sees the
# same numbers as on one GPU; only rank 0 writes the history, checkpoints and warnings.
