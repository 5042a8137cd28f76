"""Downloading the SR datasets: resumable, verified, and safe to extract.

Three layers, each usable alone:

* ``download_file``: one URL to one file, resumed with an HTTP ``Range`` request after a
  dropped connection or a server that trickled too slowly, checked against a size and sha256
  when they are known, and never larger than a cap (an answer that never ends must not fill
  the disk);
* ``extract_archive``: a zip or tar unpacked only after every entry is checked (no
  absolute paths, no ``..``, no links leaving the folder; tar members also go through
  tarfile's own ``data`` extraction filter where Python has it; total size, compression
  ratio and entry count under caps, and so are the bytes a compressed tar inflates to and the
  entries read while it is only being listed), into a temporary folder that is moved into
  place only once the whole archive came out;
* ``download_dataset``: a name from ``DATASETS`` to a verified folder of images, with a
  ``.complete`` marker so a second call does nothing.

Layout on disk for ``download_dataset(name, to)``::

    to/archives/<archive file name>      the downloads, shared between datasets
    to/<name>/<folder>/                  the images of each archive entry

Test sets: the four of them come from ONE archive, the EDSR authors' ``benchmark.tar``
(Set5, Set14, B100, Urban100, each with ``HR/`` and ``LR_bicubic/X2|X3|X4/``), the copy
most SR code bases are evaluated on. It is downloaded once into ``to/archives`` and each
set extracts only its own folder, e.g. ``benchmark/Set5/HR`` -> ``to/set5/HR``.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import shutil
import struct
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, NamedTuple

from tqdm.auto import tqdm

__all__ = [
    "DATASETS",
    "DownloadError",
    "UnsafeArchiveError",
    "CorruptArchiveError",
    "download_file",
    "extract_archive",
    "download_dataset",
    "dataset_urls",
]


class DownloadError(ValueError):
    """A download, an archive or a downloaded dataset that is not what it should be."""


class UnsafeArchiveError(DownloadError):
    """An archive entry that would land outside the extraction folder (absolute path, ``..``, link),
    or a device or other special file."""


class CorruptArchiveError(DownloadError):
    """An archive that cannot be read to the end: damaged, or a download cut short."""


# ---------------------------------------------------------------- the datasets

# Sizes and sha256 of the DIV2K zips are the ones TensorFlow Datasets records for the same
# URLs (tensorflow_datasets/datasets/div2k/checksums.tsv). No published checksum is known
# for the EDSR archives, so theirs are None: the image count and decoding check them instead.
_DIV2K = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
_EDSR = "https://cv.snu.ac.kr/research/EDSR/"
# Approximate sizes of the EDSR archives, which have no published exact one: benchmark.tar
# as the EDSR authors' README gives it ("250MB"); Flickr2K.tar estimated from its contents
# (2650 2K PNGs, about 12 GB by DIV2K's 4.4 MB per image, plus bicubic and unknown x2/x3/x4).
_BENCHMARK_TAR_SIZE = 250_000_000
_FLICKR2K_TAR_SIZE = 20_000_000_000
_BENCHMARK_SETS = {"set5": ("Set5", 5), "set14": ("Set14", 14), "bsd100": ("B100", 100), "urban100": ("Urban100", 100)}


def _benchmark_entries(folder: str, count: int) -> list[dict]:
    """HR and bicubic x4 LR of one test set inside the shared benchmark.tar."""
    return [
        dict(
            url=_EDSR + "benchmark.tar",
            size=None,
            approx_size=_BENCHMARK_TAR_SIZE,
            sha256=None,
            member=f"benchmark/{folder}/HR",
            folder="HR",
            images=count,
            lr=False,
        ),
        dict(
            url=_EDSR + "benchmark.tar",
            size=None,
            approx_size=_BENCHMARK_TAR_SIZE,
            sha256=None,
            member=f"benchmark/{folder}/LR_bicubic/X4",
            folder="LR_bicubic/X4",
            images=count,
            lr=True,
        ),
    ]


# Each dataset is a list of archive entries:
#   url     the official download;
#   size, sha256   of the archive file, or None where no trustworthy value is known;
#   approx_size    where size is None: about how large the archive is; the download is capped
#                  at approx_size * APPROX_SIZE_MARGIN (an exact size is its own cap);
#   member  the folder inside the archive that holds the images (only it is extracted);
#   folder  where those images land, relative to to/<dataset>;
#   images  how many image files that folder must hold;
#   lr      True for low-resolution inputs, downloaded only with include_lr=True.
DATASETS: dict[str, dict] = {
    "div2k": {
        "description": "DIV2K: 800 training + 100 validation 2K photos (NTIRE 2017)",
        "archives": [
            dict(
                url=_DIV2K + "DIV2K_train_HR.zip",
                size=3530603713,
                sha256="9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
                member="DIV2K_train_HR",
                folder="DIV2K_train_HR",
                images=800,
                lr=False,
            ),
            dict(
                url=_DIV2K + "DIV2K_valid_HR.zip",
                size=448993893,
                sha256="20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
                member="DIV2K_valid_HR",
                folder="DIV2K_valid_HR",
                images=100,
                lr=False,
            ),
            dict(
                url=_DIV2K + "DIV2K_train_LR_bicubic_X4.zip",
                size=246914039,
                sha256="f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a",
                member="DIV2K_train_LR_bicubic/X4",
                folder="DIV2K_train_LR_bicubic/X4",
                images=800,
                lr=True,
            ),
            dict(
                url=_DIV2K + "DIV2K_valid_LR_bicubic_X4.zip",
                size=31505881,
                sha256="a50a5d1c4b88de4e8d300d8fb2b904c52fe93b2b298a4899697760d7cbb6d553",
                member="DIV2K_valid_LR_bicubic/X4",
                folder="DIV2K_valid_LR_bicubic/X4",
                images=100,
                lr=True,
            ),
        ],
    },
    "flickr2k": {
        "description": "Flickr2K: 2650 2K photos collected by the EDSR authors (with DIV2K: 'DF2K')",
        "archives": [
            dict(
                url=_EDSR + "Flickr2K.tar",
                size=None,
                approx_size=_FLICKR2K_TAR_SIZE,
                sha256=None,
                member="Flickr2K/Flickr2K_HR",
                folder="Flickr2K_HR",
                images=2650,
                lr=False,
            ),
            dict(
                url=_EDSR + "Flickr2K.tar",
                size=None,
                approx_size=_FLICKR2K_TAR_SIZE,
                sha256=None,
                member="Flickr2K/Flickr2K_LR_bicubic/X4",
                folder="Flickr2K_LR_bicubic/X4",
                images=2650,
                lr=True,
            ),
        ],
    },
    **{
        name: {
            "description": f"{folder} test set ({count} images) from the EDSR benchmark.tar",
            "archives": _benchmark_entries(folder, count),
        }
        for name, (folder, count) in _BENCHMARK_SETS.items()
    },
}


def dataset_urls(name: str, base_url: str | None = None, include_lr: bool = False) -> list[str]:
    """The distinct archive URLs ``download_dataset(name, ...)`` would fetch."""
    urls = [_archive_url(entry["url"], base_url) for entry in _entries(name, include_lr)]
    return list(dict.fromkeys(urls))


def _entries(name: str, include_lr: bool) -> list[dict]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return [entry for entry in DATASETS[name]["archives"] if include_lr or not entry["lr"]]


def _archive_url(url: str, base_url: str | None) -> str:
    """``url``, or the same file name under ``base_url`` (a mirror keeps the file names)."""
    if base_url is None:
        return url
    return base_url.rstrip("/") + "/" + _file_name(url)


def _file_name(url: str) -> str:
    return posixpath.basename(urllib.parse.urlparse(url).path)


# ---------------------------------------------------------------- one file

# Caps on a download, so a wrong file or an answer that never ends cannot fill the disk: a file
# of known size may have exactly that many bytes; a dataset archive without one, its table
# entry's approx_size times APPROX_SIZE_MARGIN; any other file, MAX_DOWNLOAD_BYTES (the largest
# archive in the table, Flickr2K.tar, has about 20 GB). download_file's max_size sets another.
MAX_DOWNLOAD_BYTES = 64 * 2**30
APPROX_SIZE_MARGIN = 1.5

# A server that keeps answering another byte range than the one asked for is asked again at
# most FETCH_RETRIES times, after waits of FETCH_BACKOFF seconds, then twice that, and so on
# (download_file's retries and backoff), then given up on.
FETCH_RETRIES = 3
FETCH_BACKOFF = 1.0
_sleep = time.sleep  # the backoff's wait; tests replace it

# A server that trickles (sends, but too slowly to ever finish) is given up on when fewer than
# MIN_DOWNLOAD_RATE bytes per second arrived over the last STALL_WINDOW seconds (download_file's
# min_rate and stall_window); the part file is kept, so the next run resumes. At 10 KiB/s the
# smallest archive in the table (31 MB) takes an hour, DIV2K's training HR zip four days; a
# server that sends nothing at all hits the socket's timeout instead.
MIN_DOWNLOAD_RATE = 10 * 1024
STALL_WINDOW = 60.0
_clock = time.monotonic  # the stall check's clock


class _Cap(NamedTuple):
    """The most bytes a download may have, and what set that number (named in errors)."""

    limit: int
    why: str
    exact: bool = False  # the limit is the file's known size


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
    max_size: int | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    min_rate: float | None = None,
    stall_window: float | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial download.

    Bytes go to ``dest.part`` first; a call after a dropped connection asks the server only
    for the missing tail (``Range: bytes=N-``). The file is renamed to ``dest`` once it is
    whole and matches ``expected_size``/``sha256`` (when given); a mismatch deletes the
    part file and raises DownloadError. An existing ``dest`` that verifies is returned as is.

    No more bytes are taken than ``expected_size``, else ``max_size``, else MAX_DOWNLOAD_BYTES:
    a server announcing or sending more gets its part file deleted and a DownloadError.
    ``retries`` and ``backoff`` (default FETCH_RETRIES, FETCH_BACKOFF): how often, and after
    which waits, a server answering the wrong byte range is asked again.
    ``min_rate`` and ``stall_window`` (default MIN_DOWNLOAD_RATE, STALL_WINDOW): a server sending
    fewer bytes per second than that over that many seconds raises DownloadError, keeping the
    part file to resume from. A folder that cannot be written (read-only, full) raises
    checkpoint's WriteError, a ValueError too, naming it.
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, expected_size, sha256):
        return dest
    try:
        dest.unlink(missing_ok=True)  # stale or damaged: fetch it again
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_error(err, dest.parent, "; choose a folder you can write to") from None
    part = dest.with_name(dest.name + ".part")
    if expected_size is not None:
        cap = _Cap(expected_size, "its expected size", exact=True)
    else:
        cap = _Cap(max_size, "max_size") if max_size is not None else _Cap(MAX_DOWNLOAD_BYTES, "MAX_DOWNLOAD_BYTES")
    offset = part.stat().st_size if part.exists() else 0
    if offset > cap.limit:
        offset = 0  # more bytes than the file may have: the part is from something else
    if expected_size is None or offset < expected_size:
        retries = FETCH_RETRIES if retries is None else retries
        backoff = FETCH_BACKOFF if backoff is None else backoff
        pace = _Pace(
            MIN_DOWNLOAD_RATE if min_rate is None else min_rate, STALL_WINDOW if stall_window is None else stall_window
        )
        _fetch(url, part, offset, cap, _Transfer(progress, chunk, timeout, pace), retries, backoff)
    _verify(part, url, expected_size, sha256)
    os.replace(part, dest)  # atomic: dest is either absent or complete
    return dest


class _Pace:
    """Watches a transfer's rate: fewer than ``min_rate`` bytes per second over a ``window`` of
    seconds means the server trickles, and waiting longer would look like a hang."""

    def __init__(self, min_rate: float, window: float):
        self.min_rate, self.window = min_rate, window
        self.since, self.mark = _clock(), 0

    def start(self, received: int) -> None:
        self.since, self.mark = _clock(), received

    def too_slow(self, received: int) -> str:
        """What was too slow, or an empty string while the rate is fine (then a new window starts)."""
        elapsed = _clock() - self.since
        if elapsed < self.window:
            return ""
        got = received - self.mark
        if got < self.min_rate * elapsed:
            return (
                f"only {got:,} bytes in the last {elapsed:.1f} s, under the minimum of "
                f"{self.min_rate:,.0f} bytes/s (min_rate, stall_window)"
            )
        self.start(received)
        return ""


class _Transfer(NamedTuple):
    """How to move the bytes: download_file's progress, chunk, timeout, and the rate watch."""

    progress: bool
    chunk: int
    timeout: float
    pace: _Pace


