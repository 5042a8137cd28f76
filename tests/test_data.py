import json

import numpy as np
import pytest
import torch
from conftest import benchmark_dir
from PIL import Image

from srlab.data import ImageFolderDataset, PatchDataset, PatchStore, _positions, extract_patches, to_rgb8
from srlab.images import write_image
from srlab.resize import imresize


def test_positions_by_hand():
    assert _positions(10, 4, 4, 2) == [0, 4, 6]  # the last one flush with the end
    assert _positions(8, 4, 4, 1) == [0, 4]
    assert _positions(11, 4, 3, 2) == [0, 3, 6]  # 11-4=7 rounded down to the LR grid: 6


def test_to_rgb8_conversions():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(to_rgb8(gray)[..., 2], gray)
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_rgb8(deep).dtype == np.uint8 and to_rgb8(deep).max() == 255
    assert to_rgb8(np.zeros((2, 2, 4), np.uint8)).shape == (2, 2, 3)


@pytest.fixture
def hr_folder(tmp_path):
    """Five images of mixed kinds, one unreadable, one too small."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    imgs = {
        "a.png": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
        "b.png": rng.integers(0, 256, (64, 64), dtype=np.uint8),  # gray
        "c.png": rng.integers(0, 65536, (66, 80, 3), dtype=np.uint16),  # 16 bit
        "d.png": rng.integers(0, 256, (72, 72, 4), dtype=np.uint8),  # RGBA
        "e.png": rng.integers(0, 256, (20, 90, 3), dtype=np.uint8),
    }  # smaller than the patch
    for name, img in imgs.items():
        write_image(folder / name, img)
    (folder / "f.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    return folder, imgs


def _expected_patch(imgs, name, top, left, size):
    decoded = np.asarray(Image.open(imgs["folder"] / name))  # PIL: an independent decoder
    if decoded.ndim == 2:
        decoded = np.repeat(decoded[..., None], 3, axis=2)
    return decoded[top : top + size, left : left + size, :3]


def test_extract_patches_stores_the_decoded_sub_images(hr_folder, tmp_path):
    folder, imgs = hr_folder
    with pytest.warns(UserWarning, match=r"skipped 2 images: e.png \(20x90 is smaller than 32\); f.png"):
        store_dir = extract_patches(folder, tmp_path / "store", size=32, stride=32, workers=1, progress=False)
    store = PatchStore(store_dir)
    index = [
        entry
        for k in range(len(store.shards))
        for entry in json.loads((store_dir / f"shard_{k:05d}.json").read_text())["patches"]
    ]
    expected_count = sum(
        len(_positions(im.shape[0], 32, 32, 4)) * len(_positions(im.shape[1], 32, 32, 4))
        for n, im in imgs.items()
        if n != "e.png"
    )
    assert len(store) == len(index) == expected_count
    imgs = {**imgs, "folder": folder}
    for i, (name, top, left) in enumerate(index):
        patch = store.hr(i)
        if name == "c.png":  # 16 bit -> x / 257, rounded
            ref = np.round(imgs["c.png"][top : top + 32, left : left + 32] / 257)
            assert np.array_equal(patch, ref.astype(np.uint8))
        else:
            assert np.array_equal(patch, _expected_patch(imgs, name, top, left, 32)), (name, top, left)


def test_parallel_and_resumed_extraction_give_the_same_store(hr_folder, tmp_path):
    folder, _ = hr_folder
    with pytest.warns(UserWarning):
        one = PatchStore(
            extract_patches(folder, tmp_path / "one", size=32, stride=16, workers=1, images_per_shard=1, progress=False)
        )
    with pytest.warns(UserWarning):
        two = extract_patches(
            folder, tmp_path / "two", size=32, stride=16, workers=2, images_per_shard=1, progress=False
        )
    # simulate a run cut off during shard 2: its JSON (the commit mark) and the index are missing
    (two / "shard_00002.json").unlink()
    (two / "index.json").unlink()
    first_mtime = (two / "shard_00000.npy").stat().st_mtime_ns
    with pytest.warns(UserWarning):
        extract_patches(folder, two, size=32, stride=16, workers=2, images_per_shard=1, progress=False)
    assert (two / "shard_00000.npy").stat().st_mtime_ns == first_mtime  # finished shards are not redone
    two = PatchStore(two)
    assert len(one) == len(two)
    for i in range(len(one)):
        assert np.array_equal(one.hr(i), two.hr(i))


def test_patch_dataset_is_reproducible_through_a_dataloader_with_workers(hr_folder, tmp_path):
    folder, _ = hr_folder
    with pytest.warns(UserWarning):
        store = extract_patches(folder, tmp_path / "store", size=48, stride=24, workers=1, progress=False)
    ds = PatchDataset(store, hr_size=32, scale=4, seed=3)
    lr, hr = ds[0]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and hr.dtype == torch.float32
    assert 0 <= hr.min() and hr.max() <= 1
    hr_u8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal((lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), imresize(hr_u8, 1 / 4))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    lr_b, hr_b = next(iter(loader))
    for j in range(4):
        assert torch.equal(hr_b[j], ds[j][1]) and torch.equal(lr_b[j], ds[j][0])
    ds.set_epoch(1)
    assert not torch.equal(ds[0][1], hr)  # a new epoch draws new crops


def test_patch_dataset_reads_precomputed_lr_aligned_with_hr(tmp_path):
    rng = np.random.default_rng(1)
    hr = (np.add.outer(np.arange(96), np.arange(128))[..., None] * [1, 2, 3] % 256).astype(np.uint8)
    hr = np.clip(hr.astype(int) + rng.integers(0, 3, hr.shape), 0, 255).astype(np.uint8)
    write_image(tmp_path / "hr" / "x.png", hr)
    write_image(tmp_path / "lr" / "x.png", imresize(hr, 1 / 4))
    store = extract_patches(
        tmp_path / "hr", tmp_path / "store", size=64, stride=32, lr_dir=tmp_path / "lr", workers=1, progress=False
    )
    ds = PatchDataset(store, hr_size=48, scale=4, degradation=None, augment=False, seed=0)
    for i in range(len(ds)):
        lr_t, hr_t = ds[i]
        hr_np = (hr_t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        lr_np = (lr_t.permute(1, 2, 0).numpy() * 255).round().astype(int)
        # the stored LR is the whole image's bicubic: inside the crop it matches the crop's own
        inner = imresize(hr_np, 1 / 4)[3:-3, 3:-3].astype(int)
        assert np.abs(lr_np[3:-3, 3:-3] - inner).max() <= 1
    with pytest.raises(ValueError, match="larger"):
        PatchDataset(store, hr_size=96)


def test_store_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="extract_patches"):
        PatchStore(tmp_path)
    write_image(tmp_path / "hr" / "tiny.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no usable image"):
        extract_patches(tmp_path / "hr", tmp_path / "s", size=32, stride=32, workers=1, progress=False)


def test_image_folder_dataset_pairs_the_matlab_lr_files():
    hr_dir, lr_dir = benchmark_dir("Set5", "HR"), benchmark_dir("Set5", "LRx4")
    from_files = ImageFolderDataset(hr_dir, scale=4, lr_dir=lr_dir)
    made = ImageFolderDataset(hr_dir, scale=4, degradation="bicubic")
    assert [name for *_, name in from_files.items] == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    for (lr_a, hr_a, _), (lr_b, hr_b, _) in zip(from_files, made):
        assert torch.equal(hr_a, hr_b) and torch.equal(lr_a, lr_b)  # MATLAB's files == our bicubic


def test_training_reads_a_patch_store_reproducibly(hr_folder, tmp_path):
    from srlab.data import StorePatches
    from srlab.train import Trainer, make_config

    folder, _ = hr_folder
    with pytest.warns(UserWarning):
        store = extract_patches(folder, tmp_path / "store", size=48, stride=24, workers=1, progress=False)
    cfg = make_config("srresnet", "smoke", data=str(store), degradation="blur_bicubic", init_from="none")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert isinstance(trainer.patches, StorePatches)
    lr, hr = trainer.patches.batch(3)
    assert lr.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 32, 32)
    assert torch.equal(trainer.patches.batch(3)[1], hr) and not torch.equal(trainer.patches.batch(4)[1], hr)
    from srlab.degradations import blur_bicubic

    hr_u8 = (hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal((lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), blur_bicubic(hr_u8, 4))
    assert trainer.fit()["step"] == 6


# ---------------------------------------------------------------- USM-sharpened targets


def _u8(batch, j):
    """Sample j of a (N, 3, H, W) batch in [0, 1] as the (H, W, 3) uint8 image it came from."""
    return (batch[j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def _check_usm_batch(plain, sharp, scale=4):
    """Same crops as without the option; hr_sharp is the USM of hr; LR is the MATLAB bicubic
    of hr_sharp (Real-ESRGAN degrades the sharpened ground truth), not of hr."""
    from srlab.degradations import usm_sharpen

    lr_plain, hr_plain = plain
    lr, hr, hr_sharp = sharp
    assert hr_sharp.shape == hr.shape and hr_sharp.dtype == torch.float32
    torch.testing.assert_close(hr, hr_plain, atol=0, rtol=0)
    for j in range(hr.shape[0]):
        np.testing.assert_array_equal(_u8(hr_sharp, j), usm_sharpen(_u8(hr, j)))
        np.testing.assert_array_equal(_u8(lr, j), imresize(_u8(hr_sharp, j), 1 / scale))
    assert not torch.equal(hr_sharp, hr) and not torch.equal(lr, lr_plain)


def test_random_patches_usm_target_degrades_the_sharpened_hr():
    from srlab.data import RandomPatches, embedded_images

    images = list(embedded_images(("astronaut", "chelsea")).values())
    plain = RandomPatches(images, hr_size=48, scale=4, batch_size=3, seed=5)
    sharp = RandomPatches(images, hr_size=48, scale=4, batch_size=3, seed=5, usm_target=True)
    assert len(plain.batch(2)) == 2  # the default keeps the (lr, hr) pair
    _check_usm_batch(plain.batch(2), sharp.batch(2))


@pytest.mark.parametrize("degradation", ["bicubic", "realesrgan"])
def test_random_patches_usm_batches_are_reproducible_and_split_across_ranks(degradation):
    from srlab.data import RandomPatches, embedded_images

    images = list(embedded_images(("astronaut", "coffee")).values())
    patches = RandomPatches(images, hr_size=32, scale=4, batch_size=6, seed=3, degradation=degradation, usm_target=True)
    whole = patches.batch(7)
    assert len(whole) == 3
    _assert_same_batches(patches.batch(7), whole)
    assert not torch.equal(patches.batch(8)[2], whole[2])
    parts = [patches.batch(7, rank, 3) for rank in range(3)]
    _assert_same_batches(tuple(torch.cat([p[i] for p in parts]) for i in range(3)), whole)


def test_store_patches_usm_target(hr_folder, tmp_path):
    from srlab.data import StorePatches

    folder, _ = hr_folder
    with pytest.warns(UserWarning):
        store = extract_patches(folder, tmp_path / "store", size=48, stride=24, workers=1, progress=False)
    plain = StorePatches(store, hr_size=32, scale=4, batch_size=4, seed=1)
    sharp = StorePatches(store, hr_size=32, scale=4, batch_size=4, seed=1, usm_target=True)
    whole = sharp.batch(2)
    _check_usm_batch(plain.batch(2), whole)
    _assert_same_batches(sharp.batch(2), whole)
    assert not torch.equal(sharp.batch(3)[2], whole[2])
    parts = [sharp.batch(2, rank, 2) for rank in range(2)]
    _assert_same_batches(tuple(torch.cat([p[i] for p in parts]) for i in range(3)), whole)


def test_patch_dataset_usm_target_keeps_the_stored_lr(tmp_path):
    # Paired data, as in Real-ESRGAN's paired fine-tuning: the LR is the stored file's,
    # only the target is sharpened.
    from srlab.degradations import usm_sharpen

    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "hr" / "x.png", hr)
    write_image(tmp_path / "lr" / "x.png", imresize(hr, 1 / 4))
    store = extract_patches(
        tmp_path / "hr", tmp_path / "store", size=64, stride=64, lr_dir=tmp_path / "lr", workers=1, progress=False
    )
    plain = PatchDataset(store, hr_size=48, scale=4, degradation=None, seed=0)
    sharp = PatchDataset(store, hr_size=48, scale=4, degradation=None, seed=0, usm_target=True)
    lr, hr_t = plain[0]
    lr_s, hr_s, hr_sharp = sharp[0]
    assert torch.equal(lr_s, lr) and torch.equal(hr_s, hr_t)
    np.testing.assert_array_equal(_u8(hr_sharp[None], 0), usm_sharpen(_u8(hr_t[None], 0)))


def test_an_image_whose_header_reads_but_whose_pixels_do_not_is_skipped(tmp_path):
    """A truncated PNG passes the header check that sizes the shard, then fails to decode: the
    shard holds one image's patches fewer than it was allocated for and is cut to size."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "hr"
    good = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_image(folder / "a.png", good)
    write_image(folder / "b.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (folder / "b.png").read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    with pytest.warns(UserWarning, match=r"skipped 1 images: b\.png"):
        store_dir = extract_patches(folder, tmp_path / "store", size=32, stride=32, workers=1, progress=False)
    store = PatchStore(store_dir)
    assert len(store) == 4  # a.png's four 32 px patches only
    assert np.array_equal(store.hr(3), good[32:, 32:])
    assert sorted(p.name for p in store_dir.iterdir()) == ["index.json", "shard_00000.json", "shard_00000.npy"]


# ---------------------------------------------------------------- the compact layout: each pixel once

# size 32, stride 24, scale 4: the corners of _positions written out by hand (the last one on
# each axis flush with the border, rounded down to the LR grid)
COMPACT_IMAGES = {  # name: (h, w, tops, lefts)
    "p.png": (70, 90, [0, 24, 36], [0, 24, 48, 56]),  # 70-32=38 -> 36; 90-32=58 -> 56
    "q.png": (44, 64, [0, 12], [0, 24, 32]),  # 44-32=12; 64-32=32
    "r.png": (61, 33, [0, 24, 28], [0]),  # 61-32=29 -> 28; 33-32=1 -> 0
}
COMPACT_WINDOWS = [(n, t, l) for n, (_, _, tops, lefts) in COMPACT_IMAGES.items() for t in tops for l in lefts]


@pytest.fixture
def compact_store(tmp_path):
    """Three HR images of awkward sizes with random LR images of HR / 4 (the store only checks
    their shapes), cut at 32 / 24 into two shards; the images decoded by PIL, not by srlab."""
    rng = np.random.default_rng(5)
    for name, (h, w, _, _) in COMPACT_IMAGES.items():
        write_image(tmp_path / "hr" / name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_image(tmp_path / "lr" / name, rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8))
    store = extract_patches(
        tmp_path / "hr",
        tmp_path / "store",
        size=32,
        stride=24,
        lr_dir=tmp_path / "lr",
        workers=1,
        images_per_shard=2,
        progress=False,
    )
    decoded = {
        kind: {name: np.asarray(Image.open(tmp_path / kind / name).convert("RGB")) for name in COMPACT_IMAGES}
        for kind in ("hr", "lr")
    }
    return store, decoded


def _npy_header_bytes(path) -> int:
    """The .npy header's length, read from the file's own bytes (NEP 1: magic, version, length)."""
    raw = path.read_bytes()[:12]
    assert raw[:6] == b"\x93NUMPY"
    return 10 + int.from_bytes(raw[8:10], "little") if raw[6] == 1 else 12 + int.from_bytes(raw[8:12], "little")


def test_the_store_keeps_each_pixel_once(compact_store):
    store, _ = compact_store
    files = {p.name: p.stat().st_size for p in store.iterdir()}
    assert sorted(files) == sorted(
        ["index.json", "shard_00000.json", "shard_00001.json"]
        + ["shard_00000.npy", "shard_00001.npy", "lr_00000.npy", "lr_00001.npy"]
    )
    hr_bytes = {"shard_00000.npy": (70 * 90 + 44 * 64) * 3, "shard_00001.npy": 61 * 33 * 3}
    lr_bytes = {"lr_00000.npy": (17 * 22 + 11 * 16) * 3, "lr_00001.npy": 15 * 8 * 3}
    for name, payload in {**hr_bytes, **lr_bytes}.items():
        header = _npy_header_bytes(store / name)
        assert header <= 128 and files[name] == header + payload, name
    json_bytes = sum(size for name, size in files.items() if name.endswith(".json"))
    headers = sum(_npy_header_bytes(store / name) for name in files if name.endswith(".npy"))
    assert sum(files.values()) == sum(hr_bytes.values()) + sum(lr_bytes.values()) + headers + json_bytes
    old_layout = len(COMPACT_WINDOWS) * (32 * 32 * 3 + 8 * 8 * 3)  # every sub-image's own pixels, HR + LR
    assert sum(hr_bytes.values()) + sum(lr_bytes.values()) < old_layout / 1.9


def test_windows_are_views_of_the_decoded_images(compact_store):
    store_dir, decoded = compact_store
    store = PatchStore(store_dir)
    assert (len(store), store.size, store.scale, store.has_lr) == (len(COMPACT_WINDOWS), 32, 4, True)
    for i, (name, t, l) in enumerate(COMPACT_WINDOWS):  # the last of each axis flush with the border
        np.testing.assert_array_equal(store.hr(i), decoded["hr"][name][t : t + 32, l : l + 32], err_msg=str(i))
        lr = decoded["lr"][name][t // 4 : t // 4 + 8, l // 4 : l // 4 + 8]
        assert lr.shape == (8, 8, 3)
        np.testing.assert_array_equal(store.lr(i), lr, err_msg=str(i))
    # zero-copy: overlapping windows of one image share their memory, windows of two do not
    assert np.shares_memory(store.hr(0), store.hr(1)) and np.shares_memory(store.lr(0), store.lr(5))
    assert not store.hr(0).flags.owndata and not np.shares_memory(store.hr(0), store.hr(12))
    with pytest.raises(IndexError):
        store.hr(len(COMPACT_WINDOWS))


def _reference_item(decoded, seed, epoch, i, hr_size):
    """PatchDataset's item i, recomputed from the PIL-decoded images and the hand-written windows:
    its random crop on the LR grid, then the same rotation and flip for HR and LR."""
    rng = np.random.default_rng([seed, epoch, i])
    top = int(rng.integers(0, (32 - hr_size) // 4 + 1)) * 4
    left = int(rng.integers(0, (32 - hr_size) // 4 + 1)) * 4
    name, t, l = COMPACT_WINDOWS[i]
    hr = decoded["hr"][name][t + top : t + top + hr_size, l + left : l + left + hr_size]
    lt, ll, n = (t + top) // 4, (l + left) // 4, hr_size // 4
    lr = decoded["lr"][name][lt : lt + n, ll : ll + n]
    turns, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
    hr, lr = np.rot90(hr, turns), np.rot90(lr, turns)
    return (lr[:, ::-1], hr[:, ::-1]) if flip else (lr, hr)


@pytest.mark.parametrize("step", [0, 9])
def test_store_batches_equal_crops_of_the_decoded_images(compact_store, step):
    from srlab.data import HR_ONLY, StorePatches

    store, decoded = compact_store
    picked = np.random.default_rng([3, step, 1]).integers(0, len(COMPACT_WINDOWS), 6)  # StorePatches' draw
    refs = [_reference_item(decoded, 3, step, int(i), 24) for i in picked]
    ref_lr = torch.from_numpy(np.stack([lr for lr, _ in refs])).permute(0, 3, 1, 2)
    ref_hr = torch.from_numpy(np.stack([hr for _, hr in refs])).permute(0, 3, 1, 2)
    none, hr = StorePatches(store, hr_size=24, scale=4, batch_size=6, seed=3, degradation=HR_ONLY).batch(step)
    assert none is None and hr.dtype == torch.uint8 and torch.equal(hr, ref_hr)
    lr, hr = StorePatches(store, hr_size=24, scale=4, batch_size=6, seed=3, degradation=None).batch(step)
    assert lr.shape == (6, 3, 6, 6) and hr.dtype == torch.float32
    assert torch.equal((hr * 255).round().to(torch.uint8), ref_hr)
    assert torch.equal((lr * 255).round().to(torch.uint8), ref_lr)
