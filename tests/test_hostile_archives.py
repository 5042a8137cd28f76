"""srlab.download against hostile archives, trickling servers and unwritable disks (issue 28).

Archives: a compressed tar is inflated while it is only being listed, so what it inflates to is
counted as it is read (an 11 kB bz2 file named benchmark.tar inflated to 10 GB before), and
every entry read counts, not only the extracted ones (a 2.2 MB archive with a million entries
took 195 s and 1.7 GB). The bounds are measured independently of srlab: the bytes the bz2, xz
and zlib decompressors return, the tar headers tarfile parses, whether zipfile parsed a central
directory at all. Hostile archives are built from repeated compressed streams (concatenated
bz2/xz streams and gzip members are one stream to their readers), so each costs milliseconds.

Disks: read-only and full filesystems are simulated by patching mkdir and the files srlab.download
opens, since CI runs as root, where chmod cannot make a folder read-only.
"""

import bz2
import errno
import gzip
import lzma
import os
import re
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import serve
from test_download import benchmark_tar, leftovers, make_tar, png_bytes, tiny_images, write
from test_download_reliability import odd_server  # noqa: F401  (a fixture)

from srlab import download
from srlab.checkpoint import WriteError
from srlab.cli import main
from srlab.download import (
    MARKER,
    CorruptArchiveError,
    DownloadError,
    UnsafeArchiveError,
    download_dataset,
    download_file,
    extract_archive,
)

COMPRESS = {
    "bz2": bz2.compress,
    "xz": lambda data: lzma.compress(data, preset=0),
    "gz": lambda data: gzip.compress(data, 9),
}
SELECTED = "benchmark/Set5/HR"  # the folder set5 extracts from benchmark.tar


# ---------------------------------------------------------------- independent measures


class _CountingDecompressor:
    """A decompressor that adds up the bytes it returns into ``counter`` (else as the real one)."""

    def __init__(self, real, counter: list[int]):
        self._real, self._counter = real, counter

    def decompress(self, *args, **kwargs):
        out = self._real.decompress(*args, **kwargs)
        self._counter[0] += len(out)
        return out

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def inflated(monkeypatch) -> list[int]:
    """``inflated[0]``: bytes inflated by every bz2, xz and zlib decompressor made in the test."""
    counter = [0]
    for module, name in ((bz2, "BZ2Decompressor"), (lzma, "LZMADecompressor"), (zlib, "decompressobj")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, **k: _CountingDecompressor(real(*a, **k), counter))
    if hasattr(zlib, "_ZlibDecompressor"):  # gzip's decompressor from Python 3.12 on
        real = zlib._ZlibDecompressor
        monkeypatch.setattr(zlib, "_ZlibDecompressor", lambda *a, **k: _CountingDecompressor(real(*a, **k), counter))
    return counter


@pytest.fixture
def headers_parsed(monkeypatch) -> list[int]:
    """``headers_parsed[0]``: tar headers tarfile parsed in the test."""
    counter, real = [0], tarfile.TarInfo.fromtarfile.__func__

    def fromtarfile(cls, tf):
        counter[0] += 1
        return real(cls, tf)

    monkeypatch.setattr(tarfile.TarInfo, "fromtarfile", classmethod(fromtarfile))
    return counter


# ---------------------------------------------------------------- hostile archives


def zero_bomb(compress, member: str, gib: int) -> bytes:
    """A tar whose one file ``member`` holds ``gib`` GiB of zeros, as concatenated 8 MiB streams."""
    chunk = 8 << 20
    n = (gib << 30) // chunk
    info = tarfile.TarInfo(member)
    info.size = n * chunk - 1024  # after it, 1024 zero bytes end the archive
    return compress(info.tobuf(format=tarfile.GNU_FORMAT)) + compress(bytes(chunk)) * n


