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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/srlab-course/srlab/blob/main/notebooks/01_data_prep.ipynb)
#
# # 01 · Data preparation: HR images, a patch store, and how LR images are made
#
# Every super-resolution model in this course learns from pairs $(x, y)$: a low-resolution
# input $x$ and the high-resolution image $y$ it came from. We never collect real pairs: we
# take HR photos and *make* the LR side with a degradation. This notebook builds the
# training data the next notebooks use.
#
# **Learning goals**
#
# - Know where the training photos come from (DIV2K on a GPU, the embedded photos in `quick`
#   and `smoke`) and which photo is held out for validation.
# - Understand why we cut the HR images once into a memory-mapped *patch store* instead of
#   decoding PNGs while training.
# - See what an (LR, HR) training pair looks like after random cropping, flips and rotations.
# - Compare three degradation models (bicubic, blur + bicubic, Real-ESRGAN) and say what each
#   one teaches a network to undo.
# - Measure a data loader's throughput in patches per second.

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

from srlab.presets import EMBEDDED_PRESETS  # ("quick", "smoke"): the embedded photos, nothing downloaded

EMBEDDED = PRESET in EMBEDDED_PRESETS

# Windows of the patch store: BasicSR's 480 px with stride 240 for DIV2K; for the small
# embedded photos 128 px with stride 64 (also half the size: every 64 px window of a photo,
# quick's training patch, lies inside one of them). The training notebooks build their store
# with the same values (`nb.store_windows`).
PATCH_SIZE, PATCH_STRIDE = nb.store_windows(PRESET)
EXTRACT_WORKERS = 1 if EMBEDDED else 2  # processes decoding PNGs (Colab has 2 cores)
HR_SIZE = 96  # side of a training HR patch (SRResNet/SRGAN use 96 px)
SCALE = 4
BATCH_SIZE = 16
LOADER_WORKERS = 2  # DataLoader worker processes (Colab: 2 cores)
LOADER_BATCHES = 4 if nb.size_preset(PRESET) == "smoke" else 20  # batches timed in the speed test

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
print(nb.colab_plan("01_data_prep"))

# %% [markdown]
# ## 1. The HR photos
#
# **DIV2K** (NTIRE 2017) is the standard training set of modern SR: 800 training and 100
# validation photos at 2K resolution (about $2040 \times 1400$ pixels), with diverse content
# and few compression artefacts. `srlab.download.download_dataset` fetches the official
# archives from ETH Zurich, checks their size and SHA-256, extracts them safely and resumes
# an interrupted download; a second call finds the `.complete` marker and does nothing. On
# Colab the archives are kept on Drive (`archives=nb.archive_dir()`): the 4 GB are downloaded
# once for the whole course, and each new runtime only extracts them onto its own disk.
#
# In `quick` and `smoke` (`srlab.presets.EMBEDDED_PRESETS`) there is no download: the
# **embedded photos** that ship inside scikit-image's wheel stand in for DIV2K. One of them, `srlab.presets.VALIDATION_IMAGE` (`coffee`), is held
# out: the training engine validates on it, so it never enters the training folder.

# %%
from srlab.data import embedded_images
from srlab.download import download_dataset
from srlab.images import list_images, write_image
from srlab.presets import VALIDATION_IMAGE

if EMBEDDED:
    hr_dir = DATA_DIR / PRESET / "hr"
    for name, img in embedded_images().items():
        if name != VALIDATION_IMAGE:  # held out for validation
            write_image(hr_dir / f"{name}.png", img)
else:
    # about 4 GB, once: the archives stay on Drive (nb.archive_dir()); a new runtime only extracts them
    div2k = download_dataset("div2k", DATA_DIR, archives=nb.archive_dir())
    hr_dir = div2k / "DIV2K_train_HR"

hr_files = list_images(hr_dir)
print(f"{len(hr_files)} HR training images in {hr_dir}" + (f" ({VALIDATION_IMAGE} held out)" if EMBEDDED else ""))

# %% [markdown]
# What to notice: with the embedded photos there are 6 (7, minus `coffee`); with DIV2K there
# are 800. The folder is plain PNG files: the slow format we are about to avoid while training.

