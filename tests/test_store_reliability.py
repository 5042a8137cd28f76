"""The patch store and image writing when things go wrong: a rerun with other settings, an index
cut off mid-write, a folder where no image decodes, arrays a format cannot hold, padded PNGs.

Images are small random arrays written in tmp_path; PIL (an independent decoder) checks what
ends up on disk and in the shards."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from srlab import data
from srlab.data import PatchDataset, PatchStore, extract_patches, is_patch_store
from srlab.images import ImageReadError, read_image, write_image


def _hr_folder(folder, n=3, side=128):
    rng = np.random.default_rng(0)
    for k in range(n):
        write_image(folder / f"{k}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return folder


def _extract(hr, out, **kw):
    return extract_patches(hr, out, **{"size": 48, "stride": 48, "workers": 1, "progress": False, **kw})


def _pil(path):
    return np.asarray(Image.open(path))


# ---------------------------------------------------------------- (1) reruns with other settings


@pytest.mark.parametrize(
    "change, message",
    [
        ({"size": 96}, "size=48 (now 96)"),
        ({"stride": 32}, "stride=48 (now 32)"),
        ({"scale": 2}, "scale=4 (now 2)"),
        ({"images_per_shard": 1}, "images_per_shard=64 (now 1)"),
        ({"lr_dir": "lr"}, "with_lr=False (now True)"),
        ({"more_images": True}, "the images of shard 0"),
    ],
)
def test_a_rerun_with_other_settings_is_refused_and_leaves_the_store_as_it_was(tmp_path, change, message):
    hr = _hr_folder(tmp_path / "hr")
    store = _extract(hr, tmp_path / "store")
    assert len(PatchStore(store)) == 3 * 3 * 3  # corners 0, 48, 80 on each axis of each 128 px image
    kw = dict(change)
    if kw.pop("more_images", False):
        write_image(hr / "3.png", np.zeros((128, 128, 3), np.uint8))
    if "lr_dir" in kw:
        kw["lr_dir"] = _hr_folder(tmp_path / "lr", side=32)
    with pytest.raises(ValueError, match="other settings") as err:
        _extract(hr, store, **kw)
    assert message in str(err.value) and "use another out_dir" in str(err.value)
    again = PatchStore(store)  # untouched: the index and the shards still agree
    assert (len(again), again.size, again.hr(0).shape) == (27, 48, (48, 48, 3))


def test_a_rerun_with_the_same_settings_reuses_the_finished_shards(tmp_path):
    hr = _hr_folder(tmp_path / "hr")
    store = _extract(hr, tmp_path / "store", images_per_shard=2)
    (store / "shard_00001.json").unlink()  # shard 1 cut off before its commit mark
    before = (store / "shard_00000.npy").stat().st_mtime_ns
    _extract(hr, store, images_per_shard=2)
    assert (store / "shard_00000.npy").stat().st_mtime_ns == before
    assert len(PatchStore(store)) == 27


def test_shards_of_an_older_version_without_settings_are_redone(tmp_path):
    hr = _hr_folder(tmp_path / "hr")
    store = _extract(hr, tmp_path / "store")
    meta_path = store / "shard_00000.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({"count": meta["count"], "patches": meta["patches"]}))  # as srlab wrote it before
    _extract(hr, store, size=96)
    patches = PatchStore(store)
    assert (len(patches), patches.size) == (3 * 2 * 2, 96)  # corners 0 and 32 on each axis
    assert np.array_equal(patches.hr(1), _pil(hr / "0.png")[0:96, 32:128])


def _old_layout_store(hr, out, size=48, stride=48):
    """A store as srlab wrote it before each pixel was stored once, written here by hand: one 4-D
    shard of every sub-image's own pixels, JSON and index without a layout key."""
    names = sorted(p.name for p in hr.iterdir())
    corners = {48: [0, 48, 80], 96: [0, 32]}[size]  # 128 px images, stride = size
    patches = [[name, t, l] for name in names for t in corners for l in corners]
    crops = np.stack([_pil(hr / name)[t : t + size, l : l + size] for name, t, l in patches])
    out.mkdir()
    np.save(out / "shard_00000.npy", crops)
    settings = {"with_lr": False, "size": size, "stride": stride, "scale": 4, "images_per_shard": 64}
    sources = [[name, None] for name in names]
    meta = {"count": len(patches), "patches": patches, "settings": settings, "sources": sources, "skipped": []}
    (out / "shard_00000.json").write_text(json.dumps(meta))
    shards = [{"file": "shard_00000.npy", "lr_file": None, "count": len(patches)}]
    index = {"size": size, "scale": 4, "has_lr": False, "shards": shards, "count": len(patches)}
    (out / data.STORE_INDEX).write_text(json.dumps(index, indent=1))
    return out