def skipped_bomb(compress, n: int) -> bytes:
    """``n`` 1 MiB files of zeros outside the selected folder, then one small image inside it."""
    info = tarfile.TarInfo("other/zeros.bin")
    info.size = 1 << 20
    image = make_tar({f"{SELECTED}/a.png": png_bytes(tiny_images(1)["img00.png"])})
    return compress(info.tobuf() + bytes(info.size)) * n + compress(image)


def many_entries_tar_gz(n_thousands: int) -> bytes:
    """A selected image, then ``n_thousands`` x 1024 empty files outside it: ~2.3 kB per thousand."""
    image = tarfile.TarInfo(f"{SELECTED}/a.png")
    image_data = png_bytes(tiny_images(1)["img00.png"])
    image.size = len(image_data)
    first = image.tobuf() + image_data + bytes(-len(image_data) % 512)
    block = gzip.compress(tarfile.TarInfo("other/empty").tobuf() * 1024, 9)
    return gzip.compress(first) + block * n_thousands + gzip.compress(bytes(1024))


def many_entries_zip(n: int, declared: int | None = None) -> bytes:
    """A zip whose central directory lists one selected file and ``n`` records of another (all
    pointing at the same stored, empty data); its end record declares ``declared`` entries."""

    def records(name: bytes, offset: int) -> tuple[bytes, bytes]:
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
        central = struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, offset
        )
        return local, central + name

    local_a, central_a = records(f"{SELECTED}/a.png".encode(), 0)
    local_b, central_b = records(b"other/empty", len(local_a))
    directory = central_a + central_b * n
    total = n + 1 if declared is None else declared
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, total, total, len(directory), len(local_a + local_b), 0)
    return local_a + local_b + directory + end


# ---------------------------------------------------------------- item 1: bytes inflated while reading


@pytest.mark.parametrize("kind", COMPRESS)
def test_a_compressed_bomb_named_tar_is_refused_before_it_inflates(tmp_path, inflated, kind):
    archive = write(tmp_path / "benchmark.tar", zero_bomb(COMPRESS[kind], f"{SELECTED}/zeros.png", gib=1))
    size = archive.stat().st_size
    assert size < 1_100_000  # 1 GiB of zeros in a few kB (bz2), 150 kB (xz) or 1 MB (gzip)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, tmp_path / "out", subfolder=SELECTED)
    # the default caps: 100 times the archive's size may be inflated, and barely more was
    assert inflated[0] <= 100 * size + (1 << 20), f"{inflated[0]:,} bytes inflated from {size:,}"
    assert re.search(r"inflates to more than [\d,]+ bytes while being read, .*\(max_ratio\)", str(err.value))
    assert str(archive) in str(err.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", COMPRESS)
def test_bytes_inflated_outside_the_selected_folder_count_too(tmp_path, inflated, kind):
    archive = write(tmp_path / "benchmark.tar", skipped_bomb(COMPRESS[kind], n=100))  # 100 MiB to skip
    with pytest.raises(UnsafeArchiveError, match="inflates to more than 20,000,000 bytes while being read"):
        extract_archive(archive, tmp_path / "out", subfolder=SELECTED, max_bytes=20_000_000, max_ratio=1e9)
    assert inflated[0] <= 20_000_000 + (1 << 20)
    # under the cap it is read, and only the selected image is extracted
    written = extract_archive(archive, tmp_path / "out", subfolder=SELECTED, max_bytes=200 << 20, max_ratio=1e9)
    assert [p.name for p in written] == ["a.png"]


def test_extraction_reads_a_compressed_tar_once_more_not_once_per_file(tmp_path, inflated):
    # a guard on the counting stream: each file read after the listing must not inflate the
    # stream again from its start (nor be refused for it)
    files = {f"{SELECTED}/{i:03d}.bin": np.random.default_rng(i).bytes(20_000) for i in range(100)}
    stream = make_tar(files)
    archive = write(tmp_path / "many.tar.bz2", bz2.compress(stream))
    written = extract_archive(archive, tmp_path / "out", subfolder=SELECTED)
    assert {p.name: p.read_bytes() for p in written} == {k.rsplit("/", 1)[1]: v for k, v in files.items()}
    assert inflated[0] <= 2 * len(stream) + (1 << 20)  # listing + writing; once per file would be 50 x


def test_a_damaged_bz2_stream_is_a_corrupt_archive_not_a_disk_error(tmp_path):
    data = bz2.compress(make_tar({f"{SELECTED}/a.bin": np.random.default_rng(0).bytes(300_000)}))
    damaged = data[:2000] + bytes(500) + data[2500:]
    archive = write(tmp_path / "benchmark.tar", damaged)
    with pytest.raises(CorruptArchiveError, match=r"corrupt or truncated archive .*benchmark\.tar"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_disk_error_reading_a_compressed_archive_is_not_called_corruption(tmp_path, monkeypatch):
    """An EIO from the disk under the archive (a Drive mount dropping) is no damage to the archive:
    taken for corruption, download_dataset deleted a download of several GB that may be whole."""
    data = bz2.compress(make_tar({f"{SELECTED}/a.bin": np.random.default_rng(0).bytes(300_000)}))
    archive = write(tmp_path / "benchmark.tar", data)

    def read(self, *args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(bz2.BZ2File, "read", read)
    with pytest.raises(OSError) as err:
        extract_archive(archive, tmp_path / "out")
    assert err.value.errno == errno.EIO and not isinstance(err.value, CorruptArchiveError)
    assert archive.read_bytes() == data


def test_download_dataset_deletes_a_refused_archive_so_no_rerun_inflates_it(server, tmp_path, inflated):
    serve(server, "benchmark.tar", zero_bomb(bz2.compress, f"{SELECTED}/zeros.png", gib=1))
    archive = tmp_path / "data" / "archives" / "benchmark.tar"
    with pytest.raises(UnsafeArchiveError) as err:
        download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert inflated[0] < 10 << 20
    assert "while being read" in str(err.value)
    assert "the archive was deleted, run again to download it anew" in str(err.value)
    assert not archive.exists() and not (tmp_path / "data" / "set5" / "HR").exists() and leftovers(tmp_path) == []
    # the mirror is fixed: the next run downloads the right file and extracts it
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5)))
    root = download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert len(list((root / "HR").iterdir())) == 5