# %% [markdown]
# ## 2. Why a patch store
#
# A training step needs a batch of random HR crops, say 16 crops of $96 \times 96$. The naive
# loader opens a random 2K PNG for each crop: it decompresses about $2040 \times 1400 \times 3
# \approx 8.6$ MB of pixels (tens of milliseconds of zlib on one core) to keep
# $96 \times 96 \times 3 \approx 28$ kB of them, about 0.3 %. Colab gives you **2 CPU cores**
# next to a GPU that finishes an SRResNet step in a few milliseconds, so the GPU would spend
# most of its time waiting for PNG decoding.
#
# The fix is to decode every HR image **once** and keep its raw pixels: `uint8` bytes, the
# images back to back, in a few `.npy` shards plus an `index.json`. Shards are
# *memory-mapped*: reading from an image is a slice of a file the operating system pages in
# and caches, with no decompression. We still sample from BasicSR's overlapping
# *sub-images* ($480 \times 480$ windows every 240 px), but the store only lists their
# corners: sub-image $i$ is a *view* of its memory-mapped image, not a copy, and a random
# $96 \times 96$ training crop is cut from a random sub-image when the batch is read. So each
# pixel is stored once: DIV2K's 800 training photos take about 6.6 GB, their pixels. Storing
# every overlapping sub-image's own pixels, as BasicSR's `extract_subimages` does, would hold
# each pixel about 3.3 times (about 22 GB), more than a Colab runtime should rebuild every
# time it starts.
#
# The stride is half the size, so every window of the original image up to half the size
# (240 px with DIV2K's 480 / 240; 64 px with the embedded photos' 128 / 64) lies
# entirely inside at least one sub-image (the last row and column of sub-images are placed
# flush with the image border, so no strip is lost). A larger crop, such as a 96 px one from a
# 128 px sub-image, still sees every pixel, only not every 96 px window.

# %%
from srlab.data import PatchStore, extract_patches

store_dir = extract_patches(hr_dir, DATA_DIR / PRESET / "patches", size=PATCH_SIZE, stride=PATCH_STRIDE,
                            workers=EXTRACT_WORKERS)
store = PatchStore(store_dir)
shard_bytes = sum(f.stat().st_size for f in store_dir.glob("*.npy"))
print(f"{len(store)} sub-images of {store.size}x{store.size} px from {len(hr_files)} images")
png_bytes = sum(f.stat().st_size for f in hr_files)
print(f"{len(store.shards)} shard(s), {shard_bytes / 2**20:.1f} MiB on disk in {store_dir} "
      f"({shard_bytes / png_bytes:.1f}x the {png_bytes / 2**20:.1f} MiB of the PNGs)")

# %% [markdown]
# What to notice: the store is *bigger* than the PNGs (the ratio in the last line): PNG
# compresses, the store keeps raw pixels so that reading them costs nothing. We trade disk
# space for CPU time. The number of sub-images counts windows, not copies: however many
# windows overlap a pixel, it is stored once (DIV2K: about 32,000 windows in about 6.6 GB).
# `extract_patches` is resumable: a finished shard is never redone, so running this cell
# again (or after a disconnect) costs only the shards that are missing. On Colab the
# training notebooks 02 to 05 each build this store again on their own new runtime, from
# the DIV2K archive kept on Drive (the plan above says how long).

# %% [markdown]
# ## 3. Training pairs from the store
#
# `PatchDataset` turns the store into a torch dataset. Item $i$:
#
# 1. takes sub-image $i$ and a random $96 \times 96$ HR crop of it (`HR_SIZE`), with its corner
#    on the LR grid (a multiple of the scale $s$, `SCALE` = 4);
# 2. applies a random 90-degree rotation and horizontal flip (8 orientations: photos have no
#    preferred orientation at this scale, so this multiplies the data for free);
# 3. makes the LR input with a degradation, here MATLAB bicubic: $x = (y)\!\downarrow_s$, a
#    $24 \times 24$ image.
#
# The random numbers of item $i$ in epoch $e$ come from the seed $(\text{seed}, e, i)$, so the
# pairs are the same whatever the number of loader workers.