@pytest.mark.parametrize("old_size", [48, 96])  # the old store's settings: the same as the rerun's, or others
def test_a_store_of_the_old_layout_is_refused_in_words_and_cut_again(tmp_path, old_size):
    hr = _hr_folder(tmp_path / "hr")
    store = _old_layout_store(hr, tmp_path / "store", size=old_size, stride=old_size)
    with pytest.raises(ValueError, match=r"older srlab .*rerun srlab\.data\.extract_patches into"):
        PatchStore(store)
    _extract(hr, store)  # neither reused (it would be misread) nor refused for its settings
    assert np.load(store / "shard_00000.npy", mmap_mode="r").shape == (3 * 128 * 128 * 3,)
    patches = PatchStore(store)
    assert len(patches) == 27 and patches.size == 48
    corners = [(name, t, l) for name in ("0.png", "1.png", "2.png") for t in (0, 48, 80) for l in (0, 48, 80)]
    for i, (name, t, l) in enumerate(corners):
        np.testing.assert_array_equal(patches.hr(i), _pil(hr / name)[t : t + 48, l : l + 48])


def test_a_shard_that_is_not_the_one_its_index_describes_is_a_clear_error(tmp_path):
    store = _extract(_hr_folder(tmp_path / "hr"), tmp_path / "store")
    np.save(store / "shard_00000.npy", np.zeros((27, 48, 48, 3), np.uint8))  # e.g. an old shard copied in
    with pytest.raises(ValueError, match=r"is not the shard its index describes.*rerun srlab\.data\.extract_patches"):
        PatchStore(store).hr(0)


# ---------------------------------------------------------------- (2) the index