# ---------------------------------------------------------------- item 2: every entry counts


def test_a_million_entries_outside_the_folder_are_refused_by_default(tmp_path, headers_parsed):
    archive = write(tmp_path / "benchmark.tar", many_entries_tar_gz(1000))  # 1,024,001 entries
    assert archive.stat().st_size < 3_000_000
    start = time.perf_counter()
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 50,000 entries, the cap \(max_archive_entries\)"):
        extract_archive(archive, tmp_path / "out", subfolder=SELECTED)
    assert headers_parsed[0] == download.MAX_ARCHIVE_ENTRIES + 1  # not 1,024,001
    assert time.perf_counter() - start < 30  # it took 195 s before; about 1 s here
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_the_entry_cap_on_the_whole_archive_is_an_argument(tmp_path, headers_parsed):
    archive = write(tmp_path / "benchmark.tar", many_entries_tar_gz(2))  # 2,049 entries
    with pytest.raises(UnsafeArchiveError, match="holds more than 2,000 entries"):
        extract_archive(archive, tmp_path / "out", subfolder=SELECTED, max_ratio=1e9, max_archive_entries=2000)
    assert headers_parsed[0] == 2001
    written = extract_archive(archive, tmp_path / "out", subfolder=SELECTED, max_ratio=1e9, max_archive_entries=2049)
    assert [p.name for p in written] == ["a.png"]


