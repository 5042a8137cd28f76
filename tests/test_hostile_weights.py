"""Hostile weight files (issue 28): sizes are checked against what a file really holds before anything
is built or inflated, and crafted checkpoints and ncnn files end in one line naming the file.

Every file here is small, and each would make the old code build or inflate gigabytes. The fixture
``real_builds`` stops any convolution built off the meta device (the checks build an outline there:
shapes, no memory) and ``torch.load`` is stopped where a file must be refused unread, so each test shows
the refusal comes *before* the allocation, and the old code fails these tests at once instead of
taking the machine's memory.
"""

import builtins
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_ncnn_weights import TINY, write_ncnn

from srlab import models
from srlab.checkpoint import load_generator
from srlab.cli import main
from srlab.images import write_image
from srlab.models import RRDBNet, SRResNet
from srlab.weights import read_ncnn_rrdbnet, read_weights

SPEC = {"name": "srresnet", "num_block": 2, "num_feat": 8}
torch.manual_seed(0)
WEIGHTS = SRResNet(num_block=2, num_feat=8).state_dict()  # made at import, before any spy is set


@pytest.fixture
def real_builds(monkeypatch):
    """Stops (and records) every ``nn.Conv2d`` made off the meta device: a check that refuses a file
    before building leaves this empty. It raises at once, so code that builds first fails the test
    here, before it can allocate what the file asks for."""
    made = []
    init = torch.nn.Conv2d.__init__

    def spy(self, in_channels, out_channels, *args, **kwargs):
        if torch.get_default_device().type != "meta":
            made.append((in_channels, out_channels))
            raise AssertionError(f"a {in_channels}->{out_channels} convolution was built before the file was checked")
        init(self, in_channels, out_channels, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Conv2d, "__init__", spy)
    return made


@pytest.fixture
def unloaded(monkeypatch):
    """Fails a test whose file reaches ``torch.load`` (which would inflate it)."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called on a file that should have been refused unread")

    monkeypatch.setattr(torch, "load", refuse)


def _checkpoint(path: Path, **changes) -> Path:
    """A small srlab checkpoint of :data:`SPEC` (as ``train`` writes its config and generator), with ``changes``
    to its entries, or to its generator spec where a key is ``generator.<arg>``."""
    ckpt = {"config": {"generator": dict(SPEC), "scale": 4}, "generator": dict(WEIGHTS), "step": 3}
    for key, value in changes.items():
        target, _, arg = key.rpartition(".")
        (ckpt["config"]["generator"] if target == "generator" else ckpt)[arg] = value
    torch.save(ckpt, path)
    return path


def _upscale_error(tmp_path, weights: Path, capsys) -> str:
    """The stderr of ``upscale --weights weights`` on one image, which must fail with exit status 2."""
    write_image(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--weights", str(weights)]) == 2
    assert not (tmp_path / "out" / "in.png").exists()
    return capsys.readouterr().err


# ---------------------------------------------------------------- (1) a config far larger than its weights


def test_a_config_of_a_million_blocks_is_refused_before_a_layer_is_built(tmp_path, real_builds, capsys):
    path = _checkpoint(tmp_path / "deep.pt", **{"generator.num_block": 10**6})
    assert _upscale_error(tmp_path, path, capsys) == (
        f"error: {path}: its config describes a generator srlab does not build: SRResNet: num_block must be a "
        f"whole number from 0 to 128, got 1000000\n"
    )
    assert real_builds == []


@pytest.mark.parametrize(
    "arg, value, first_misfit",
    [
        ("num_block", 100, "1470 missing: body.2.conv1.weight, body.2.conv1.bias, body.2.bn1.weight, ..."),
        ("num_feat", 1024, "37 of another shape: conv_head.weight (8, 3, 9, 9) (the model's: (1024, 3, 9, 9)), "),
    ],
)
def test_a_config_that_disagrees_with_its_tensors_is_refused_unbuilt(tmp_path, real_builds, arg, value, first_misfit):
    """Within the limits, the config is compared with the file's tensors on an outline: 100 blocks of 15
    tensors where the file has 2 (98 x 15 = 1470 missing); 1024 channels where it has 8 (every tensor but
    the PReLU slopes, the BN step counts and conv_tail's 3 biases: 37)."""
    path = _checkpoint(tmp_path / "edited.pt", **{f"generator.{arg}": value})
    with pytest.raises(ValueError) as caught:
        load_generator(path)
    assert str(caught.value).startswith(f"{path}: the generator weights do not fit the SRResNet ({first_misfit}")
    assert str(caught.value).endswith(
        f": its config describes {dict(SPEC, **{arg: value})} x4 (edited, or put together from two runs?)"
    )
    assert real_builds == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_block=-1), "RRDBNet: num_block must be a whole number from 0 to 128, got -1"),
        (dict(num_feat=2.5), "RRDBNet: num_feat must be a whole number from 1 to 1024, got 2.5"),
        (
            dict(num_grow_ch=torch.tensor(32)),
            "RRDBNet: num_grow_ch must be a whole number from 1 to 1024, got tensor(32)",
        ),
        (dict(bicubic_residual="yes"), "RRDBNet: bicubic_residual must be true or false, got 'yes'"),
        (dict(scale=torch.tensor(4)), "RRDBNet supports scale in [1, 2, 4], got scale=tensor(4)"),
        (
            dict(blocks=2),
            "RRDBNet has no argument 'blocks'; its arguments: num_in_ch, num_out_ch, num_feat, num_block, "
            "num_grow_ch, scale, bicubic_residual",
        ),
    ],
)
def test_generator_arguments_are_checked_before_a_layer_is_built(real_builds, kwargs, message):
    """num_block=-1 built a generator with no blocks; a tensor for a number built one or failed deep in nn.Conv2d."""
    with pytest.raises(ValueError) as caught:
        models.build_generator("rrdbnet", **kwargs)
    assert str(caught.value) == message
    assert real_builds == []


