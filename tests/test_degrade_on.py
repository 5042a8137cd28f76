"""degrade_on: LR made from the HR batch on the training device (srlab.degrade_batch) instead of per
image where batches are built. Run here on the CPU: the device path is the same code on a GPU."""

import pytest
import torch

from srlab import degradations
from srlab.data import HR_ONLY, RandomPatches, StorePatches, embedded_images, extract_patches
from srlab.degrade_batch import realesrgan_batch
from srlab.images import write_image
from srlab.presets import make_config
from srlab.train import Trainer, degrade_where, train


def _weights(path):
    return torch.load(path, weights_only=True)["generator"]


@pytest.mark.parametrize(
    "device, degradation, where",
    [
        ("cuda", "bicubic", "device"),
        ("cuda", "realesrgan", "device"),
        ("cuda", "blur_bicubic", "data"),  # no batched form
        ("cpu", "bicubic", "data"),
        ("cpu", "realesrgan", "data"),  # a CPU's cores are the training's: nothing to move
    ],
)
def test_auto_degrades_on_a_gpu_when_there_is_a_batched_form(device, degradation, where):
    cfg = make_config("srresnet", "smoke", degradation=degradation)
    assert degrade_where(cfg, torch.device(device)) == where


def test_device_without_a_batched_form_or_an_unknown_place_is_refused():
    with pytest.raises(ValueError, match="'blur_bicubic' has no batched form"):
        cfg = make_config("srresnet", "smoke", degradation="blur_bicubic", degrade_on="device")
        degrade_where(cfg, torch.device("cpu"))
    with pytest.raises(ValueError, match="degrade_on='gpu'; choose one of auto, data, device"):
        degrade_where(make_config("srresnet", "smoke", degrade_on="gpu"), torch.device("cpu"))


def _same_crops_as_uint8(bicubic, hr_only):
    for step in (0, 7):
        (lr_a, hr_a), (lr_b, hr_b) = bicubic.batch(step), hr_only.batch(step)
        assert lr_b is None and lr_a.shape == (3, 3, 8, 8) and hr_b.dtype == torch.uint8
        assert torch.equal(hr_a, hr_b.float() / 255)  # to_device's conversion gives to_tensor's values


def test_hr_only_batches_are_the_same_crops_in_uint8():
    """Bicubic draws nothing from the batch's rng, so the HR crops are those of the bicubic batches;
    they travel as uint8 with channels-last strides (a quarter of the bytes, no copy for channels-last)."""
    images = list(embedded_images(("astronaut", "chelsea")).values())
    hr_only = RandomPatches(images, hr_size=32, scale=4, batch_size=3, seed=5, degradation=HR_ONLY)
    _same_crops_as_uint8(RandomPatches(images, hr_size=32, scale=4, batch_size=3, seed=5), hr_only)
    assert hr_only.batch(0)[1].is_contiguous(memory_format=torch.channels_last)


def test_hr_only_store_batches_are_the_same_crops_in_uint8(tmp_path):
    folder = tmp_path / "hr"
    for name, img in embedded_images(("astronaut", "chelsea")).items():
        write_image(folder / f"{name}.png", img)
    store = extract_patches(folder, tmp_path / "store", size=64, stride=64, workers=1, progress=False)
    options = dict(hr_size=32, scale=4, batch_size=3, seed=5)
    hr_only = StorePatches(store, degradation=HR_ONLY, **options)
    _same_crops_as_uint8(StorePatches(store, **options), hr_only)
    assert hr_only.batch(0)[1].is_contiguous(memory_format=torch.channels_last)  # hr_batch's layout, as above


def test_bicubic_on_the_device_trains_to_the_same_weights_as_per_image(tmp_path):
    """The batched bicubic equals MATLAB's per-image one bit for bit, so in fp32 the runs are identical,
    also with the HR-only batches coming from 2 loader workers in chunks of steps."""
    for where, workers in (("data", 0), ("device", 2)):
        cfg = make_config("srresnet", "smoke", amp="off", degrade_on=where, loader_workers=workers)
        train(cfg, tmp_path / where, progress=False)
    a, b = _weights(tmp_path / "data" / "last.pt"), _weights(tmp_path / "device" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_realesrgan_on_the_device_never_runs_the_per_image_chain(tmp_path, monkeypatch):
    """The generator sees realesrgan_batch of the step's HR crops, seeded by (seed, step, 3, rank);
    the per-image chain is never called (it would raise)."""

    def per_image(*args, **kwargs):
        raise AssertionError("the per-image Real-ESRGAN chain ran")

    monkeypatch.setitem(degradations.DEGRADATIONS, "realesrgan", per_image)
    monkeypatch.setattr(degradations, "realesrgan", per_image)
    cfg = make_config("srresnet", "smoke", amp="off", degradation="realesrgan", degrade_on="device", seed=4)
    trainer = Trainer(cfg, tmp_path, device="cpu", progress=False)
    seen = []
    trainer.G.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    _, hr = trainer.next_batch(0)
    trainer.train_step(*trainer.next_batch(0))
    expected = realesrgan_batch(hr.float() / 255, 4, generator=[4, 0, 3, 0])
    assert seen[0].shape == (2, 3, 8, 8) and torch.equal(seen[0], expected)
    levels = seen[0] * 255  # 8-bit LR, as the per-image chain makes it
    assert torch.allclose(levels, levels.round(), atol=1e-4) and not torch.equal(seen[0], seen[0].flip(0))


def test_realesrgan_on_the_device_resumes_to_the_same_weights(tmp_path):
    """The LR's seed is (seed, step, ...), so a run cut at step 3 resumes to an uninterrupted run's weights."""
    cfg = make_config("srresnet", "smoke", amp="off", degradation="realesrgan", degrade_on="device", val_every=100)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "cut", progress=False, stop_at=3)
    train(cfg, tmp_path / "cut", progress=False, resume=True)
    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
