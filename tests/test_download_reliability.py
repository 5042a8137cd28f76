"""srlab.download against hostile or broken servers and archives (issue 15, items 3 and 17).

Size caps on downloads and extraction, bounded retries for a server that never answers the
range asked for, and redirects to http(s) only. Caps are passed small (or the module constants
patched) so no test needs a large file. Servers run on 127.0.0.1 in a thread, as in test_download.py.
"""

import http.server
import io
import tarfile
import zipfile

import numpy as np
import pytest
from conftest import local_server, serve
from test_download import benchmark_tar, leftovers, make_tar, make_zip, tiny_images, write

from srlab import download
from srlab.cli import main
from srlab.download import DATASETS, DownloadError, UnsafeArchiveError, download_dataset, download_file, extract_archive

# ---------------------------------------------------------------- a server that misbehaves on demand


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        self.server.answer(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def odd_server(monkeypatch):
    """``odd_server.answer(handler)`` writes each response; ``requests`` records (path, Range)."""
    yield from local_server(_Handler, monkeypatch)


def unbounded_body(n_bytes: int, length: int | None = None):
    """An answer with ``n_bytes`` of body and no Content-Length (or a false one): the body ends
    only when the connection closes, as an endless stream would (HTTP/1.0, so that is allowed)."""

    def answer(handler):
        handler.send_response(200)
        if length is not None:
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        block = b"\0" * 65536
        try:
            for _ in range(n_bytes // len(block)):
                handler.wfile.write(block)
        except OSError:  # the client hung up at its cap
            pass

    return answer


# ---------------------------------------------------------------- item 3: download caps


def test_a_body_without_length_stops_at_max_size_and_the_part_is_deleted(odd_server, tmp_path):
    odd_server.answer = unbounded_body(4 << 20)
    dest, part = tmp_path / "x.tar", tmp_path / "x.tar.part"
    with pytest.raises(DownloadError, match=r"more than its cap of 100,000 bytes \(max_size\)") as err:
        download_file(f"{odd_server.url}/x.tar", dest, max_size=100_000, progress=False, chunk=8192)
    assert str(part) in str(err.value) and "deleted" in str(err.value)
    assert not part.exists() and not dest.exists()

    # the garbage is gone, so the next try starts from byte 0 instead of resuming it
    with pytest.raises(DownloadError, match="cap"):
        download_file(f"{odd_server.url}/x.tar", dest, max_size=100_000, progress=False)
    assert odd_server.requests[-1] == ("/x.tar", None)


def test_without_any_size_the_module_cap_applies(odd_server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 200_000)  # read at call time
    odd_server.answer = unbounded_body(4 << 20)
    with pytest.raises(DownloadError, match=r"cap of 200,000 bytes \(MAX_DOWNLOAD_BYTES\)"):
        download_file(f"{odd_server.url}/y.bin", tmp_path / "y.bin", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_expected_size_is_the_cap_when_known(odd_server, tmp_path):
    odd_server.answer = unbounded_body(1 << 20)
    with pytest.raises(DownloadError, match=r"more than its cap of 5,000 bytes \(its expected size\)"):
        download_file(f"{odd_server.url}/z.bin", tmp_path / "z.bin", expected_size=5000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_announced_size_over_the_cap_is_refused_before_any_byte(odd_server, tmp_path):
    odd_server.answer = unbounded_body(1 << 20, length=10**12)  # claims a terabyte
    with pytest.raises(DownloadError, match=r"announces 1,000,000,000,000 bytes, more than its cap of 100,000"):
        download_file(f"{odd_server.url}/big.bin", tmp_path / "big.bin", max_size=100_000, progress=False)
    assert list(tmp_path.iterdir()) == []  # no .part was even created


def test_a_part_larger_than_the_cap_is_discarded_not_resumed(server, tmp_path):
    data = np.random.default_rng(7).bytes(30_000)
    url = serve(server, "f.bin", data)
    write(tmp_path / "f.bin.part", b"g" * 50_000)  # left by an endless answer before the caps
    assert download_file(url, tmp_path / "f.bin", max_size=40_000, progress=False).read_bytes() == data
    assert server.requests == [("/f.bin", None)]


def test_download_dataset_caps_a_size_less_archive_by_its_table_entry(server, tmp_path, monkeypatch):
    archive = benchmark_tar(tiny_images(5))
    for entry in DATASETS["set5"]["archives"]:  # both entries share the one benchmark.tar
        monkeypatch.setitem(entry, "approx_size", len(archive) // 4)
    serve(server, "benchmark.tar", archive)
    cap = int(len(archive) // 4 * download.APPROX_SIZE_MARGIN)
    with pytest.raises(DownloadError, match=f"announces {len(archive):,} bytes, more than its cap of {cap:,}"):
        download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert list((tmp_path / "data" / "archives").iterdir()) == []

    for entry in DATASETS["set5"]["archives"]:  # the real ratio: the table's size, with the margin
        monkeypatch.setitem(entry, "approx_size", len(archive))
    root = download_dataset("set5", tmp_path / "data", base_url=server.url, progress=False)
    assert len(list((root / "HR").glob("*.png"))) == 5


def test_the_table_gives_every_size_less_archive_an_approximate_size():
    for name, spec in DATASETS.items():
        for entry in spec["archives"]:
            assert entry["size"] is not None or entry["approx_size"] > 10**8, name
            assert download._download_cap(entry) == (
                None if entry["size"] else int(entry["approx_size"] * download.APPROX_SIZE_MARGIN)
            )


def test_the_cli_reports_a_capped_download_in_one_line(server, tmp_path, monkeypatch, capsys):
    archive = benchmark_tar(tiny_images(5))
    for entry in DATASETS["set5"]["archives"]:
        monkeypatch.setitem(entry, "approx_size", 100)
    serve(server, "benchmark.tar", archive)
    assert main(["download", "set5", "--to", str(tmp_path / "data"), "--base-url", server.url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "benchmark.tar" in err and "cap of 150 bytes" in err
    assert "\n" not in err and "Traceback" not in err


# ---------------------------------------------------------------- item 3: extraction caps


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path):
    archive = write(tmp_path / "bomb.zip", _deflated_zip({"pics/zeros.png": b"\0" * (4 << 20)}))
    assert archive.stat().st_size < 20_000  # 4 MiB of zeros in a few kB
    with pytest.raises(
        UnsafeArchiveError, match=r"bomb\.zip would expand \d+-fold .*more than the cap of 100 \(max_ratio\)"
    ) as err:
        extract_archive(archive, tmp_path / "out")
    assert str(archive) in str(err.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_total_uncompressed_size_is_capped(tmp_path):
    files = {f"pics/{i}.bin": np.random.default_rng(i).bytes(5000) for i in range(3)}
    archive = write(tmp_path / "three.tar", make_tar(files))
    with pytest.raises(UnsafeArchiveError, match=r"three\.tar would extract 15,000 bytes, more than the cap of 14,999"):
        extract_archive(archive, tmp_path / "out", max_bytes=14_999)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert len(extract_archive(archive, tmp_path / "out", max_bytes=15_000)) == 3  # at the cap: fine


def test_hard_links_count_with_the_size_of_what_they_copy(tmp_path):
    # each hard link is written as a full copy of its target: 1 stored file, 4 written
    links = {f"pics/copy{i}.bin": (tarfile.LNKTYPE, "pics/a.bin") for i in range(3)}
    archive = write(tmp_path / "links.tar", make_tar({"pics/a.bin": b"x" * 5000}, links=links))
    with pytest.raises(UnsafeArchiveError, match="would extract 20,000 bytes"):
        extract_archive(archive, tmp_path / "out", max_bytes=19_999)


def test_the_20000_entry_zip_of_the_issue_is_refused_by_default(tmp_path):
    archive = write(tmp_path / "many.zip", make_zip({f"f/{i}.txt": b"" for i in range(20_000)}))
    with pytest.raises(
        UnsafeArchiveError, match=r"many\.zip holds 20,000 entries to extract, more than the cap of 10,000"
    ):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_caps_count_only_the_extracted_subfolder(tmp_path):
    files = {"keep/a.bin": b"a" * 1000, **{f"other/{i}.bin": b"b" * 1000 for i in range(20)}}
    archive = write(tmp_path / "mixed.tar", make_tar(files))
    written = extract_archive(archive, tmp_path / "out", subfolder="keep", max_bytes=1000, max_entries=1)
    assert [p.read_bytes() for p in written] == [b"a" * 1000]
    with pytest.raises(UnsafeArchiveError, match="holds 20 entries to extract, more than the cap of 19"):
        extract_archive(archive, tmp_path / "out2", subfolder="other", max_entries=19)


def test_a_zip_symlink_with_a_huge_target_is_refused_before_it_is_read(tmp_path):
    # a symlink's data is its target, read into memory while listing: a bomb hides there too
    archive = write(
        tmp_path / "link.zip", _deflated_zip({"pics/a.png": b"x", "pics/l": b"\0" * (8 << 20)}, links={"pics/l"})
    )
    with pytest.raises(UnsafeArchiveError, match="symlink 'pics/l' has a 8,388,608-byte target"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def _deflated_zip(files: dict[str, bytes], links: set[str] = frozenset()) -> bytes:
    """A deflated zip of ``files``; the names in ``links`` are stored as unix symlinks."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if name in links else 0o100644) << 16
            zf.writestr(info, data)
    return buf.getvalue()


# ---------------------------------------------------------------- item 17: retries and redirects


def always_wrong_range(handler):
    """A 206 whose Content-Range never starts where asked (the server of the issue)."""
    handler.send_response(206)
    handler.send_header("Content-Range", "bytes 5-9/10")
    handler.send_header("Content-Length", "5")
    handler.end_headers()
    handler.wfile.write(b"xxxxx")


def test_a_server_that_always_answers_the_wrong_range_is_retried_a_few_times(odd_server, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(download, "_sleep", waits.append)
    odd_server.answer = always_wrong_range
    part = write(tmp_path / "w.bin.part", b"kept" * 10)
    with pytest.raises(DownloadError, match=r"w\.bin: the server kept answering .*bytes 5-9/10.*4 tries") as err:
        download_file(f"{odd_server.url}/w.bin", tmp_path / "w.bin", progress=False)
    assert "RecursionError" not in repr(err.value.__cause__)
    # the resume, then the whole file asked for 1 + FETCH_RETRIES times, waiting 1, 2, 4 s between
    assert [r for _, r in odd_server.requests] == ["bytes=40-"] + [None] * (1 + download.FETCH_RETRIES)
    assert waits == [1.0, 2.0, 4.0]
    assert part.read_bytes() == b"kept" * 10  # nothing was written from the wrong answers

    odd_server.requests.clear()
    with pytest.raises(DownloadError, match="2 tries"):
        download_file(f"{odd_server.url}/w.bin", tmp_path / "v.bin", progress=False, retries=1, backoff=0)
    assert len(odd_server.requests) == 2 and waits[-1] == 0


def redirect_to(location: str):
    def answer(handler):
        if handler.path == "/real.bin":
            handler.send_response(200)
            handler.send_header("Content-Length", "4")
            handler.end_headers()
            handler.wfile.write(b"real")
            return
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:9/evil.bin", "file:///etc/passwd", "gopher://127.0.0.1:9/x"])
def test_a_redirect_to_another_scheme_is_refused(odd_server, tmp_path, target):
    odd_server.answer = redirect_to(target)
    url = f"{odd_server.url}/data.bin"
    with pytest.raises(DownloadError, match="only http and https redirects are followed") as err:
        download_file(url, tmp_path / "data.bin", progress=False)
    assert f"{url} redirects to {target}" in str(err.value)
    assert list(tmp_path.iterdir()) == [] and len(odd_server.requests) == 1


def test_a_redirect_to_http_is_still_followed(odd_server, tmp_path):
    odd_server.answer = redirect_to("/real.bin")  # relative: resolved against the request URL
    assert download_file(f"{odd_server.url}/data.bin", tmp_path / "d.bin", progress=False).read_bytes() == b"real"
    assert [p for p, _ in odd_server.requests] == ["/data.bin", "/real.bin"]
