"""srlab.pipeline: batches built by loader workers are exactly the training loop's own."""

import torch

from srlab.data import HR_ONLY, RandomPatches, embedded_images
from srlab.pipeline import auto_workers, batch_stream
from srlab.presets import make_config
from srlab.train import train


def test_workers_deliver_the_same_batches_in_the_same_order():
    images = list(embedded_images(("astronaut", "chelsea")).values())
    patches = RandomPatches(images, hr_size=32, scale=4, batch_size=3, seed=5)
    here = list(batch_stream(patches.batch, 4, 10, workers=0))
    loaded = list(batch_stream(patches.batch, 4, 10, workers=2, prefetch=2))
    assert len(here) == len(loaded) == 6
    for (lr_a, hr_a), (lr_b, hr_b), step in zip(here, loaded, range(4, 10)):
        lr_ref, hr_ref = patches.batch(step)
        assert torch.equal(lr_a, lr_ref) and torch.equal(hr_a, hr_ref)
        assert torch.equal(lr_b, lr_ref) and torch.equal(hr_b, hr_ref)


def test_chunks_of_steps_deliver_the_same_batches_including_a_partial_last_chunk():
    """Workers send several steps per item (stacked); HR-only batches carry None for LR."""
    images = list(embedded_images(("astronaut", "chelsea")).values())
    for degradation in ("bicubic", HR_ONLY):
        patches = RandomPatches(images, hr_size=32, scale=4, batch_size=3, seed=5, degradation=degradation)
        loaded = list(batch_stream(patches.batch, 4, 11, workers=2, chunk=3))  # items of 3, 3 and 1 steps
        assert len(loaded) == 7
        for (lr, hr), step in zip(loaded, range(4, 11)):
            lr_ref, hr_ref = patches.batch(step)
            assert torch.equal(hr, hr_ref) and (lr is None if lr_ref is None else torch.equal(lr, lr_ref))


def test_training_with_loader_workers_gives_the_same_weights(tmp_path):
    """amp off: exact equality is an fp32 claim (bf16 rounding could differ by thread layout)."""
    weights = {}
    for workers in (0, 2):
        cfg = make_config("srresnet", "smoke", amp="off", loader_workers=workers)
        summary = train(cfg, tmp_path / f"w{workers}", progress=False)
        assert 0.0 <= summary["data_wait"] < 1.0
        weights[workers] = torch.load(tmp_path / f"w{workers}" / "last.pt", weights_only=False)["generator"]
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_auto_workers_feed_a_gpu_and_leave_a_cpus_cores_to_training():
    assert auto_workers(torch.device("cuda"), None) == 2 and auto_workers(torch.device("cpu"), None) == 0
    assert auto_workers(torch.device("cpu"), 3) == 3
