"""Colab, simulated: the six notebooks run the way Colab runs them, each on a fresh runtime.

    python -m srlab colab-sim [--out DIR] [--notebooks notebooks]

On Colab every notebook opened from its badge gets a new machine: ``/content`` is empty, HOME and
the caches are new, and only Google Drive persists; a disconnect does the same in the middle of a
notebook. Here, for each notebook:

* a fresh runtime: a new, empty folder stands for ``/content`` (``$SRLAB_COLAB_CONTENT``, which
  :func:`srlab.notebook.colab_content` reads), with a new HOME, XDG cache, torch hub and IPython folder;
* Colab's ``google.colab`` module: a stand-in, written into the simulation folder and imported by an
  IPython start-up file as Colab's kernel imports the real one; its ``drive.mount`` makes
  ``MyDrive`` a link to one persistent "Drive" folder shared by every runtime;
* DIV2K and the test sets: a few generated 2K photos zipped in DIV2K's own layout, and a small
  ``benchmark.tar`` in the EDSR layout, served from 127.0.0.1 (HTTP ``Range`` included); the start-up
  file points ``srlab.download.DATASETS`` at them, with their own sizes, SHA-256 and image counts,
  which the download checks exactly as it checks the real ones;
* the ``colab`` preset, its data flow and its folders, at the ``smoke`` preset's sizes
  (``SRLAB_SIZES=smoke``: :func:`srlab.presets.sizes_layer`), so the course runs in minutes on a CPU;
* a disconnect: notebook 03 is killed, kernel and all, once its first checkpoint is on Drive, and is
  run again on a fresh runtime, where it must resume.

:func:`simulate` returns the checks it made; the command prints them and fails when one fails.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from .data import stand_in_photos
from .download import _BENCHMARK_SETS, DATASETS, _benchmark_entries, _sha256
from .notebook import NOTEBOOKS
from .reports import check_report_path, write_json_report

RUNTIME_MARK = "SRLAB_SIM_RUNTIME"  # in the environment of every process of one simulated runtime
TRAINED = ("srcnn", "autoencoder", "srresnet", "srgan", "srgan_collapse", "rrdb", "esrgan")
DISCONNECTED = "03_srgan_pretrain"  # the notebook cut off mid-training, then rerun
DISCONNECT_STEPS = 300  # its training length in the simulation, so that the cut lands mid-run
TEST_SETS = {name: folder for name, (folder, _) in _BENCHMARK_SETS.items()}  # name -> folder in benchmark.tar


# ---------------------------------------------------------------- stand-in data sets


def _png(img: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    assert ok
    return data.tobytes()


def _write_zip(path: Path, folder: str, names: list[str], images: list[np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, img in zip(names, images):
            zf.writestr(f"{folder}/{name}", _png(img))


def _write_benchmark_tar(path: Path, per_set: int) -> None:
    """EDSR's benchmark.tar layout: ``benchmark/SET/HR/x.png`` and ``benchmark/SET/LR_bicubic/X4/xx4.png``."""
    from .resize import imresize

    with tarfile.open(path, "w") as tf:
        for k, folder in enumerate(TEST_SETS.values()):
            for j, hr in enumerate(stand_in_photos(per_set, (192, 256), seed=10 + k)):
                stem = f"img_{j + 1:03d}"
                for member, img in ((f"HR/{stem}.png", hr), (f"LR_bicubic/X4/{stem}x4.png", imresize(hr, 1 / 4))):
                    data = _png(img)
                    info = tarfile.TarInfo(f"benchmark/{folder}/{member}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))


def _served(path: Path, base_url: str) -> dict:
    """What a ``DATASETS`` entry says of an archive, for the stand-in ``path`` served under ``base_url``."""
    size = path.stat().st_size
    return dict(url=f"{base_url}/{path.name}", size=size, approx_size=size, sha256=_sha256(path))


def make_stand_in_data(folder: Path, base_url: str, train: int = 4, valid: int = 2, per_set: int = 2) -> dict:
    """Write the stand-in archives into ``folder`` and return their ``DATASETS`` table (URLs under
    ``base_url``): DIV2K's two HR zips (``train`` and ``valid`` 2040x1356 photos, named as DIV2K
    names them) and a ``benchmark.tar`` with ``per_set`` images in each test set. The entries are
    the real ones (members, folders) with the stand-ins' URL, size, SHA-256 and image count."""
    folder.mkdir(parents=True, exist_ok=True)
    size = (1356, 2040)
    zips = {
        "DIV2K_train_HR": ([f"{k:04d}.png" for k in range(1, train + 1)], stand_in_photos(train, size, seed=0)),
        "DIV2K_valid_HR": ([f"{k:04d}.png" for k in range(801, 801 + valid)], stand_in_photos(valid, size, seed=1)),
    }
    div2k = []
    for entry in (e for e in DATASETS["div2k"]["archives"] if not e["lr"]):
        names, images = zips[entry["member"]]
        _write_zip(folder / f"{entry['member']}.zip", entry["member"], names, images)
        div2k.append({**entry, **_served(folder / f"{entry['member']}.zip", base_url), "images": len(names)})
    table = {"div2k": {"description": "stand-in DIV2K (generated photos)", "archives": div2k}}
    tar = folder / "benchmark.tar"
    _write_benchmark_tar(tar, per_set)
    served = _served(tar, base_url)  # one archive for every test set: hashed once
    for name, set_folder in TEST_SETS.items():
        table[name] = {
            "description": f"stand-in {set_folder}",
            "archives": [{**entry, **served} for entry in _benchmark_entries(set_folder, per_set)],
        }
    return table


# ---------------------------------------------------------------- the server on 127.0.0.1


class _Handler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` (a resumed download), counting the bytes sent per file."""

    served: dict[str, int]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(match[1]) if match else 0
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
        self.served[path.name] = self.served.get(path.name, 0) + len(data) - start


def serve(folder: Path) -> tuple[ThreadingHTTPServer, dict[str, int]]:
    """An HTTP server for ``folder`` on 127.0.0.1 (a free port), in a thread; and its bytes-sent counts."""
    served: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, served


# ---------------------------------------------------------------- Colab's side

_DRIVE_MODULE = '''"""Stand-in for Colab's google.colab.drive (srlab.colab_sim): MyDrive is the simulation's Drive."""
import os

_DRIVE = {drive!r}


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    os.makedirs(mountpoint, exist_ok=True)
    link = os.path.join(mountpoint, "MyDrive")
    if not os.path.lexists(link):
        os.symlink(_DRIVE, link)
    print("Mounted at", mountpoint)
'''

_STARTUP = """# Colab's kernel starts with google.colab imported (srlab.notebook.in_colab looks for it).
import json

import google.colab
import srlab.download

# the stand-in DIV2K and test sets, served from 127.0.0.1 (srlab.colab_sim)
srlab.download.DATASETS.update(json.load(open({table!r})))
"""


def write_colab_standin(folder: Path, drive: Path) -> Path:
    """The stand-in ``google.colab`` package under ``folder`` (a namespace ``google``, so another
    ``google.*`` package installed stays importable); returns the folder to put on PYTHONPATH."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (srlab.colab_sim)."""\n')
    (package / "drive.py").write_text(_DRIVE_MODULE.format(drive=str(drive)))
    return folder


def new_runtime(root: Path, name: str, standin: Path, table: Path) -> tuple[Path, dict[str, str]]:
    """A fresh runtime: an empty ``content`` folder, a new HOME with its caches and an IPython
    start-up file, and the environment its processes get."""
    runtime = root / name
    content, home = runtime / "content", runtime / "home"
    content.mkdir(parents=True)
    startup = home / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(_STARTUP.format(table=str(table)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRLAB_") or k == "SRLAB_CPU_AMX"}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        TORCH_HOME=str(home / ".cache" / "torch"),
        IPYTHONDIR=str(home / ".ipython"),
        MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
        MPLBACKEND="Agg",
        PYTHONPATH=os.pathsep.join([str(standin), *filter(None, [os.environ.get("PYTHONPATH")])]),
        SRLAB_COLAB_CONTENT=str(content),
        SRLAB_PRESET="colab",
        SRLAB_SIZES="smoke",
        **{RUNTIME_MARK: _mark(name)},
    )
    return content, env


def _inject(notebook: dict, source: str) -> dict:
    """Put a cell of ``source`` after the cell tagged ``parameters`` (papermill's way of setting them)."""
    import nbformat

    cells = notebook.cells
    at = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    cells.insert(at + 1, cell)
    return notebook


def _mark(name: str) -> str:
    """Runtime ``name`` of this simulation: the names repeat in every simulation, so the mark also
    holds this process's id (two simulations on one machine never kill each other's kernels)."""
    return f"{os.getpid()}/{name}"


def kill_runtime(name: str) -> int:
    """SIGKILL every process of runtime ``name`` (the executor and its kernel: a disconnect); returns how many."""
    mark = f"{RUNTIME_MARK}={_mark(name)}".encode()
    killed = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue
    return killed


def run_notebook(
    source: Path,
    runtime: str,
    content: Path,
    env: dict,
    inject: str | None = None,
    kill_when=None,
    timeout: int = 900,
) -> dict:
    """Execute ``source`` in a runtime (its own process and kernel, cwd ``content``); with ``kill_when``
    (a function polled twice a second), kill the runtime as soon as it returns True.
    Returns rc, killed, seconds and the text the notebook printed."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    if inject:
        nb = _inject(nb, inject)
    src, out = content.parent / f"{source.stem}.in.ipynb", content.parent / f"{source.stem}.ipynb"
    nbformat.write(nb, src)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "srlab.colab_sim", "--execute", str(src), str(out), str(timeout)],
        cwd=content,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = False
    while proc.poll() is None:
        if kill_when is not None and kill_when():
            kill_runtime(runtime)
            killed = True
            break
        time.sleep(0.5)
    log = proc.communicate()[0]
    kill_runtime(runtime)  # a kernel left behind by a failed run
    text = _printed(out) if out.is_file() else ""
    return dict(rc=proc.returncode, killed=killed, seconds=time.monotonic() - start, text=text, log=log[-4000:])


def _printed(path: Path) -> str:
    """Everything an executed notebook printed (streams, text results, errors)."""
    nb = json.loads(path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append("".join(out["text"]))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append("".join(out["data"]["text/plain"]))
            elif out.get("output_type") == "error":
                parts.append(f"{out['ename']}: {out['evalue']}")
    return "\n".join(parts)


def _execute(src: str, dst: str, timeout: str) -> int:
    """In the runtime's own process: execute one notebook with nbclient, write it executed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(
        nb, timeout=int(timeout), kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}
    )
    try:
        client.execute()
    except CellExecutionError as err:
        print(str(err)[-3000:])
        return 1
    finally:
        nbformat.write(nb, dst)
    return 0


# ---------------------------------------------------------------- the simulation


def _check(checks: list, name: str, ok: bool, detail: str) -> None:
    checks.append({"check": name, "ok": bool(ok), "detail": detail})


def simulate(out: Path, notebooks: Path, timeout: int = 900, progress: bool = True) -> dict:
    """Run the course as Colab does (module docstring) in ``out``, a new or empty folder (its
    runtimes start fresh, and files already there would be replaced); returns the runs and the checks."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and next(out.iterdir(), None) is None):
        raise FileExistsError(
            f"--out {out} is not an empty folder: name a new one (each simulation needs fresh runtimes)"
        )
    drive, runtimes = out / "drive", out / "runtimes"
    drive.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    server, served = serve(out / "server")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    table = make_stand_in_data(out / "server", base)
    (out / "datasets.json").write_text(json.dumps(table, indent=1))
    standin = write_colab_standin(out / "colab_standin", drive)
    runs_folder = drive / "srlab" / "runs" / "colab"
    plan = [(name, None) for name in NOTEBOOKS]
    at = NOTEBOOKS.index(DISCONNECTED)
    plan[at : at + 1] = [(DISCONNECTED, "disconnect"), (DISCONNECTED, "rerun")]
    results, checks = [], []
    try:
        for k, (name, role) in enumerate(plan, 1):
            runtime = f"runtime{k}_{name}" + (f"_{role}" if role else "")
            content, env = new_runtime(runtimes, runtime, standin, out / "datasets.json")
            inject = f"STEPS = {DISCONNECT_STEPS}  # colab_sim: long enough to be cut off" if role else None
            kill_when = partial(Path.is_file, runs_folder / "srresnet" / "last.pt") if role == "disconnect" else None
            say(f"colab-sim: {runtime} on a fresh runtime ...", flush=True)
            result = run_notebook(notebooks / f"{name}.ipynb", runtime, content, env, inject, kill_when, timeout)
            result.update(notebook=name, runtime=runtime, role=role)
            results.append(result)
            say(
                f"colab-sim: {runtime}: rc {result['rc']}{' (killed)' if result['killed'] else ''}, "
                f"{result['seconds']:.0f} s",
                flush=True,
            )
            if result["rc"] != 0 and not result["killed"]:
                say(result["log"])
                break
    finally:
        server.shutdown()
    _course_checks(checks, results, table, served, drive, runs_folder)
    return {"ok": all(c["ok"] for c in checks), "checks": checks, "runs": results, "served": served}


def _course_checks(checks, results, table, served, drive, runs_folder) -> None:
    by_role = {(r["notebook"], r["role"]): r for r in results}
    for r in results:
        if r["role"] != "disconnect":
            _check(checks, f"{r['runtime']} ran to the end", r["rc"] == 0, f"rc {r['rc']}")
    for name in NOTEBOOKS:
        r = by_role.get((name, None)) or by_role.get((name, "rerun"))
        _check(checks, f"{name} states its Colab plan", r is not None and "On Colab with a T4" in r["text"], "")
    for name in ("02_bicubic_baseline", "03_srgan_pretrain", "04_srgan_adversarial", "05_esrgan"):
        r = by_role.get((name, None)) or by_role.get((name, "rerun"))  # a killed run writes no notebook
        built = r is not None and "the patch store built in this runtime" in r["text"]
        _check(checks, f"{name} built its own training data on a fresh runtime", built, "")
    train_zip = next(a for a in table["div2k"]["archives"] if a["folder"] == "DIV2K_train_HR")
    sent = served.get("DIV2K_train_HR.zip", 0)
    _check(
        checks,
        "DIV2K was downloaded once, then read from Drive",
        sent == train_zip["size"],
        f"{sent:,} bytes sent for a {train_zip['size']:,}-byte archive",
    )
    cut, again = by_role.get((DISCONNECTED, "disconnect")), by_role.get((DISCONNECTED, "rerun"))
    cut_ok = cut is not None and cut["killed"]
    _check(checks, f"{DISCONNECTED} was cut off mid-training", cut_ok, "")
    resumed = re.search(r"resuming srresnet from step (\d+)", again["text"]) if again else None
    step = int(resumed[1]) if resumed else 0
    _check(
        checks,
        f"{DISCONNECTED} resumed on a fresh runtime",
        resumed is not None and 0 < step < DISCONNECT_STEPS,
        f"from step {step} of {DISCONNECT_STEPS}",
    )
    missing = [run for run in TRAINED if not (runs_folder / run / "best.pt").is_file()]
    _check(checks, "every run's best.pt is on Drive", not missing, f"missing: {missing}" if missing else "")
    gallery = sorted(p.name for p in (runs_folder / "gallery").glob("*")) if (runs_folder / "gallery").is_dir() else []
    _check(checks, "the gallery is on Drive", bool(gallery), ", ".join(gallery[:6]))


def report_lines(report: dict) -> list[str]:
    lines = [
        f"{'ok' if c['ok'] else 'FAILED':>6}  {c['check']}" + (f": {c['detail']}" if c["detail"] else "")
        for c in report["checks"]
    ]
    lines.append(
        f"colab-sim: {'passed' if report['ok'] else 'FAILED'} ({sum(c['ok'] for c in report['checks'])} "
        f"of {len(report['checks'])} checks)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--execute"]:
        return _execute(*argv[1:4])
    parser = argparse.ArgumentParser(prog="python -m srlab colab-sim", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="simulation folder (default: a temporary one, deleted)")
    parser.add_argument("--notebooks", default="notebooks", help="folder holding the course notebooks")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    if args.json:  # before the notebooks run: never a file srlab did not write (srlab.reports)
        check_report_path(args.json, [args.notebooks])
    with tempfile.TemporaryDirectory() as tmp:
        report = simulate(Path(args.out or tmp), Path(args.notebooks).resolve(), args.timeout)
    print("\n".join(report_lines(report)))
    if args.json:
        write_json_report(args.json, "colab-sim", {k: v for k, v in report.items() if k != "runs"}, [args.notebooks])
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