# %%
import matplotlib.pyplot as plt

from srlab.data import PatchDataset
from srlab.images import to_image
from srlab.viz import show_image

dataset = PatchDataset(store, hr_size=HR_SIZE, scale=SCALE, degradation="bicubic")
lr, hr = dataset[0]
print(f"{len(dataset)} items; LR {tuple(lr.shape)} and HR {tuple(hr.shape)}, values in [{hr.min():.2f}, {hr.max():.2f}]")

fig, axes = plt.subplots(2, 4, figsize=(10, 5.2))
for k in range(4):
    lr, hr = dataset[k * len(dataset) // 4]
    show_image(axes[0, k], to_image(lr), f"LR {lr.shape[2]}x{lr.shape[1]}")
    show_image(axes[1, k], to_image(hr), f"HR {hr.shape[2]}x{hr.shape[1]}")
fig.suptitle(f"(LR, HR) training pairs: random crop, flip and rotation, bicubic x{SCALE}")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to notice: both rows are drawn at the same size, so each LR pixel appears as a
# $4 \times 4$ block. Edges and fine texture (hair, fur, text) are what the LR loses and what a
# super-resolution network has to put back. Some patches are flat (sky, background): a loss
# averaged over such patches says little, which is one reason large batches help.

# %% [markdown]
# ## 4. Three degradations
#
# The classical degradation model writes the LR image as
#
# $$x = \big((y \otimes k)\!\downarrow_s + n\big)_{\text{JPEG}_q}$$
#
# with a blur kernel $k$, downsampling by $s$, noise $n$ and JPEG compression at quality $q$.
# A network learns to invert *the degradation it was trained on* and little else, so this
# choice decides what the model is good for:
#
# | name | $k$, $n$, JPEG | used by |
# |---|---|---|
# | `bicubic` | MATLAB bicubic antialiasing filter only (no extra blur, no noise) | SRCNN, SRGAN, ESRGAN and every Set5/Set14 table |
# | `blur_bicubic` | Gaussian blur, $\sigma = 1.5$ px, then bicubic | student project B; a blurrier camera. Close to, but not, RDN's "BD" setting ($7 \times 7$ Gaussian, $\sigma = 1.6$) |
# | `realesrgan` | random blur (Gaussian, generalised, plateau, sinc), random resize, Gaussian or Poisson noise, JPEG, all applied **twice** | Real-ESRGAN: real photos from the web |
#
# Below: the most textured $128 \times 128$ patch of the first training photo and its LR
# versions (Real-ESRGAN with two seeds), each enlarged $4\times$ with nearest neighbour so
# you see the LR pixels themselves, not an interpolation of them.

# %%
import numpy as np

from srlab import degradations
from srlab.data import to_rgb8
from srlab.evaluate import upscale_classical
from srlab.images import read_image
from srlab.viz import detail_box

photo = to_rgb8(read_image(hr_files[0]))
top, left, size = detail_box(photo, 128, multiple=SCALE)  # the most textured 128 px square
patch = np.ascontiguousarray(photo[top : top + size, left : left + size])
lrs = {
    "bicubic": degradations.bicubic(patch, SCALE),
    "blur_bicubic": degradations.blur_bicubic(patch, SCALE),
    "realesrgan (seed 0)": degradations.realesrgan(patch, SCALE, rng=0),
    "realesrgan (seed 1)": degradations.realesrgan(patch, SCALE, rng=1),
}
fig, axes = plt.subplots(1, 1 + len(lrs), figsize=(2.6 * (1 + len(lrs)), 3))
show_image(axes[0], patch, f"HR {patch.shape[1]}x{patch.shape[0]}")
for ax, (name, lr) in zip(axes[1:], lrs.items()):
    show_image(ax, upscale_classical(lr, SCALE, "nearest"), f"{name}\nLR {lr.shape[1]}x{lr.shape[0]}, nearest x{SCALE}")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to notice: `bicubic` keeps crisp (aliased) LR pixels; `blur_bicubic` is visibly
# softer, so a model trained on it must sharpen more; `realesrgan` adds noise, blur of random
# shape and JPEG blocks, and two seeds give two different degradations of the same patch.
# A model trained on clean bicubic LR will treat that noise as texture and amplify it: this is
# why networks that score well on Set5 often fail on phone photos.

# %% [markdown]
# ## 5. How fast is the loader?
#
# Throughput is measured in patches per second. We time a `DataLoader` over the patch store
# (each worker memory-maps the shards on its own) for a few batches, then the cost that
# the naive loader pays on every sample before it has even cropped anything: decoding one
# HR PNG with `srlab.images.read_image`. We time the largest HR file.

# %%
import time

import torch

loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=LOADER_WORKERS)
batches = iter(loader)
next(batches)  # the first batch includes starting the workers: not counted
timed = min(LOADER_BATCHES, len(loader) - 1)  # a small store has fewer batches in an epoch
start = time.perf_counter()
for _ in range(timed):
    lr, hr = next(batches)
