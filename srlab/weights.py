"""Loading generators from any weight file a student is likely to have.

The weight files :func:`srlab.checkpoint.load_generator` accepts besides srlab checkpoints:

* a BasicSR / Real-ESRGAN ``.pth``: an RRDBNet state dict, bare or under ``params_ema`` /
  ``params`` (srlab's RRDBNet uses BasicSR's parameter names, so these load as they are);
* the two older layouts of the original ESRGAN code, mapped to BasicSR names:
  2018 (``model.0.weight``, ``model.1.sub.N.RDB1.conv1.0.weight``, ... ``model.10``) and
  2019 (``conv_first``, ``RRDB_trunk``, ``trunk_conv``, ``upconv1``, ``HRconv``, ...);
* a known name from :data:`PRETRAINED`, downloaded once into a cache and checksum-verified.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain containers
only. A file that needs arbitrary unpickling (a whole pickled model object, say) could run
code on load, so it is refused with an explanation instead.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from .download import download_file
from .models import RRDBNet

__all__ = [
    "PRETRAINED",
    "cache_dir",
    "fetch_weights",
    "read_weights",
    "detect_layout",
    "to_basicsr_names",
    "rrdbnet_from_state_dict",
    "rrdbnet_from_file_dict",
]

# Published RRDBNet weights. sha256 is the full digest where it is published, else the
# 8-hex-digit prefix BasicSR puts in its file names (checked as a prefix of the digest).
PRETRAINED: dict[str, dict] = {
    "realesrgan-x4plus": dict(
        url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
        file="RealESRGAN_x4plus.pth",
        size=67040989,
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        about="Real-ESRGAN x4plus (Wang et al. 2021): trained on synthetic real-world degradations "
        "(blur, noise, JPEG); the one to use on your own photos",
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
    """``torch.load(path, weights_only=True)`` with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic[:1] != b"\x80":  # torch.save's zip, or a legacy pickle
        raise ValueError(
            f"{path} is not a readable PyTorch weight file (it starts with {magic!r}: an HTML "
            f"error page or a cut-off download? Delete it and download it again)"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} needs arbitrary unpickling (it stores Python objects, not just tensors), which "
            f"could run code on load, so srlab refuses it. If you trust its source, load it yourself "
            f"and save only the state dict: torch.save(model.state_dict(), 'weights.pth'). "
            f"({err.__class__.__name__}: {str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # not a torch file at all: an HTML error page, a truncated download
        raise ValueError(
            f"{path} is not a readable PyTorch weight file "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


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
    """Build the RRDBNet a BasicSR-named state dict describes and load it (strictly)."""
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    out_ch, folded_in = last.shape[0], first.shape[1]
    scale = {1: 4, 4: 2, 16: 1}.get(folded_in // out_ch)  # pixel_unshuffle folds 4x or 16x channels
    if scale is None or folded_in % out_ch:
        raise ValueError(
            f"conv_first takes {folded_in} channels for {out_ch} output channels: not an x4, x2 or x1 RRDBNet"
        )
    extra = sorted(k for k in state if k.startswith("conv_up") and k[7] not in "12")
    if extra:
        raise ValueError(
            f"this RRDBNet has extra upsampling layers ({extra[0]}, ...): only x4, x2 and x1 are supported"
        )
    num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
    model = RRDBNet(
        num_in_ch=out_ch,
        num_out_ch=out_ch,
        num_feat=first.shape[0],
        num_block=num_block,
        num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
        scale=scale,
    )
    model.load_state_dict(state, strict=True)
    return model


# ---------------------------------------------------------------- a whole file


def rrdbnet_from_file_dict(obj: dict, ema: bool = True) -> tuple[RRDBNet, dict]:
    """The RRDBNet in a BasicSR / ESRGAN file's dict (bare, or under ``params_ema`` / ``params``),
    with ``{"layout", "scale", "architecture"}``. :func:`srlab.checkpoint.load_generator` calls this."""
    state = _unwrap(obj, ema)
    layout = detect_layout(state)
    model = rrdbnet_from_state_dict(to_basicsr_names(state))
    arch = {"name": "rrdbnet", "num_block": len(model.body), "num_feat": model.conv_first.out_channels}
    return model, {"layout": layout, "scale": model.scale, "architecture": arch}