def _fetch(url: str, part: Path, offset: int, cap: _Cap, how: _Transfer, retries: int, backoff: float) -> None:
    """Append the bytes from ``offset`` on to ``part``; DownloadError if the transfer stops short.

    An answer for another range than asked (a 206 starting elsewhere, a 416 for a file of
    another size) means starting over from byte 0. A stale part explains one such answer; the
    whole file is then asked for ``retries`` more times at most, waiting ``backoff``, twice
    that, ... in between: a server that always answers so is not asked forever.
    """
    tries = 0
    while (wrong := _fetch_once(url, part, offset, cap, how)) is not None:
        if offset == 0:  # no stale part to blame: the same request went wrong again
            if tries == retries:
                raise DownloadError(
                    f"{url}: the server kept answering {wrong} ({tries + 1} tries); it or a proxy "
                    f"in between is misbehaving: try again later, or use a mirror"
                )
            _sleep(backoff * 2**tries)
            tries += 1
        offset = 0


def _fetch_once(url: str, part: Path, offset: int, cap: _Cap, how: _Transfer) -> str | None:
    """One request for the bytes from ``offset`` on: None when done, else what was wrong
    with the answer (a range other than asked), after which the caller starts over."""
    request = urllib.request.Request(url, headers={"User-Agent": "srlab-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.build_opener(_HttpRedirectsOnly).open(request, timeout=how.timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing after offset: complete, or from another file
            if _content_range_total(err.headers.get("Content-Range", "")) == offset:
                return None
            return f"416 (range not satisfiable) to a request from byte {offset}"
        raise DownloadError(f"{url}: HTTP error {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, HTTPException) as err:
        raise DownloadError(f"could not connect to {url}: {getattr(err, 'reason', err)}") from err
    with response:
        start, total = _start_and_total(response, offset)
        if start is None:
            return f"Content-Range {response.headers.get('Content-Range')!r} to a request from byte {offset}"
        if total is not None and total > cap.limit:
            raise _too_big(url, part, cap, f"announces {total:,} bytes, more than")
        received = _stream(response, part, start, total, cap, url, how)
    if total is not None and received < total:
        dropped = f"download of {url} stopped after {received} of {total} bytes (connection dropped)"
        raise DownloadError(dropped + _resume_hint(part))
    return None


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only: urllib's own handler also follows one to ftp://
    (and answers others with a vague HTTPError)."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = urllib.parse.urljoin(req.full_url, headers.get("Location") or headers.get("URI") or "")
        if urllib.parse.urlparse(target).scheme not in ("http", "https"):
            fp.close()
            raise DownloadError(
                f"{req.full_url} redirects to {target}: only http and https redirects are followed "
                f"(download the file by hand, or use another URL or mirror)"
            )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _start_and_total(response, offset: int) -> tuple[int | None, int | None]:
    """Where the body starts in the file and the file's full size (None when unknown).

    200 means the server ignored the Range header and sends the whole file from byte 0.
    """
    if response.status == 206:
        match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            return None, None
        return offset, None if match.group(3) == "*" else int(match.group(3))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _content_range_total(header: str) -> int | None:
    match = re.match(r"bytes \*/(\d+)", header)
    return int(match.group(1)) if match else None


def _stream(response, part: Path, start: int, total: int | None, cap: _Cap, url: str, how: _Transfer) -> int:
    """Copy the response body into ``part`` from byte ``start``, with a progress bar; returns the
    bytes now in it. Bytes past ``cap`` delete ``part``; a broken, trickling or unwritable
    transfer keeps it to resume from. Both raise (DownloadError; WriteError for the disk)."""
    bar = tqdm(
        total=total or (cap.limit if cap.exact else None),
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=_file_name(url) or url,
        disable=not how.progress,
        leave=False,
    )
    try:
        with open(part, "ab" if start else "wb") as out, bar:
            return _copy_body(response, out, part, start, cap, url, how, bar)
    except OSError as err:  # writing the part file: a full disk, a read-only folder
        raise _write_error(err, part, _resume_hint(part, "free some space there or use another folder")) from None


def _copy_body(response, out: IO[bytes], part: Path, start: int, cap: _Cap, url: str, how: _Transfer, bar) -> int:
    """The loop of _stream. ``read1`` returns what has arrived (``read`` would wait for a whole
    chunk), so the bar moves and the rate is checked however slowly the bytes come."""
    received = start
    how.pace.start(start)
    while True:
        try:
            block = response.read1(how.chunk)
        except (OSError, HTTPException) as err:
            out.flush()  # so that the hint counts every byte received
            hint = _resume_hint(part)
            raise DownloadError(f"download of {url} broke off after {received} bytes ({err}){hint}") from err
        if not block:
            return received
        if received + len(block) > cap.limit:
            raise _too_big(url, part, cap, "sent more than")
        out.write(block)
        received += len(block)
        bar.update(len(block))
        if slow := how.pace.too_slow(received):
            out.flush()
            hint = _resume_hint(part, "try again later, or use another mirror")
            raise DownloadError(f"download of {url} is too slow: {slow}{hint}")


def _resume_hint(part: Path, then: str = "") -> str:
    """``then`` (what to do), and that ``part`` keeps its bytes to resume from, when it has any."""
    size = part.stat().st_size if part.is_file() else 0
    kept = f"{part} keeps the {size:,} bytes received, so running again resumes from there" if size else ""
    return "".join(f"; {text}" for text in (then, kept) if text)


def _write_error(err: OSError, path: Path, after: str) -> OSError:
    """checkpoint's WriteError for ``err`` while writing ``path``: one line naming it, saying
    whether the disk is full (imported here: checkpoint needs torch, downloads do not)."""
    from .checkpoint import write_error

    return write_error(err, path, after)


def _too_big(url: str, part: Path, cap: _Cap, what: str) -> DownloadError:
    """The error for a download over its cap; the part file goes, so it is never resumed."""
    part.unlink(missing_ok=True)
    return DownloadError(
        f"{url}: the server {what} its cap of {cap.limit:,} bytes ({cap.why}): not the expected file, "
        f"or an answer that never ends; {part} was deleted (check the URL or mirror)"
    )


def _verify(part: Path, url: str, expected_size: int | None, sha256: str | None) -> None:
    """Raise DownloadError (and delete ``part``) when it is not the expected file."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(
            f"{url}: size mismatch: expected {expected_size} bytes, got {size} (the partial file was deleted)"
        )
    if sha256 is not None:
        got = _sha256(part)
        if not _digest_matches(got, sha256):
            part.unlink()
            raise DownloadError(
                f"{url}: sha256 mismatch: expected {sha256.lower()}, got {got} (the downloaded file was deleted)"
            )


def _matches(path: Path, expected_size: int | None, sha256: str | None) -> bool:
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return sha256 is None or _digest_matches(_sha256(path), sha256)


def _digest_matches(got: str, expected: str) -> bool:
    """Full sha256, or a prefix of at least 8 hex digits (BasicSR names weight files after one)."""
    expected = expected.lower()
    if len(expected) < 8:
        raise ValueError(f"a sha256 prefix needs at least 8 hex digits, got {expected!r}")
    return got.startswith(expected)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- archives

# Caps on one extraction (extract_archive's max_bytes, max_ratio, max_entries), so a zip bomb
# or a flood of files is refused before anything is written. They count the entries extracted
# (only the subfolder's, when one is given) at their declared sizes, which zipfile and tarfile
# never write more than. The largest extraction here, Flickr2K's HR folder, is about 12 GB in
# 2650 files, at a ratio near 1 (PNG data does not compress further).
MAX_EXTRACT_BYTES = 32 * 2**30
MAX_EXTRACT_RATIO = 100
MAX_EXTRACT_ENTRIES = 10_000

# Caps on reading an archive, whatever part of it is extracted. Listing a compressed tar inflates
# all of it, so max_bytes and max_ratio also bound the bytes inflated while reading (counted as
# they come, seeks included: an 11 kB bz2 file inflates to 10 GB). Every entry read counts
# against MAX_ARCHIVE_ENTRIES (extract_archive's max_archive_entries): zipfile and tarfile keep
# an object per entry. Not MAX_EXTRACT_ENTRIES: Flickr2K.tar holds about 18,600 entries (its HR
# folder and six LR ones), of which one folder is extracted. A zip's central directory may take
# ZIP_DIRECTORY_BYTES per entry allowed; its records are counted before zipfile parses them.
MAX_ARCHIVE_ENTRIES = 50_000
ZIP_DIRECTORY_BYTES = 1024

# What a damaged zip, tar, gzip or xz stream raises while being read.
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class _Caps(NamedTuple):
    """extract_archive's caps, None arguments replaced by the module's constants at call time."""

    bytes: int
    ratio: float
    entries: int
    archive_entries: int

    @classmethod
    def of(cls, max_bytes, max_ratio, max_entries, max_archive_entries) -> _Caps:
        return cls(
            MAX_EXTRACT_BYTES if max_bytes is None else max_bytes,
            MAX_EXTRACT_RATIO if max_ratio is None else max_ratio,
            MAX_EXTRACT_ENTRIES if max_entries is None else max_entries,
            MAX_ARCHIVE_ENTRIES if max_archive_entries is None else max_archive_entries,
        )


@dataclass
class _Entry:
    """One archive member, independent of zip/tar."""

    name: str  # as written in the archive, for messages
    parts: tuple[str, ...]  # normalised relative path
    kind: str  # "dir", "file" or "symlink"
    link: str = ""  # symlink target, or hard link target name
    open: Callable[[], IO[bytes]] | None = None
    size: int = 0  # the bytes it writes


def extract_archive(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    subfolder: str | None = None,
    progress: bool = False,
    max_bytes: int | None = None,
    max_ratio: float | None = None,
    max_entries: int | None = None,
    max_archive_entries: int | None = None,
) -> list[Path]:
    """Safely extract a .zip, .tar, .tar.gz or .tgz into ``dest``; returns the extracted files.

    Every entry is checked before anything is written: absolute paths, ``..`` components,
    links pointing outside ``dest`` and device files raise UnsafeArchiveError (a tar's members
    meet tarfile's own ``data`` filter first, where Python has it: ``_data_filter``). Extraction
    goes to ``dest.parent/.tmp-<name>`` and replaces ``dest`` only when the whole archive came
    out, so a corrupt or truncated archive (CorruptArchiveError, a DownloadError) leaves
    ``dest`` as it was and no temporary folder behind; so does a folder that cannot be written
    (read-only, full: checkpoint's WriteError, a ValueError too).

    ``subfolder``: extract only this folder of the archive, its contents landing directly in
    ``dest`` (one test set out of benchmark.tar).

    ``max_bytes``, ``max_ratio``, ``max_entries`` (default MAX_EXTRACT_BYTES, MAX_EXTRACT_RATIO,
    MAX_EXTRACT_ENTRIES): what is extracted may total no more bytes, no more times the archive's
    own size, and no more entries, or nothing is and UnsafeArchiveError says which cap it passed.
    ``max_bytes`` and ``max_ratio`` also bound what a compressed tar inflates to while it is
    read, and ``max_archive_entries`` (default MAX_ARCHIVE_ENTRIES) the entries read in all:
    reading stops as soon as one is passed.
    """
    archive, dest = Path(archive), Path(dest)
    caps = _Caps.of(max_bytes, max_ratio, max_entries, max_archive_entries)
    tmp = dest.parent / (".tmp-" + dest.name)
    try:
        with _open_archive(archive, caps) as handle:
            with _writing(dest):
                shutil.rmtree(tmp, ignore_errors=True)  # leftovers of an interrupted run
                tmp.mkdir(parents=True)  # empty: tarfile's filter judges paths against it, untouched by old links
            entries = _list_entries(handle, tmp, caps, archive)
            _check_links(entries)  # a hostile archive is refused whole, even outside subfolder
            selected = _select(entries, subfolder, archive)
            _check_links(selected)  # links must stay inside dest once the prefix is gone
            _check_caps(selected, archive, caps)
            if isinstance(getattr(handle, "fileobj", None), _Inflated):
                handle.fileobj.new_pass()  # writing reads the stream once more, under the same cap
            with _writing(dest):
                written = _write_entries(selected, tmp, progress, archive.name)
        with _writing(dest):
            if dest.exists():
                shutil.rmtree(dest)  # replaced only now that the new copy is complete
            os.replace(tmp, dest)
    except _CORRUPT as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorruptArchiveError(f"corrupt or truncated archive {archive}: {type(err).__name__}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest.joinpath(*parts) for parts in written]


@contextlib.contextmanager
def _writing(dest: Path):
    """An OSError writing the extraction of ``dest`` (read-only or full disk) as checkpoint's
    WriteError: one line naming ``dest`` and what to do."""
    try:
        yield
    except OSError as err:
        if isinstance(err, _CORRUPT):  # gzip.BadGzipFile is an OSError, about the archive
            raise
        raise _write_error(
            err, dest, f"; nothing was extracted ({dest} is as it was): free some space there or choose another folder"
        ) from None


@contextlib.contextmanager
def _open_archive(archive: Path, caps: _Caps):
    """The archive open for reading: a ZipFile, or a TarFile over the file or, for a gzip, bz2
    or xz one, over an _Inflated stream that counts what it inflates."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        _check_zip_directory(archive, caps.archive_entries)
        with zipfile.ZipFile(archive) as zf:
            yield zf
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with open(archive, "rb") as raw, _tar_stream(raw, archive, caps) as stream:
            with tarfile.open(fileobj=stream, mode="r:") as tf:  # "r:": tarfile inflates nothing itself
                yield tf
    else:
        raise DownloadError(
            f"{archive}: unsupported archive type (expected .zip, .tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz)"
        )


# The compressions a tar may have (tarfile's "r:*" reads these), by the magic bytes they start with.
_COMPRESSIONS = {
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ\x00": lzma.LZMAFile,
}


def _tar_stream(raw: IO[bytes], archive: Path, caps: _Caps):
    """``raw`` itself for a plain tar (it holds no more bytes than the file), else its inflated
    stream, counted against the caps whatever the file is named (bz2 data in ``benchmark.tar``)."""
    head = raw.read(6)
    raw.seek(0)
    for magic, inflate in _COMPRESSIONS.items():
        if head.startswith(magic):
            return _Inflated(inflate(raw), _read_cap(archive, caps))
    return contextlib.nullcontext(raw)


def _read_cap(archive: Path, caps: _Caps) -> tuple[int, Callable[[], UnsafeArchiveError]]:
    """The most bytes reading ``archive`` may inflate (max_bytes, max_ratio times its size), and
    the error for passing it."""
    stored = max(archive.stat().st_size, 1)
    if caps.bytes <= caps.ratio * stored:
        limit, cap = caps.bytes, f"the cap of {caps.bytes:,} (max_bytes)"
    else:
        limit, cap = int(caps.ratio * stored), f"{caps.ratio:g} times its {stored:,} bytes (max_ratio)"

    def passed() -> UnsafeArchiveError:
        return _refused(archive, f"inflates to more than {limit:,} bytes while being read, more than {cap}")

    return limit, passed


class _Inflated(io.RawIOBase):
    """A decompressed stream that counts every byte it inflates and raises UnsafeArchiveError
    before passing its limit: the bytes read, those skipped by a forward seek, and those a
    backward seek inflates again (gzip, bz2 and xz streams rewind to the start). tarfile sees
    a seekable file and never inflates more than the limit in one pass over the archive."""

    def __init__(self, stream: IO[bytes], read_cap: tuple[int, Callable[[], UnsafeArchiveError]]):
        super().__init__()
        self._stream, (self._limit, self._passed) = stream, read_cap
        self._pos = self.inflated = 0

    def new_pass(self) -> None:
        """Start counting again: one more read through the archive may inflate as much."""
        self.inflated = 0

    def _charge(self, n: int) -> None:
        if self.inflated + n > self._limit:
            raise self._passed()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        self._charge(size)  # before reading: a huge read (a pax header's declared size) never allocates
        data = self._inflate(self._stream.read, size)
        self._pos += len(data)
        self.inflated += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR):
            raise io.UnsupportedOperation("an inflated stream seeks from its start or the current position only")
        target = offset + (self._pos if whence == io.SEEK_CUR else 0)
        cost = target - self._pos if target >= self._pos else target  # backwards: inflated again from 0
        self._charge(cost)
        self._pos = self._inflate(self._stream.seek, target)
        self.inflated += cost
        return self._pos

    def close(self) -> None:
        self._stream.close()
        super().close()

    @staticmethod
    def _inflate(step, arg):
        """``step(arg)``, a damaged stream's OSError (bz2's "Invalid data stream") as tarfile's
        ReadError, so that it is reported as a corrupt archive and not as a disk error."""
        try:
            return step(arg)
        except OSError as err:
            if isinstance(err, gzip.BadGzipFile) or err.errno is not None:  # an I/O error of the disk under it
                raise
            raise tarfile.ReadError(f"{type(err).__name__}: {err}") from err


def _check_zip_directory(archive: Path, max_entries: int) -> None:
    """Count a zip's entries before zipfile parses its central directory, which builds an object
    per record whatever the end record declares: the declared count and directory size, then
    the records themselves, read where zipfile will read them."""
    end_record = getattr(zipfile, "_EndRecData", None)  # zipfile's own reader of the end record
    with open(archive, "rb") as f:
        end = end_record(f) if end_record else None
        if end is None:
            return  # not a zip, or a Python without the reader: zipfile says what is wrong
        declared, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if declared > max_entries:
            cap = f"the cap of {max_entries:,} (max_archive_entries)"
            raise _refused(archive, f"declares {declared:,} entries, more than {cap}")
        if size > max_entries * ZIP_DIRECTORY_BYTES:
            raise _refused(
                archive,
                f"has a {size:,}-byte central directory, more than {ZIP_DIRECTORY_BYTES:,} bytes (ZIP_DIRECTORY_BYTES) "
                f"for each of the {max_entries:,} entries it may hold (max_archive_entries)",
            )
        start = end[zipfile._ECD_LOCATION] - size
        if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
            start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
        if start < 0:
            return  # zipfile calls it a bad zip
        f.seek(start)
        records = _count_zip_records(f.read(size), max_entries)
    if records > max_entries:
        raise _refused(archive, f"holds more than {max_entries:,} entries, the cap (max_archive_entries)")


def _count_zip_records(directory: bytes, limit: int) -> int:
    """The central directory records in ``directory``, counted as zipfile walks them (a fixed
    46-byte part, then a name, extra field and comment of the lengths it gives); stops past ``limit``."""
    count = pos = 0
    while count <= limit and pos + 46 <= len(directory) and directory[pos : pos + 4] == b"PK\x01\x02":
        name, extra, comment = struct.unpack_from("<3H", directory, pos + 28)
        pos += 46 + name + extra + comment
        count += 1
    return count


def _list_entries(handle, root: Path, caps: _Caps, archive: Path) -> list[_Entry]:
    if isinstance(handle, zipfile.ZipFile):
        return _zip_entries(handle)
    return _tar_entries(handle, root, caps.archive_entries, archive)


def _zip_entries(zf: zipfile.ZipFile) -> list[_Entry]:
    entries = []
    for info in zf.infolist():
        parts = _safe_parts(info.filename)
        mode = info.external_attr >> 16
        if info.is_dir():
            entries.append(_Entry(info.filename, parts, "dir"))
        elif (mode & 0o170000) == 0o120000:  # a unix symlink stored by `zip -y`: its data is the target
            if info.file_size > 4096:  # longer than any path (Linux's PATH_MAX); read into memory below
                raise UnsafeArchiveError(f"symlink {info.filename!r} has a {info.file_size:,}-byte target")
            entries.append(_Entry(info.filename, parts, "symlink", zf.read(info).decode("utf-8")))
        else:
            entries.append(
                _Entry(info.filename, parts, "file", open=lambda info=info: zf.open(info), size=info.file_size)
            )
    return entries


def _tar_entries(tf: tarfile.TarFile, root: Path, max_entries: int, archive: Path) -> list[_Entry]:
    """The members of ``tf``, read to the end (a truncated tar fails here) but refused as soon as
    there are more than ``max_entries``: tarfile keeps every member it has read."""
    entries, files = [], {}  # files: the size of each file stored so far, by path
    for count, member in enumerate(tf, 1):
        if count > max_entries:
            raise _refused(archive, f"holds more than {max_entries:,} entries, the cap (max_archive_entries)")
        _data_filter(member, root)
        parts = _safe_parts(member.name)
        if member.isdir():
            entries.append(_Entry(member.name, parts, "dir"))
        elif member.issym():
            entries.append(_Entry(member.name, parts, "symlink", member.linkname))
        elif member.isfile() or member.islnk():
            if member.islnk() and _safe_parts(member.linkname) not in files:
                raise UnsafeArchiveError(
                    f"hard link {member.name!r} -> {member.linkname!r} does not "
                    f"point to a file stored before it in the archive"
                )
            # tarfile reads a hard link's data from its target, so it is written as a copy
            size = files[_safe_parts(member.linkname)] if member.islnk() else member.size
            entries.append(
                _Entry(member.name, parts, "file", member.linkname, open=lambda m=member: tf.extractfile(m), size=size)
            )
            files[parts] = size
        else:
            raise UnsafeArchiveError(f"{member.name!r} is a device, fifo or other special file")
    return entries


def _data_filter(member: tarfile.TarInfo, root: Path) -> None:
    """Refuse ``member`` if tarfile's own ``data`` extraction filter (PEP 706: Python 3.12,
    backported to 3.11.4 and 3.10.12) would: special files, absolute link targets, names or
    link targets that leave ``root``. Its FilterError becomes an UnsafeArchiveError.

    The hand checks stay behind it: for zips, for older Pythons, and for what the filter lets
    through here: absolute names (it strips their leading ``/`` instead of refusing them), paths
    through symlinks (it sees no link on disk, none being extracted yet), and links that leave
    the selected subfolder.
    """
    if not hasattr(tarfile, "data_filter"):
        return
    try:
        tarfile.data_filter(member, str(root))
    except tarfile.FilterError as err:  # a TarError: left as it is, it would be called corruption
        raise UnsafeArchiveError(f"unsafe archive entry: {err} (refused by tarfile's data filter)") from err


def _safe_parts(name: str) -> tuple[str, ...]:
    """An archive path as relative parts; UnsafeArchiveError if it is absolute or has ``..``."""
    path = name.replace("\\", "/")  # archives made on Windows may use backslashes
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        raise UnsafeArchiveError(f"archive entry {name!r} has an absolute path")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"archive entry {name!r} climbs out of the folder with '..'")
    return parts


def _check_links(entries: list[_Entry]) -> None:
    """Every symlink must resolve inside the folder without passing through another symlink.

    Resolution is lexical, so a path through a symlink (``link/..``) could fool it; refusing
    those makes the lexical answer the real one.
    """
    links = {e.parts for e in entries if e.kind == "symlink"}
    for entry in entries:
        if any(entry.parts[:i] in links for i in range(1, len(entry.parts))):
            raise UnsafeArchiveError(f"archive entry {entry.name!r} is stored under a symlink")
        if entry.kind != "symlink":
            continue
        target = entry.link.replace("\\", "/")
        if target.startswith("/") or re.match(r"[A-Za-z]:", target):
            raise UnsafeArchiveError(f"symlink {entry.name!r} -> {entry.link!r} points outside the folder")
        resolved = list(entry.parts[:-1])
        for part in target.split("/"):
            if tuple(resolved) in links:
                raise UnsafeArchiveError(f"symlink {entry.name!r} -> {entry.link!r} goes through a symlink")
            if part == "..":
                if not resolved:
                    raise UnsafeArchiveError(f"symlink {entry.name!r} -> {entry.link!r} points outside the folder")
                resolved.pop()
            elif part not in ("", "."):
                resolved.append(part)


def _check_caps(entries: list[_Entry], archive: Path, caps: _Caps) -> None:
    """UnsafeArchiveError when extracting ``entries`` would pass a cap."""
    total, stored = sum(e.size for e in entries), archive.stat().st_size
    if len(entries) > caps.entries:
        passed = f"holds {len(entries):,} entries to extract, more than the cap of {caps.entries:,} (max_entries)"
    elif total > caps.bytes:
        passed = f"would extract {total:,} bytes, more than the cap of {caps.bytes:,} (max_bytes)"
    elif total > caps.ratio * max(stored, 1):
        passed = (
            f"would expand {total / max(stored, 1):,.0f}-fold ({total:,} bytes out of {stored:,}), "
            f"more than the cap of {caps.ratio:g} (max_ratio)"
        )
    else:
        return
    raise _refused(archive, passed)


def _refused(archive: Path, passed: str) -> UnsafeArchiveError:
    """The error for an archive over a cap, ``passed`` saying which."""
    return UnsafeArchiveError(
        f"{archive} {passed}: not the expected archive, or a hostile one (a zip bomb?); nothing was "
        f"extracted (if you trust it, pass a larger cap to extract_archive)"
    )


def _select(entries: list[_Entry], subfolder: str | None, archive: Path) -> list[_Entry]:
    """The entries under ``subfolder``, with that prefix removed (all of them when None)."""
    if subfolder is None:
        return [e for e in entries if e.parts]
    prefix = _safe_parts(subfolder)
    n = len(prefix)
    selected = [
        _Entry(e.name, e.parts[n:], e.kind, e.link, e.open, e.size)
        for e in entries
        if e.parts[:n] == prefix and len(e.parts) > n
    ]
    if not selected:
        tops = sorted({"/".join(e.parts[:n]) for e in entries if e.parts})[:10]
        raise DownloadError(f"{archive} has no folder {subfolder!r}; it holds for example: {', '.join(tops)}")
    return selected


def _write_entries(entries: list[_Entry], root: Path, progress: bool, label: str) -> list[tuple[str, ...]]:
    """Write the (checked) entries under ``root``; returns the paths of the files written."""
    written = {}  # a dict: ordered, and duplicate entries counted once
    for entry in tqdm(entries, desc=f"extract {label}", unit="file", disable=not progress, leave=False):
        path = root.joinpath(*entry.parts)
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file():
            path.unlink()  # a later duplicate wins, and is never written through a link
        if entry.kind == "symlink":
            os.symlink(entry.link, path)
        else:
            with entry.open() as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        written[entry.parts] = None
    return list(written)


# ---------------------------------------------------------------- datasets

MARKER = ".complete"


def download_dataset(
    name: str,
    to: str | os.PathLike,
    base_url: str | None = None,
    include_lr: bool = False,
    progress: bool = True,
    archives: str | os.PathLike | None = None,
) -> Path:
    """Download, extract and verify dataset ``name`` (a key of DATASETS); returns ``to/name``.

    Archives go to ``archives`` (default ``to/archives``; kept, so a re-extraction needs no
    download), images to ``to/name/<folder>``. Each folder must hold the expected number of
    images and every one must decode. ``to/name/.complete`` records the verified folders: a
    second call that finds them all, with their counts unchanged, touches neither the network
    nor the archives.

    ``base_url``: a mirror holding the same file names (``base_url/DIV2K_train_HR.zip`` ...).
    ``archives``: on Colab, a folder on Google Drive: the archive is downloaded once (resumed
    there after a disconnect) and every new runtime only extracts it onto its own fast disk.
    """
    entries = _entries(name, include_lr)
    to = Path(to)
    archives = Path(archives) if archives is not None else to / "archives"
    root = to / name
    done = _read_marker(root)
    for entry in entries:
        if done.get(entry["folder"]) == entry["images"] == _count_images(root / entry["folder"]):
            continue
        try:  # here, not in download_file (which weights use too), as it names the command's option
            archives.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_error(err, archives, "; choose a folder you can write to (download --to)") from None
        archive = download_file(
            _archive_url(entry["url"], base_url),
            archives / _file_name(entry["url"]),
            expected_size=entry["size"],
            sha256=entry["sha256"],
            progress=progress,
            max_size=_download_cap(entry),
        )
        folder = root / entry["folder"]
        try:
            extract_archive(archive, folder, subfolder=entry["member"], progress=progress)
        except (CorruptArchiveError, UnsafeArchiveError) as err:
            archive.unlink()  # unusable as it is, and never read (inflated) again: the next call downloads it anew
            raise type(err)(
                f"{err}; the archive was deleted, run again to download it anew (if it is refused again, "
                f"the server or --base-url mirror sends a wrong file)"
            ) from err
        _verify_images(folder, entry["images"], archive, progress)
        done[entry["folder"]] = entry["images"]
        _write_marker(root, name, done)
    return root


def _download_cap(entry: dict) -> int | None:
    """download_file's max_size for a table entry: None where the exact size (its own cap) is known."""
    return None if entry["size"] else int(entry["approx_size"] * APPROX_SIZE_MARGIN)


def _count_images(folder: Path) -> int:
    from .images import list_images

    return len(list_images(folder)) if folder.is_dir() else -1


def _verify_images(folder: Path, expected: int, archive: Path, progress: bool) -> None:
    """DownloadError unless ``folder`` holds ``expected`` images that all decode."""
    from .images import ImageReadError, list_images, read_image

    paths = list_images(folder)
    if len(paths) != expected:
        raise DownloadError(
            f"{folder}: expected {expected} images, found {len(paths)} "
            f"(extracted from {archive}; delete it to download it again)"
        )
    bad = []
    for path in tqdm(paths, desc=f"verify {folder.name}", unit="img", disable=not progress, leave=False):
        try:
            read_image(path)
        except ImageReadError as err:
            bad.append(f"{path.name} ({err})")
    if bad:
        raise DownloadError(
            f"{folder}: {len(bad)} of {expected} images do not decode: {'; '.join(bad)} "
            f"(extracted from {archive}; delete it to download it again)"
        )


def _read_marker(root: Path) -> dict[str, int]:
    try:
        return dict(json.loads((root / MARKER).read_text())["folders"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no marker, or a damaged one: verify again


def _write_marker(root: Path, name: str, folders: dict[str, int]) -> None:
    from .images import atomic_write

    text = json.dumps({"dataset": name, "folders": folders}, indent=1, sort_keys=True)
    try:
        atomic_write(root / MARKER, lambda tmp: tmp.write_text(text))
    except OSError as err:  # a full disk: the images are verified, only the record of it is missing
        raise _write_error(err, root / MARKER, "; the images are in place: run again once there is room") from None