# ---------------------------------------------------------------- (2) tensors claiming more than their storage


def _outline(**arch) -> dict[str, torch.Size]:
    """The parameter shapes of an RRDBNet of any width (an outline on the meta device, past srlab's limits)."""
    with pytest.MonkeyPatch.context() as mp, torch.device("meta"):
        mp.setattr(models, "MAX_CHANNELS", 2**20, raising=False)
        return {k: v.shape for k, v in RRDBNet(**arch).state_dict().items()}


def test_zero_stride_tensors_of_a_4096_channel_rrdbnet_are_refused_unbuilt(tmp_path, real_builds, capsys):
    """The issue's 2.4 KB file: every tensor of a 4096-channel RRDBNet as a zero-stride view of one zero."""
    zero = torch.zeros(())
    state = {k: zero.expand(shape) for k, shape in _outline(num_feat=4096, num_block=1).items()}
    torch.save({"params_ema": state}, tmp_path / "stretched.pth")
    path = tmp_path / "stretched.pth"
    assert path.stat().st_size < 10_000
    assert _upscale_error(tmp_path, path, capsys) == (
        f"error: {path}: tensor 'params_ema/conv_first.weight' claims shape (4096, 3, 3, 3) ({4096 * 27 * 4:,} bytes) "
        f"but its storage holds 4 bytes (zero or overlapping strides): a crafted file, refused before building "
        f"anything from it\n"
    )
    assert real_builds == []


def test_tensors_that_are_views_of_one_storage_are_refused_unbuilt(tmp_path, real_builds):
    """Each tensor fits its storage, but all share one: together they claim more than the file holds."""
    shapes = _outline(num_feat=64, num_block=1)
    shared = torch.randn(max(s.numel() for s in shapes.values()))
    state = {k: shared[: s.numel()].view(s) for k, s in shapes.items()}
    torch.save(state, tmp_path / "shared.pth")
    claimed = sum(s.numel() * 4 for s in shapes.values())
    with pytest.raises(ValueError) as caught:
        load_generator(tmp_path / "shared.pth")
    assert str(caught.value) == (
        f"{tmp_path / 'shared.pth'} is not an srlab checkpoint, and this RRDBNet state dict's weights claim "
        f"{claimed:,} bytes of weights but their storages hold {shared.numel() * 4:,} (tensors sharing one storage): "
        f"a crafted file, refused before building anything from it"
    )
    assert real_builds == []


# ---------------------------------------------------------------- (3) ncnn files with one number changed