@pytest.fixture
def zip_parses(monkeypatch) -> list[int]:
    """``zip_parses[0]``: central directories zipfile parsed in the test."""
    counter, real = [0], zipfile.ZipFile._RealGetContents

    def parse(self):
        counter[0] += 1
        return real(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", parse)
    return counter


@pytest.mark.parametrize(
    "declared, cap, message",
    [
        (None, None, r"declares 60,001 entries, more than the cap of 50,000 \(max_archive_entries\)"),
        (1, None, r"holds more than 50,000 entries, the cap \(max_archive_entries\)"),  # the end record lies
        (1, 1000, r"has a 3,420,069-byte central directory, more than 1,024 bytes \(ZIP_DIRECTORY_BYTES\) for each"),
    ],
)
def test_a_zip_is_counted_before_zipfile_parses_its_directory(tmp_path, zip_parses, declared, cap, message):
    archive = write(tmp_path / "many.zip", many_entries_zip(60_000, declared))
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_archive(
            archive, tmp_path / "out", subfolder=SELECTED, **({} if cap is None else {"max_archive_entries": cap})
        )
    assert zip_parses[0] == 0
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_zip_under_the_entry_cap_is_still_extracted(tmp_path, zip_parses):
    archive = write(tmp_path / "many.zip", many_entries_zip(60_000))
    written = extract_archive(archive, tmp_path / "out", subfolder=SELECTED, max_archive_entries=60_001)
    assert [p.name for p in written] == ["a.png"] and zip_parses[0] == 1


# ---------------------------------------------------------------- item 3: a trickling server


def trickle(data: bytes, fast: int, step: int = 100, pause: float = 0.05):
    """An answer with ``data`` (from a ``Range`` start, if asked): ``fast`` bytes at once, then
    ``step`` bytes every ``pause`` s."""

    def answer(handler):
        asked = re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range") or "")
        start = int(asked.group(1)) if asked else 0
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        body = data[start:]
        try:
            handler.wfile.write(body[:fast])
            for i in range(fast, len(body), step):
                time.sleep(pause)
                handler.wfile.write(body[i : i + step])
        except OSError:  # the client gave up
            pass

    return answer


class RecordingBar:
    """Stands in for tqdm: records the progress updates of each bar made."""

    bars: list["RecordingBar"] = []

    def __init__(self, *args, **kwargs):
        self.kwargs, self.updates = kwargs, []
        RecordingBar.bars.append(self)

    def update(self, n):
        self.updates.append((time.perf_counter(), n))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("how", ["arguments", "constants"])
def test_a_trickling_server_shows_progress_then_fails_and_resumes(odd_server, tmp_path, monkeypatch, how):  # noqa: F811
    data = np.random.default_rng(3).bytes(300_000)
    odd_server.answer = trickle(data, fast=100_000)  # then 2,000 bytes/s: 100 s for the rest
    monkeypatch.setattr(download, "tqdm", RecordingBar)
    RecordingBar.bars = []
    dest, part = tmp_path / "x.bin", tmp_path / "x.bin.part"
    rate = dict(min_rate=20_000, stall_window=0.5)
    if how == "constants":
        monkeypatch.setattr(download, "MIN_DOWNLOAD_RATE", rate["min_rate"])
        monkeypatch.setattr(download, "STALL_WINDOW", rate["stall_window"])
        rate = {}
    start = time.perf_counter()
    slow = r"is too slow: only [\d,]+ bytes in the last [\d.]+ s, under the minimum"
    with pytest.raises(DownloadError, match=slow) as err:
        download_file(f"{odd_server.url}/x.bin", dest, **rate)
    elapsed = time.perf_counter() - start
    assert elapsed < 10  # it waited for the whole trickle before
    kept = part.stat().st_size
    assert 100_000 <= kept < len(data) and part.read_bytes() == data[:kept]
    assert f"{part} keeps the {kept:,} bytes received, so running again resumes" in str(err.value)
    (bar,) = RecordingBar.bars
    assert sum(n for _, n in bar.updates) == kept  # the bar counted every byte as it came
    assert sum(t - start < elapsed - 0.3 for t, _ in bar.updates) >= 3  # and moved before the end

    odd_server.answer = trickle(data, fast=len(data))
    assert download_file(f"{odd_server.url}/x.bin", dest, progress=False).read_bytes() == data
    assert odd_server.requests[-1][1] == f"bytes={kept}-"


# ---------------------------------------------------------------- item 4: read-only and full disks


def read_only_under(monkeypatch, folder: Path) -> None:
    """mkdir under ``folder`` fails as on a read-only filesystem (EROFS)."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == folder or folder in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


class _FillingFile:
    """A file that takes ``room[0]`` more bytes, then raises ENOSPC as a full disk does."""

    def __init__(self, f, room: list[int]):
        self._f, self._room = f, room

    def write(self, data):
        if len(data) > self._room[0]:
            self._f.write(data[: self._room[0]])
            self._room[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room[0] -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def disk_full_under(monkeypatch, folder: Path, room: int) -> None:
    """Files srlab.download writes under ``folder`` take ``room`` bytes in all, then ENOSPC."""
    left = [room]

    def fake_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        writing = any(c in mode for c in "wa") and folder in Path(path).parents
        return _FillingFile(f, left) if writing else f

    monkeypatch.setattr(download, "open", fake_open, raising=False)


def test_download_to_a_read_only_folder_is_one_line_naming_it(server, tmp_path, monkeypatch, capsys):
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5)))
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only_under(monkeypatch, ro)
    assert main(["download", "set5", "--to", str(ro), "--base-url", server.url]) == 2
    err = capsys.readouterr().err.strip()
    what = "Read-only file system; choose a folder you can write to (download --to)"
    assert err == f"error: could not write {ro / 'archives'}: {what}"
    assert server.requests == [] and list(ro.iterdir()) == []


def test_extracting_into_a_read_only_folder_keeps_the_archive(server, tmp_path, monkeypatch):
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5)))
    archives, ro = tmp_path / "drive", tmp_path / "ro"
    ro.mkdir()
    read_only_under(monkeypatch, ro)
    with pytest.raises(WriteError, match=f"could not write {re.escape(str(ro / 'set5' / 'HR'))}: Read-only") as err:
        download_dataset("set5", ro, base_url=server.url, archives=archives, progress=False)
    assert "nothing was extracted" in str(err.value) and isinstance(err.value, ValueError)
    assert (archives / "benchmark.tar").is_file() and list(ro.iterdir()) == []


def test_a_disk_that_fills_during_a_download_keeps_the_part_to_resume(server, tmp_path, monkeypatch):
    data = np.random.default_rng(4).bytes(200_000)
    url = serve(server, "x.bin", data)
    dest, part = tmp_path / "dl" / "x.bin", tmp_path / "dl" / "x.bin.part"
    disk_full_under(monkeypatch, tmp_path / "dl", room=50_000)
    with pytest.raises(WriteError, match=f"no space left on device writing {re.escape(str(part))}") as err:
        download_file(url, dest, progress=False, chunk=8192)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    assert f"{part} keeps the 50,000 bytes received, so running again resumes" in str(err.value)
    assert part.read_bytes() == data[:50_000] and not dest.exists()

    monkeypatch.undo()  # room again: the download resumes from the bytes kept
    assert download_file(url, dest, progress=False).read_bytes() == data
    assert server.requests[-1] == ("/x.bin", "bytes=50000-")


def test_a_disk_that_fills_during_extraction_leaves_nothing_trusted(server, tmp_path, monkeypatch):
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5)))
    to = tmp_path / "data"
    disk_full_under(monkeypatch, to / "set5", room=300)
    full = f"no space left on device writing {re.escape(str(to / 'set5' / 'HR'))}"
    with pytest.raises(WriteError, match=full) as err:
        download_dataset("set5", to, base_url=server.url, progress=False)
    assert "nothing was extracted" in str(err.value)
    assert (to / "archives" / "benchmark.tar").is_file()  # the archive is fine: kept
    assert not (to / "set5" / "HR").exists() and not (to / "set5" / MARKER).exists() and leftovers(to) == []

    monkeypatch.undo()
    n = len(server.requests)
    root = download_dataset("set5", to, base_url=server.url, progress=False)
    assert len(list((root / "HR").iterdir())) == 5 and len(server.requests) == n  # no new download
