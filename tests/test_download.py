"""srlab.download against an in-process HTTP server on 127.0.0.1 (no internet needed).

The server (the ``server`` fixture in conftest.py) serves files from a temporary folder,
answers ``Range: bytes=N-`` with 206, and has two misbehaving modes: "cut" sends half the
body then closes the connection (a dropped download), "ignore_range" answers every request with the whole file (200).
"""

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import serve
from PIL import Image

from srlab import download
from srlab.download import (
    DATASETS,
    CorruptArchiveError,
    DownloadError,
    UnsafeArchiveError,
    dataset_urls,
    download_dataset,
    download_file,
    extract_archive,
)
from srlab.images import list_images, read_image

# ---------------------------------------------------------------- test data


def tiny_images(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"img{i:02d}.png": rng.integers(0, 256, (6 + i, 9, 3), dtype=np.uint8) for i in range(n)}


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


def make_tar(files: dict[str, bytes], mode: str = "w", links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """Tar of ``files``; ``links`` adds {name: (tarfile.SYMTYPE or LNKTYPE, target)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".tmp-*"))


# ---------------------------------------------------------------- download_file


def test_download_checks_sha256_and_skips_a_verified_file(server, tmp_path):
    data = np.random.default_rng(1).bytes(300_000)
    url = serve(server, "blob.bin", data)
    digest = hashlib.sha256(data).hexdigest()
    dest = tmp_path / "dl" / "blob.bin"
    assert download_file(url, dest, expected_size=len(data), sha256=digest, progress=False, chunk=4096) == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("blob.bin.part").exists()

    n = len(server.requests)
    download_file(url, dest, expected_size=len(data), sha256=digest, progress=False)
    assert len(server.requests) == n  # already there and verified: no request


def test_wrong_sha256_or_size_deletes_the_download(server, tmp_path):
    data = b"not the file you are looking for" * 100
    url = serve(server, "blob.bin", data)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="sha256 mismatch") as err:
        download_file(url, dest, sha256="0" * 64, progress=False)
    assert "0" * 64 in str(err.value) and hashlib.sha256(data).hexdigest() in str(err.value)
    with pytest.raises(DownloadError, match=f"expected {len(data) + 1} bytes, got {len(data)}"):
        download_file(url, dest, expected_size=len(data) + 1, progress=False)
    assert list(tmp_path.glob("blob.bin*")) == []


def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    data = np.random.default_rng(2).bytes(200_001)
    url = serve(server, "big.bin", data)
    dest = tmp_path / "big.bin"
    part = tmp_path / "big.bin.part"

    server.mode = "cut"
    with pytest.raises(DownloadError, match="resumes"):
        download_file(url, dest, progress=False, chunk=8192)
    assert not dest.exists()
    half = part.stat().st_size
    assert half == len(data) // 2 and part.read_bytes() == data[:half]

    server.mode = "normal"
    download_file(url, dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.requests[-1] == ("/big.bin", f"bytes={half}-")
    assert dest.read_bytes() == data and not part.exists()


def test_a_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = np.random.default_rng(3).bytes(50_000)
    url = serve(server, "f.bin", data)
    dest = tmp_path / "f.bin"
    write(tmp_path / "f.bin.part", b"x" * 1234)  # wrong bytes: appending to them would be fatal

    server.mode = "ignore_range"
    download_file(url, dest, progress=False)
    assert server.requests[-1][1] == "bytes=1234-"  # it asked for a range, got a 200
    assert dest.read_bytes() == data


def test_a_part_that_is_already_whole_is_just_renamed(server, tmp_path):
    data = b"complete" * 1000
    url = serve(server, "done.bin", data)
    write(tmp_path / "done.bin.part", data)  # e.g. interrupted between the last byte and the rename
    assert download_file(url, tmp_path / "done.bin", progress=False).read_bytes() == data


def test_http_errors_are_download_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{server.url}/missing.zip", tmp_path / "missing.zip", progress=False)
    assert list(tmp_path.glob("missing*")) == []


# ---------------------------------------------------------------- extract_archive


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tgz"])
def test_extracted_pixels_equal_the_written_arrays(tmp_path, kind):
    images = tiny_images(3)
    files = {f"pics/{name}": png_bytes(img) for name, img in images.items()}
    data = make_zip(files) if kind == "zip" else make_tar(files, "w" if kind == "tar" else "w:gz")
    archive = write(tmp_path / f"pics.{kind}", data)

    written = extract_archive(archive, tmp_path / "out")
    assert sorted(written) == sorted(tmp_path / "out" / name for name in files)
    for name, img in images.items():
        np.testing.assert_array_equal(read_image(tmp_path / "out" / "pics" / name), img)
    assert leftovers(tmp_path) == []


def test_subfolder_extracts_only_that_folder_flattened(tmp_path):
    images = tiny_images(2)
    files = {f"benchmark/Set5/HR/{n}": png_bytes(i) for n, i in images.items()}
    files["benchmark/Set14/HR/other.png"] = png_bytes(images["img00.png"])
    archive = write(tmp_path / "benchmark.tar", make_tar(files))

    extract_archive(archive, tmp_path / "set5" / "HR", subfolder="benchmark/Set5/HR")
    assert [p.name for p in list_images(tmp_path / "set5" / "HR")] == sorted(images)
    assert not (tmp_path / "set5" / "HR" / "other.png").exists()
    with pytest.raises(DownloadError, match="no folder 'benchmark/Urban100'"):
        extract_archive(archive, tmp_path / "u", subfolder="benchmark/Urban100")


def _corrupt_archives(tmp_path) -> list[Path]:
    files = {f"pics/{n}": png_bytes(i) for n, i in tiny_images(3).items()}
    good_zip, good_tgz, good_tar = make_zip(files), make_tar(files, "w:gz"), make_tar(files)
    with tarfile.open(fileobj=io.BytesIO(good_tar)) as tf:
        cut = tf.getmembers()[-1].offset_data + 10  # inside the last file's data
    return [
        write(tmp_path / "random.zip", np.random.default_rng(4).bytes(5000)),
        write(tmp_path / "random.tar.gz", np.random.default_rng(5).bytes(5000)),
        write(tmp_path / "half.zip", good_zip[: len(good_zip) // 2]),
        write(tmp_path / "half.tgz", good_tgz[: len(good_tgz) // 2]),
        write(tmp_path / "cut.tar", good_tar[:cut]),
    ]


def test_corrupt_archive_leaves_nothing_behind(tmp_path):
    for archive in _corrupt_archives(tmp_path):
        dest = tmp_path / ("out-" + archive.name)
        with pytest.raises(DownloadError, match="corrupt") as err:
            extract_archive(archive, dest)
        assert isinstance(err.value, CorruptArchiveError), archive.name
        assert not dest.exists(), archive.name
        assert leftovers(tmp_path) == [], archive.name


def test_failed_extraction_keeps_an_existing_dest(tmp_path):
    dest = tmp_path / "out"
    write(dest / "keep.txt", b"old copy")
    with pytest.raises(DownloadError, match="corrupt"):
        extract_archive(_corrupt_archives(tmp_path)[2], dest)
    assert (dest / "keep.txt").read_bytes() == b"old copy"


EVIL_NAMES = ["../evil.txt", "pics/../../evil.txt", "/tmp/evil.txt", "ABSOLUTE"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_path_traversal_is_refused_before_writing_anything(tmp_path, kind, evil):
    if evil == "ABSOLUTE":  # an absolute path whose target lies inside tmp_path, so the check below sees it
        evil = str(tmp_path / "abs" / "evil.txt")
    before = Path("/tmp/evil.txt").exists()
    files = {"pics/a.png": png_bytes(tiny_images(1)["img00.png"]), evil: b"owned"}
    archive = write(tmp_path / f"evil.{kind}", make_zip(files) if kind == "zip" else make_tar(files))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, dest)
    assert list(tmp_path.rglob("evil.txt")) == []
    assert Path("/tmp/evil.txt").exists() == before
    assert not dest.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name, kind, target",
    [
        ("pics/up", tarfile.SYMTYPE, "../../evil.txt"),
        ("pics/etc", tarfile.SYMTYPE, "/etc"),
        ("pics/hard", tarfile.LNKTYPE, "../evil.txt"),
    ],
)
def test_links_leaving_the_folder_are_refused(tmp_path, name, kind, target):
    files = {"pics/a.png": b"data"}
    archive = write(tmp_path / "links.tar", make_tar(files, links={name: (kind, target)}))
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.rglob("evil.txt")) == []


def test_symlink_chains_and_paths_through_symlinks_are_refused(tmp_path):
    # "pics/here -> ." then "pics/x -> here/../.." looks inside lexically, is outside for real
    chain = make_tar({}, links={"pics/here": (tarfile.SYMTYPE, "."), "pics/x": (tarfile.SYMTYPE, "here/../..")})
    through = make_tar({"pics/dir/f.txt": b"x"}, links={"pics/dir": (tarfile.SYMTYPE, "sub")})
    for i, data in enumerate([chain, through]):
        with pytest.raises(UnsafeArchiveError):
            extract_archive(write(tmp_path / f"l{i}.tar", data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_inside_the_folder_are_extracted(tmp_path):
    files = {"pics/a.png": b"pixels"}
    links = {"pics/alias.png": (tarfile.SYMTYPE, "a.png"), "pics/copy.png": (tarfile.LNKTYPE, "pics/a.png")}
    extract_archive(write(tmp_path / "ok.tar", make_tar(files, links=links)), tmp_path / "out")
    assert (tmp_path / "out/pics/alias.png").is_symlink()
    assert (tmp_path / "out/pics/alias.png").read_bytes() == (tmp_path / "out/pics/copy.png").read_bytes() == b"pixels"


@pytest.mark.parametrize("use_filter", [True, False], ids=["data_filter", "by_hand"])
@pytest.mark.parametrize(
    "name, kind, target", [("pics/null", tarfile.CHRTYPE, ""), ("pics/etc", tarfile.SYMTYPE, "/etc")]
)
def test_tar_members_meet_the_data_filter_where_python_has_it(tmp_path, monkeypatch, use_filter, name, kind, target):
    if use_filter and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no data filter (it came with 3.12, 3.11.4 and 3.10.12)")
    if not use_filter:  # an older Python: the hand checks alone must refuse the same members
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = write(tmp_path / "special.tar", make_tar({"pics/a.png": b"data"}, links={name: (kind, target)}))
    with pytest.raises(UnsafeArchiveError, match=name) as err:
        extract_archive(archive, tmp_path / "out")
    assert isinstance(err.value.__cause__, getattr(tarfile, "FilterError", ())) == use_filter
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- download_dataset


def benchmark_tar(images: dict[str, np.ndarray], broken: str | None = None) -> bytes:
    """A stand-in for EDSR's benchmark.tar: Set5 HR + LR x4, and a Set14 folder to ignore."""
    files = {}
    for name, img in images.items():
        data = png_bytes(img)
        files[f"benchmark/Set5/HR/{name}"] = data[: len(data) // 2] if name == broken else data
        files[f"benchmark/Set5/LR_bicubic/X4/{name[:-4]}x4.png"] = png_bytes(img[::4, ::4])
    files["benchmark/Set14/HR/zebra.png"] = png_bytes(images[next(iter(images))])
    return make_tar(files)


def test_download_dataset_end_to_end_and_idempotent(server, tmp_path):
    images = tiny_images(5)
    serve(server, "benchmark.tar", benchmark_tar(images))
    to = tmp_path / "data"

    root = download_dataset("set5", to, base_url=server.url + "/", progress=False)
    assert root == to / "set5"
    assert server.requests == [("/benchmark.tar", None)]
    assert [p.name for p in list_images(root / "HR")] == sorted(images)
    for name, img in images.items():
        np.testing.assert_array_equal(read_image(root / "HR" / name), img)
    assert not (root / "LR_bicubic").exists() and not (to / "set14").exists()
    assert (to / "archives" / "benchmark.tar").is_file()

    n = len(server.requests)
    assert download_dataset("set5", to, base_url=server.url, progress=False) == root
    assert len(server.requests) == n  # marker and counts match: no request

    # LR comes out of the archive already downloaded; a lost image is restored from it too
    (root / "HR" / "img03.png").unlink()
    download_dataset("set5", to, base_url=server.url, include_lr=True, progress=False)
    assert len(server.requests) == n
    assert len(list_images(root / "HR")) == len(list_images(root / "LR_bicubic" / "X4")) == 5
    assert leftovers(to) == []


def test_download_dataset_reports_undecodable_images(server, tmp_path):
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5), broken="img02.png"))
    with pytest.raises(DownloadError, match="img02.png"):
        download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert not (tmp_path / "data" / "set5" / download.MARKER).exists()