def _edit_conv(param: Path, index: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the ``index``-th Convolution line of an ncnn .param."""
    lines = param.read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("Convolution ")][index]
    assert f" {old}" in lines[at] + " "
    lines[at] = (lines[at] + " ").replace(f" {old} ", f" {new} " if new else " ", 1).rstrip()
    param.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_ncnn(tmp_path):
    torch.manual_seed(0)
    return write_ncnn(RRDBNet(**TINY).eval(), tmp_path)


@pytest.mark.parametrize(
    "index, old, new, message",
    [  # TINY: num_feat 5, growth 3; conv_first is convolution 0, body.0.rdb1.conv1 convolution 1
        (0, "6=135", "6=135000000", r"\(RRDBNet: num_in_ch must be a whole number from 1 to 1024, got 3000000\)"),
        (
            1,
            "0=3",
            "0=1000",
            r"layer \S+ \(Convolution\) is where RRDBNet has body\.0\.rdb1\.conv1: num_output \(0=1000\)",
        ),
        (0, "0=5", "0=0", r"RRDBNet has conv_first: num_output \(0=0\) must be a whole number from 1 to 1024"),
        (0, "0=5", "", r"RRDBNet has conv_first: num_output \(0=None\) must be a whole number from 1 to 1024"),
        (1, "6=135", "6=0", r"body\.0\.rdb1\.conv1: num_output \(0=3\) must .* weight_data_size \(6=0\) a positive"),
    ],
    ids=["3M-input-channels", "1000-growth", "zero-output", "missing-output", "zero-weights"],
)
def test_ncnn_numbers_are_checked_before_building(tmp_path, tiny_ncnn, real_builds, capsys, index, old, new, message):
    param, _ = tiny_ncnn
    _edit_conv(param, index, old, new)
    err = _upscale_error(tmp_path, param, capsys)
    assert err.startswith(f"error: {param}") and err.count("\n") == 1
    assert re.search(message, err)
    assert real_builds == []


def test_an_ncnn_bin_larger_than_its_param_allows_is_refused_unread(tiny_ncnn, real_builds, monkeypatch):
    param, bin_path = tiny_ncnn
    os.truncate(bin_path, 2**30)  # a sparse 1 GiB file: no disk used
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read"))
    # every weight in fp32 with its 4-byte tag, and its bias: the most this .param's .bin can hold
    shapes = _outline(**TINY)
    most = sum(4 * s.numel() + (4 if name.endswith("weight") else 0) for name, s in shapes.items())
    with pytest.raises(ValueError) as caught:
        read_ncnn_rrdbnet(param)
    assert str(caught.value) == (
        f"{bin_path} has {2**30:,} bytes but its .param's layers use at most {most:,}: not this .param's .bin"
    )


# ---------------------------------------------------------------- (4) compressed zips, and legacy pickles


def _zip_like(source: bytes, path: Path, big_entry: int = 0) -> None:
    """Rewrite the torch zip ``source`` at ``path`` with every entry deflated; ``big_entry``: the tensor
    data entry replaced by that many zero bytes (deflated about 1,000 to 1: a zip bomb)."""
    with zipfile.ZipFile(io.BytesIO(source)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, True, 9) as out:
        for info in src.infolist():
            if big_entry and info.filename.endswith("/data/0"):
                with out.open(info.filename, "w", force_zip64=True) as f:
                    for _ in range(big_entry // 2**20):
                        f.write(bytes(2**20))
            else:
                out.writestr(info.filename, src.read(info))


def test_a_compressed_pth_that_would_inflate_1000_times_is_refused_unread(tmp_path, unloaded, capsys):
    buf = io.BytesIO()
    torch.save({"conv_first.weight": torch.zeros(4)}, buf)
    path = tmp_path / "bomb.pth"
    _zip_like(buf.getvalue(), path, big_entry=2**28)  # 256 MiB in about 256 KB
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        declared = sum(info.file_size for info in zf.infolist())
        names = [info.filename for info in zf.infolist()]
    assert declared > 2**28 and size < 2**19
    assert _upscale_error(tmp_path, path, capsys) == (
        f"error: {path} would inflate to {declared:,} bytes, {declared // size:,} times its {size:,} (compressed: "
        f"'{names[0]}', '{names[1]}', ...; torch.save stores weights uncompressed): a crafted or damaged file, "
        f"refused unread\n"
    )


def test_a_pth_compressed_by_another_tool_still_loads(tmp_path):
    """Deflated entries are not refused as such: real weights shrink far less than the bound allows."""
    torch.manual_seed(1)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    buf = io.BytesIO()
    torch.save({"params_ema": model.state_dict()}, buf)
    _zip_like(buf.getvalue(), tmp_path / "deflated.pth")
    assert tmp_path.joinpath("deflated.pth").stat().st_size < len(buf.getvalue())
    loaded, info = load_generator(tmp_path / "deflated.pth")
    assert info["layout"] == "basicsr"
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_a_legacy_pickle_declaring_a_4gib_storage_is_damaged_not_allocated(tmp_path):
    """A pre-zip file holds its storages raw, and torch reads each only as far as the file holds it:
    a storage declared 4 GiB in a 368-byte file is an error naming the file, and nothing to check before."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue().replace(b"K\x04N", b"J" + (2**30).to_bytes(4, "little") + b"N", 1)  # numel 4 -> 2**30
    assert data != buf.getvalue()
    (tmp_path / "legacy.pth").write_bytes(data)
    with pytest.raises(ValueError) as caught:
        read_weights(tmp_path / "legacy.pth")
    message = str(caught.value)  # torch's detail: a wrong size, or no memory for it under a ulimit -v
    assert message.startswith(f"{tmp_path / 'legacy.pth'} is not a readable PyTorch weight file: it is cut off or ")
    assert message.endswith(f"; {len(data)} bytes: a copy, download or save that did not finish?)")


# ---------------------------------------------------------------- (5) crafted checkpoints: one line, naming the file


CRAFTED = {
    "config-a-list": (
        {"config": [1, 2]},
        "its config is a list, not a dict: not a checkpoint as srlab writes it (edited or crafted?)",
    ),
    "generator-a-tensor": (
        {"generator": torch.zeros(3)},
        "its generator entry is a Tensor, not a state dict: not a checkpoint as srlab writes it (edited or crafted?)",
    ),
    "unknown-argument": (
        {"generator.num_blocks": 2},
        "its config describes a generator srlab does not build: SRResNet has no argument 'num_blocks'; its "
        "arguments: num_in_ch, num_out_ch, num_feat, num_block, scale, batch_norm, bicubic_residual",
    ),
    "tensor-for-a-number": (
        {"generator.num_block": torch.tensor(2)},
        "its config describes a generator srlab does not build: SRResNet: num_block must be a whole number from 0 "
        "to 128, got tensor(2)",
    ),
    "negative-blocks": (
        {"generator.num_block": -3},
        "its config describes a generator srlab does not build: SRResNet: num_block must be a whole number from 0 "
        "to 128, got -3",
    ),
    "scale-in-the-generator": (
        {"generator.scale": 2},
        "its config has the scale in its generator: it belongs beside the generator {'name': 'srresnet', "
        "'num_block': 2, 'num_feat': 8, 'scale': 2}: not a checkpoint as srlab writes it (edited or crafted?)",
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_checkpoints_are_one_line_naming_the_file(tmp_path, real_builds, capsys, case):
    changes, message = CRAFTED[case]
    path = _checkpoint(tmp_path / "crafted.pt", **changes)
    assert _upscale_error(tmp_path, path, capsys) == f"error: {path}: {message}\n"
    assert real_builds == []


def test_evaluate_model_and_train_init_give_the_same_line(tmp_path, capsys):
    path = _checkpoint(tmp_path / "crafted.pt", **{"generator.num_blocks": 2})
    line = f"error: {path}: {CRAFTED['unknown-argument'][1]}\n"
    hr = tmp_path / "hr"
    hr.mkdir()
    write_image(hr / "a.png", np.zeros((16, 16, 3), np.uint8))
    assert main(["evaluate", "--hr", str(hr), "--model", str(path)]) == 2
    assert capsys.readouterr().err == line
    argv = ["train", "srresnet", "--preset", "smoke", "--set", "amp=off", "--steps", "1", "--init", str(path)]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.endswith(line)


# ---------------------------------------------------------------- (6) a weight file that cannot be read


@pytest.fixture
def denied(monkeypatch):
    """Opening the files added to the returned set raises PermissionError, as after ``chmod 000`` for a
    user who is not root (CI runs as root, where chmod does not deny reads)."""
    paths, real_open = set(), builtins.open

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) in paths:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return paths


def test_an_unreadable_weight_file_is_one_line(tmp_path, denied, capsys):
    path = _checkpoint(tmp_path / "locked.pt")
    denied.add(path)
    assert _upscale_error(tmp_path, path, capsys) == (
        f"error: {path} cannot be read: permission denied. Check its permissions (chmod u+r {path}) or copy it "
        f"somewhere you can read\n"
    )


def test_an_unreadable_ncnn_param_or_bin_is_one_line(tmp_path, tiny_ncnn, denied, capsys):
    param, bin_path = tiny_ncnn
    for path in (param, bin_path):
        denied.clear()
        denied.add(path)
        assert _upscale_error(tmp_path, param, capsys) == (
            f"error: {path} cannot be read: permission denied. Check its permissions (chmod u+r {path}) or copy "
            f"it somewhere you can read\n"
        )