store_rate = timed * BATCH_SIZE / (time.perf_counter() - start)
del batches

biggest = max(hr_files, key=lambda p: p.stat().st_size)
reads = 3
start = time.perf_counter()
for _ in range(reads):
    img = read_image(biggest)
decode_s = (time.perf_counter() - start) / reads
naive_rate = max(LOADER_WORKERS, 1) / decode_s  # every worker decodes one PNG per patch, nothing else

print(f"patch store + DataLoader ({LOADER_WORKERS} workers): {store_rate:8.0f} patches/s")
print(f"decode a PNG per sample ({img.shape[1]}x{img.shape[0]}, {decode_s * 1e3:.1f} ms; "
      f"{max(LOADER_WORKERS, 1)} workers): {naive_rate:8.0f} patches/s at best")
print(f"speed-up: {store_rate / naive_rate:.0f}x")

# %% [markdown]
# What to notice: the naive figure is an upper bound (it leaves out the crop, the flips and
# the bicubic LR, which the store figure includes), and still the store wins. With DIV2K on
# Colab a 2K PNG takes tens of milliseconds, so two workers decoding PNGs give a few dozen
# patches per second, while a GPU step of batch 16 wants hundreds. The embedded photos
# (`quick`, `smoke`) are small (at most $1000 \times 872$), so the gap is smaller than on DIV2K; the
# repository's benchmark (`python -m srlab.bench data`) measured 30-80x on 2K images.
#
# The store lives in `DATA_DIR / PRESET / "patches"`. The training notebooks read it from there
# when their runtime has it, and build it the same way when it does not (`nb.training_data`);
# `python -m srlab train srresnet --data data/colab/patches` trains from it in a terminal.
# The `colab` preset never falls back to the embedded photos.

# %% [markdown]
# ## Exercises
#
# 1. **Stride and coverage.** Recompute by hand how many $480 \times 480$ sub-images, stride
#    240, a $2040 \times 1356$ DIV2K image gives (remember the extra sub-image flush with the
#    border). How many does stride 480 give, and which $96 \times 96$ crops can no longer be
#    drawn then?
# 2. **Where the time goes.** Time `degradations.bicubic`, `degradations.blur_bicubic` and
#    `degradations.realesrgan` on one $96 \times 96$ patch. Which one would limit a 2-core
#    loader, and at what batch size would it starve the GPU?
# 3. **Workers.** Rerun the speed test with `LOADER_WORKERS = 0, 1, 2, 4`. Why does 4 not
#    help on a 2-core machine?
# 4. **Degradation mismatch.** Take one HR patch, make its LR with `realesrgan`, and upscale it
#    with `upscale_classical(..., "bicubic")`. Compare its PSNR against the HR with the one you
#    get from the `bicubic` LR. What does the gap say about evaluating a bicubic-trained model
#    on real photos?
# 5. **Official LR.** `download_dataset("div2k", ..., include_lr=True)` also fetches DIV2K's
#    official bicubic x4 LR images, and `extract_patches(..., lr_dir=...)` stores them aligned
#    with the HR sub-images. Read them with `PatchDataset(store, degradation=None)` and check
#    how close they are to `degradations.bicubic` of the same crop.