def test_download_dataset_checks_the_image_count(server, tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS["set5"]["archives"][0], "images", 6)
    serve(server, "benchmark.tar", benchmark_tar(tiny_images(5)))
    with pytest.raises(DownloadError, match="expected 6 images, found 5"):
        download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)


def test_download_dataset_deletes_a_corrupt_archive(server, tmp_path):
    serve(server, "benchmark.tar", np.random.default_rng(6).bytes(4096))
    with pytest.raises(CorruptArchiveError, match="corrupt"):
        download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert not (tmp_path / "data" / "archives" / "benchmark.tar").exists()  # the next call fetches it anew


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="set5.*urban100|urban100.*set5"):
        download_dataset("set6", tmp_path)


# ---------------------------------------------------------------- the table itself


def test_dataset_table_is_consistent():
    assert {"div2k", "flickr2k", "set5", "set14", "bsd100", "urban100"} <= set(DATASETS)
    for name, spec in DATASETS.items():
        for entry in spec["archives"]:
            assert entry["url"].startswith("https://"), name
            assert entry["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
            assert entry["images"] > 0 and not Path(entry["folder"]).is_absolute()
    hr = {n: sum(e["images"] for e in s["archives"] if not e["lr"]) for n, s in DATASETS.items()}
    assert hr == {"div2k": 900, "flickr2k": 2650, "set5": 5, "set14": 14, "bsd100": 100, "urban100": 100}


def test_base_url_keeps_the_file_names():
    assert dataset_urls("div2k", base_url="http://127.0.0.1:1/mirror/", include_lr=True) == [
        "http://127.0.0.1:1/mirror/DIV2K_train_HR.zip",
        "http://127.0.0.1:1/mirror/DIV2K_valid_HR.zip",
        "http://127.0.0.1:1/mirror/DIV2K_train_LR_bicubic_X4.zip",
        "http://127.0.0.1:1/mirror/DIV2K_valid_LR_bicubic_X4.zip",
    ]
    assert dataset_urls("set5") == dataset_urls("urban100") == ["https://cv.snu.ac.kr/research/EDSR/benchmark.tar"]