def test_an_index_write_cut_off_midway_leaves_the_previous_index(tmp_path, monkeypatch):
    hr = _hr_folder(tmp_path / "hr")
    store = _extract(hr, tmp_path / "store")
    before = (store / data.STORE_INDEX).read_text()
    real = pathlib.Path.write_text

    def killed_halfway(self, text, *a, **k):  # the process dies half-way through writing the index
        if self.name.startswith(data.STORE_INDEX):
            real(self, text[: len(text) // 2], *a, **k)
            raise KeyboardInterrupt
        return real(self, text, *a, **k)

    (store / "shard_00000.json").unlink()  # so the rerun has work to do, then writes the index
    monkeypatch.setattr(pathlib.Path, "write_text", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        _extract(hr, store)
    monkeypatch.undo()
    assert (store / data.STORE_INDEX).read_text() == before
    assert not list(store.glob("*.tmp")) and len(PatchStore(store)) == 27


@pytest.mark.parametrize("text", ['{"size": 48, "sca', '{"size": 48, "scale": 4}', "[]"])
def test_a_damaged_index_is_a_clear_error(tmp_path, text):
    store = _extract(_hr_folder(tmp_path / "hr"), tmp_path / "store")
    (store / data.STORE_INDEX).write_text(text)
    with pytest.raises(ValueError, match=r"is damaged .*rerun srlab\.data\.extract_patches"):
        PatchStore(store)


# ---------------------------------------------------------------- (3) nothing decodes


def test_a_folder_where_no_image_decodes_is_an_error_and_a_repaired_one_is_cut(tmp_path):
    hr = _hr_folder(tmp_path / "hr", n=2)
    good = {p.name: p.read_bytes() for p in hr.iterdir()}
    for name, raw in good.items():
        (hr / name).write_bytes(raw[: len(raw) // 2])  # cut short, the header intact
    with pytest.raises(ValueError, match="no usable image") as err:
        _extract(hr, tmp_path / "store", size=64, stride=64)
    assert "0.png (" in str(err.value) and "1.png (" in str(err.value) and "truncated" in str(err.value)
    assert not is_patch_store(tmp_path / "store")
    for name, raw in good.items():  # downloaded again: the empty shard is cut again, not reused
        (hr / name).write_bytes(raw)
    store = PatchStore(_extract(hr, tmp_path / "store", size=64, stride=64))
    assert len(store) == 2 * 2 * 2
    assert np.array_equal(store.hr(7), _pil(hr / "1.png")[64:, 64:])


def test_an_empty_store_is_refused(tmp_path):
    store = _extract(_hr_folder(tmp_path / "hr"), tmp_path / "store")
    index = json.loads((store / data.STORE_INDEX).read_text())
    (store / data.STORE_INDEX).write_text(json.dumps({**index, "shards": [], "count": 0}))
    for make in (PatchStore, PatchDataset):
        with pytest.raises(ValueError, match="holds no patch"):
            make(store)


# ---------------------------------------------------------------- (4) write_image


def test_write_image_refuses_arrays_the_format_cannot_hold(tmp_path):
    deep = np.full((16, 16, 3), 30000, np.uint16)
    for name in ("a.jpg", "a.webp", "a.bmp"):
        with pytest.raises(ValueError, match="cannot hold 16-bit pixels: write .png or .tiff"):
            write_image(tmp_path / name, deep)
    with pytest.raises(ValueError, match="uint8 or uint16 arrays, got float64"):
        write_image(tmp_path / "b.png", np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match=r"cannot write .*b\.npy"):
        write_image(tmp_path / "b.npy", np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    gray = np.full((16, 16), 30000, np.uint16)
    for name in ("c.png", "c.PNG", "c.tif", "c.tiff"):  # 16-bit formats keep 16 bits
        back = _pil(write_image(tmp_path / name, gray))
        assert back.shape == (16, 16) and int(back.min()) == int(back.max()) == 30000


# ---------------------------------------------------------------- (5) padded PNGs


def test_a_complete_png_with_trailing_padding_is_read(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = write_image(tmp_path / "a.png", img)
    complete = path.read_bytes()
    for padding in (32, 512):
        path.write_bytes(complete + bytes(padding))
        assert np.array_equal(read_image(path), img) and np.array_equal(_pil(path), img)
    path.write_bytes(complete[:-12])  # the IEND chunk cut off: still refused
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)


def test_a_store_moved_with_its_images_resumes_without_cutting_again(tmp_path):
    """The folders' paths are not settings: a store copied to another machine or Drive folder
    with its images is the same store."""
    _extract(_hr_folder(tmp_path / "a" / "hr"), tmp_path / "a" / "store")
    (tmp_path / "a").rename(tmp_path / "b")
    shard = tmp_path / "b" / "store" / "shard_00000.npy"
    before = shard.stat().st_mtime_ns
    store = PatchStore(_extract(tmp_path / "b" / "hr", tmp_path / "b" / "store"))
    assert shard.stat().st_mtime_ns == before and len(store) == 3 * 3 * 3  # 128 px in 48 px steps: 0, 48, 80 per axis
    np.testing.assert_array_equal(store.hr(0), _pil(tmp_path / "b" / "hr" / "0.png")[:48, :48])
