"""Hostile-input sweep (issue 13): no traceback, no lost file, no race, whatever the input.

    python benchmarks/robustness.py                    # every case (about 25 min on 2 cores)
    python benchmarks/robustness.py --quick            # about 40 representative cases
    python benchmarks/robustness.py --only 'pick/*'    # a glob (or a plain substring) over case names
    python benchmarks/robustness.py --list             # the case names, nothing run
    python benchmarks/robustness.py --family overwrite # one family (numbers, nonfinite, paths, tampered, ...)
    python benchmarks/robustness.py --every 8          # a spread-out eighth of the cases
    python benchmarks/robustness.py --world /tmp/rw --keep   # reuse a built fixture world; keep the sandboxes
    python benchmarks/robustness.py --dry-run          # set up every sandbox, run nothing (checks the harness)

First a small fixture world is built in a temporary folder with the CLI itself: a subset of Fashion-MNIST
(IDX), a one-epoch checkpoint (cifar_resnet20, width 4, depths 8 and 14), an unfinished one (for --resume),
its export (+ selector), a calibrated copy, a quick profile TOML, a bench results file, an image folder, a
calibration .npz, state_dicts (plain, NaN, wrong shapes, a malicious pickle), and the demo checkpoint's
export, calibration and bench (the longer runs that the interruption cases kill).

Then every case runs ONE `python -m ddnn_deploy ...` (a few run several at once, or signal one) in its own
sandbox folder (the working directory), holding copies of the fixtures it needs, a user file `notes.txt`,
and whatever the case broke. TMPDIR points at an empty folder of the case. Recorded per case: exit code,
a Python traceback on stderr/stdout, whether a failure is ONE line (`error: ...`, or `interrupted: ...`),
invalid input accepted with exit 0 ("silently accepted"), every file that existed before and is lost or
changed although the user did not ask to replace it (sha256 of every file before and after; a failed
command may change nothing), temporary leftovers (`.*tmp*`, `*.tmp`, `.calibrate-*`, `*probe-*`, anything in
TMPDIR) and orphan processes (any process still carrying the case's environment marker after the command
ended). Kill cases (SIGINT to the process group as Ctrl-C does, SIGINT/SIGTERM/SIGKILL to the process, at a
seeded random moment) also validate the outputs afterwards with the tool's own readers (the earlier ones intact,
or validly replaced); after a SIGKILL the same command runs again and must succeed and leave nothing behind
(the README: the next run removes a killed run's temporaries). A case is *handled* when all of these are clean
and the exit code matches the expectation (non-zero for bad input, 0 for valid input, "any" where both are
defensible; the exit code the README promises, where it promises one).

Writes results/robustness.json (a full run) or results/robustness-subset.json (any selection).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import gzip
import hashlib
import json
import os
import pickle
import platform
import random
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from _common import ROOT, save_result  # benchmarks/ is on sys.path when a script here runs

PY = sys.executable
TRACEBACK = "Traceback (most recent call last)"
MARKER = "DDNN_ROBUSTNESS_CASE"  # every process a case starts inherits MARKER=<token>: how orphans are found
FASHION_MNIST = Path(os.environ.get("DDNN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
DEMO_CKPT = ROOT / "models" / "fmnist-resnet20-ddnn.pt"
LEFTOVERS = (".*tmp*", "*.tmp", ".calibrate-*", "*probe-*", "ddnn-bench-*", "*.partial")
# third-party entries in TMPDIR that are not the tool's temporaries: onnxruntime's session-id file, torch's
# inductor cache folder (both persistent by design)
TMP_IGNORED = (".ses", "torchinductor_*")
HUGE = {int: "99999999999999999999", float: "1e308"}  # beyond int64 / the largest double: refused, never allocated
EXPECT = {"e": "error", "o": "ok", "a": "any"}
KEEP = False  # --keep: leave every sandbox in the work folder
DRY_RUN = False  # --dry-run: set up the sandboxes, run nothing

D8, D14 = "cifar_resnet20-d8.onnx", "cifar_resnet20-d14.onnx"
SEL, SELDATA = "cifar_resnet20-selector.onnx", "cifar_resnet20-selector.onnx.data"
TRAIN_ARGS = [
    "--arch",
    "cifar_resnet20",
    "--width",
    "4",
    "--depths",
    "8,14",
    "--batch-size",
    "64",
    "--train-limit",
    "128",
    "--test-limit",
    "64",
    "--recal-samples",
    "64",
    "--threads",
    "1",
    "--data",
    "fm",
    "--no-progress",
]
TRAIN = ["train", *TRAIN_ARGS, "--epochs", "1", "--out", "out.pt"]
PARTIAL_EPOCHS = "60"  # the unfinished run: interrupted after its first checkpoint
RESUME = ["train", *TRAIN_ARGS, "--epochs", PARTIAL_EPOCHS, "--out", "partial.pt", "--resume"]
EXPORT = ["export", "--ckpt", "tiny.pt", "--out", "exp", "--depths", "8", "--no-simplify", "--no-progress"]
# --max-drop 100: the one-epoch model's INT8 top-1 on 64 images is noisy; the guard has cases of its own
CALIBRATE = ["calibrate", "--artifacts", "art", "--samples", "32", "--eval-samples", "64", "--max-drop", "100"]
CALIBRATE += ["--no-progress"]
BENCH = ["bench", "--artifacts", "art", "--device", "quick", "--profiles", "prof.toml", "--dataset", "none"]
BENCH += ["--results", "r.json", "--no-progress"]
PREDICT = ["predict", "--artifacts", "art", "--depth", "8", "img.png"]
CONVERT = ["convert", "--arch", "cifar_resnet20", "--width", "4", "--in-channels", "1", "--input-size", "28"]
CONVERT += ["--num-classes", "10", "--out", "conv.pt"]
PROFILES = """\
[profiles.quick]
extends = "x86-cpu"
threads = 1
batch_sizes = [1]
precisions = ["fp32"]
warmup_iters = 1
warmup_seconds = 0.0
min_iters = 5
min_seconds = 0.01
accuracy_batch = 64

[profiles.slow]
extends = "x86-cpu"
threads = 1
batch_sizes = [1]
precisions = ["fp32", "int8"]
warmup_iters = 5
warmup_seconds = 0.2
min_iters = 50
min_seconds = 1.0
"""

# (fixture in the world, name in the sandbox)
KIT = {
    "ckpt": [("tiny.pt", "tiny.pt")],
    "partial": [("partial.pt", "partial.pt")],
    "conv": [("conv.pt", "conv.pt")],
    "nan": [("nan.pt", "nan.pt")],
    "art": [("art", "art")],
    "art8": [("art8", "art8")],
    "results": [("res.json", "res.json"), ("res.csv", "res.csv")],
    "profiles": [("prof.toml", "prof.toml")],
    "fm": [("fm", "fm")],
    "images": [("images", "images")],
    "imgroot": [("imgroot", "imgroot")],
    "npz": [("calib.npz", "calib.npz")],
    "img": [("img.png", "img.png")],
    "weights": [("weights", "weights")],
    "demo_art": [("demo_art", "demo_art")],
    "demo_art8": [("demo_art8", "demo_art8")],
    "demo_res": [("demo_res.json", "results.json")],
    "demo_ckpt": [("demo.pt", "demo.pt")],
}
CAL_OUT = ("*manifest.json", "*.int8-*")  # what calibrate writes (in whatever export folder it was given)


def outputs(command: str) -> tuple:
    """Pre-existing files a successful run of ``command`` may rewrite (other outputs are new files)."""
    return CAL_OUT if command == "calibrate" else ()


@dataclass
class Case:
    name: str
    family: str
    command: str
    what: str
    args: list = field(default_factory=list)
    expect: str = "error"  # error | ok | any
    kit: tuple = ()
    prep: Callable | None = None  # (sandbox) -> None: breaks something before the run
    replaced: tuple = ()  # sandbox paths (globs) the command may change when it succeeds: what the user asked for
    may_change: tuple = ()  # ... whatever the exit code (bench results written on failure, killed runs' outputs)
    check: Callable | None = None  # (sandbox, record) -> list of reasons
    runner: str = "plain"  # plain | serve | signal | concurrent
    timeout: float = 120.0
    codes: tuple | None = None  # the exit codes the README promises, where it promises one
    quick: bool = False
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ sandbox helpers (each returns a prep)

IMMUTABLE: set = set()
IMMUTABLE_LOCK = threading.Lock()


def _immutable(path: Path, on: bool) -> None:
    """A read-only directory, even for root (chattr +i); chmod where we are not root."""
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=False, capture_output=True)
    else:
        path.chmod(0o555 if on else 0o755)
    with IMMUTABLE_LOCK:
        (IMMUTABLE.add if on else IMMUTABLE.discard)(str(path))


def release_immutable(under: Path | None = None) -> None:
    for path in sorted(IMMUTABLE):
        if under is None or path.startswith(str(under)):
            _immutable(Path(path), False)


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def chain(*preps: Callable) -> Callable:
    def prep(sb: Path) -> None:
        for p in preps:
            p(sb)

    return prep


def put(rel: str, data: bytes | str) -> Callable:
    def prep(sb: Path) -> None:
        path = sb / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return prep


def noise(rel: str, n: int = 4096, seed: int = 1) -> Callable:
    return put(rel, np.random.default_rng(seed).bytes(n))


def mkdirs(*rels: str) -> Callable:
    def prep(sb: Path) -> None:
        for rel in rels:
            (sb / rel).mkdir(parents=True, exist_ok=True)

    return prep


def copy(src: str, dst: str) -> Callable:
    def prep(sb: Path) -> None:
        s, d = sb / src, sb / dst
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, d, symlinks=True) if s.is_dir() else shutil.copy2(s, d)

    return prep


def move(src: str, dst: str) -> Callable:
    def prep(sb: Path) -> None:
        (sb / dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(sb / src, sb / dst)

    return prep


def remove(rel: str) -> Callable:
    def prep(sb: Path) -> None:
        path = sb / rel
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    return prep


def truncate(src: str, dst: str | None = None, keep: float = 0.5) -> Callable:
    def prep(sb: Path) -> None:
        data = (sb / src).read_bytes()
        (sb / (dst or src)).write_bytes(data[: int(len(data) * keep)])

    return prep


def flip(rel: str, at: float = 0.6) -> Callable:
    """Change one byte in the middle of a file (its sha256 no longer matches)."""

    def prep(sb: Path) -> None:
        data = bytearray((sb / rel).read_bytes())
        data[int(len(data) * at)] ^= 0xFF
        (sb / rel).write_bytes(bytes(data))

    return prep


def symlink(target: str, rel: str) -> Callable:
    def prep(sb: Path) -> None:
        (sb / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, sb / rel)

    return prep


def fifo(rel: str) -> Callable:
    def prep(sb: Path) -> None:
        os.mkfifo(sb / rel)

    return prep


def readonly(rel: str) -> Callable:
    def prep(sb: Path) -> None:
        (sb / rel).mkdir(parents=True, exist_ok=True)
        _immutable(sb / rel, True)

    return prep


def edit_json(rel: str, fn: Callable) -> Callable:
    """Load a JSON file, let ``fn`` change it in place (its return value is ignored), write it back (NaN allowed)."""

    def prep(sb: Path) -> None:
        path = sb / rel
        data = json.loads(path.read_text())
        fn(data)
        path.write_text(json.dumps(data, indent=1))

    return prep


def setter(*keys_and_value) -> Callable:
    *keys, value = keys_and_value

    def fn(data):
        obj = data
        for key in keys[:-1]:
            obj = obj[key]
        obj[keys[-1]] = value

    return fn


def deleter(*keys) -> Callable:
    def fn(data):
        obj = data
        for key in keys[:-1]:
            obj = obj[key]
        del obj[keys[-1]]

    return fn


def rehash(folder: str, rel: str) -> Callable:
    """Make the manifest agree with a tampered file again (sha256 and bytes), so only deeper checks catch it."""

    def prep(sb: Path) -> None:
        path = sb / folder / "manifest.json"
        data = json.loads(path.read_text())
        file = sb / folder / rel
        sha, size = _sha(file), file.stat().st_size
        for artifact in data["artifacts"]:
            if artifact["path"] == rel:
                artifact["sha256"], artifact["bytes"] = sha, size
            if (artifact.get("data") or {}).get("path") == rel:
                artifact["data"]["sha256"], artifact["data"]["bytes"] = sha, size
        path.write_text(json.dumps(data, indent=1))

    return prep


def int8_path(sb: Path, folder: str, depth: int) -> str:
    data = json.loads((sb / folder / "manifest.json").read_text())
    return next(a["path"] for a in data["artifacts"] if a.get("precision") == "int8" and a["depth"] == depth)


def deep_json(prefix: str = '{"format": "x", "deep": ', depth: int = 200_000) -> str:
    return prefix + "[" * depth + "]" * depth + "}"


def idx_bytes(array: np.ndarray, magic_type: int = 0x08, dims: tuple | None = None) -> bytes:
    shape = dims if dims is not None else array.shape
    header = struct.pack(">HBB", 0, magic_type, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def read_idx_gz(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format=fmt)
    return out.getvalue()


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's first line)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def npz(rel: str, **arrays) -> Callable:
    def prep(sb: Path) -> None:
        np.savez(sb / rel, **arrays)

    return prep


class _Evil:
    """Unpickling this runs a shell command that creates PWNED in the working directory."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def evil_pickle() -> bytes:
    return pickle.dumps({"state_dict": _Evil(), "format": "ddnn-deploy.checkpoint"}, protocol=2)


def externalize(folder: str, rel: str, location: str, move_to: str | None = None) -> Callable:
    """Rewrite graph ``rel`` so its weights live in an external-data file named ``location`` (relative to the
    graph, or absolute), put that file at ``move_to`` (sandbox-relative), and make the manifest's sha256 of the
    graph agree (the external file itself is not listed)."""

    def prep(sb: Path) -> None:
        import onnx
        from onnx.external_data_helper import convert_model_to_external_data

        path = sb / folder / rel
        model = onnx.load(str(path))
        convert_model_to_external_data(model, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
        onnx.save_model(model, str(path))
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path.write_bytes(model.SerializeToString())
        if move_to is not None:
            (sb / move_to).parent.mkdir(parents=True, exist_ok=True)
            os.replace(sb / folder / "w.bin", sb / move_to)
        rehash(folder, rel)(sb)

    return prep


def static_batch(folder: str, rel: str, batch: int = 1) -> Callable:
    """Give graph ``rel`` a static batch axis (a readable graph that fails at run time for other batch sizes)."""

    def prep(sb: Path) -> None:
        import onnx

        path = sb / folder / rel
        model = onnx.load(str(path), load_external_data=False)
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
        path.write_bytes(model.SerializeToString())
        rehash(folder, rel)(sb)

    return prep


def relocate_selector_data(folder: str, location: str, copy_to: str) -> Callable:
    """The selector graph reads its weights from ``location`` (a copy at ``copy_to``) while the listed .data
    file stays in place and intact: the manifest check passes, the graph reads elsewhere."""

    def prep(sb: Path) -> None:
        import onnx

        path = sb / folder / SEL
        model = onnx.load(str(path), load_external_data=False)

        def tensors(graph):
            yield from graph.initializer
            for node in graph.node:
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        yield from tensors(attr.g)
                    elif attr.type == onnx.AttributeProto.TENSOR:
                        yield attr.t

        for tensor in tensors(model.graph):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path.write_bytes(model.SerializeToString())
        shutil.copy2(sb / folder / SELDATA, sb / copy_to)
        rehash(folder, SEL)(sb)

    return prep


# ------------------------------------------------------------------ checks run after a case


def _tool_check(sb: Path, kind: str, rel: str) -> str | None:
    """Validate a file with the tool's own reader, in a child (the code under test may be mid-edit)."""
    script = (
        "import sys\nkind, path = sys.argv[1:3]\n"
        "if kind == 'manifest':\n    from ddnn_deploy.formats.manifest import read_manifest; read_manifest(path)\n"
        "elif kind == 'results':\n    from ddnn_deploy.formats.results import read_results; read_results(path)\n"
        "else:\n    from ddnn_deploy.checkpoint import load_checkpoint\n    c = load_checkpoint(path)\n"
        "    if kind == 'finished' and 'resume' in c.training: sys.exit('still holds resume state')\n"
    )
    proc = subprocess.run([PY, "-c", script, kind, str(sb / rel)], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
    return f"{rel} is not a valid {kind} afterwards: {lines[-1] if lines else proc.returncode}"


def valid(kind: str, *rels: str, if_exists: bool = False) -> Callable:
    def check(sb: Path, rec: dict) -> list:
        reasons = []
        for rel in rels:
            if if_exists and not (sb / rel).exists():
                continue
            problem = _tool_check(sb, kind, rel)
            if problem:
                reasons.append(problem)
        return reasons

    return check


def exists(*rels: str) -> Callable:
    def check(sb: Path, rec: dict) -> list:
        return [f"{rel} was not written" for rel in rels if not (sb / rel).exists()]

    return check


def no_pwned(sb: Path, rec: dict) -> list:
    return ["the malicious pickle RAN (PWNED created)"] if (sb / "PWNED").exists() else []


def json_stdout(sb: Path, rec: dict) -> list:
    try:
        json.loads(rec.get("stdout_full") or "")
    except ValueError:
        return ["--json printed something that is not JSON on stdout"]
    return []


def results_have_error_row(rel: str) -> Callable:
    def check(sb: Path, rec: dict) -> list:
        try:
            rows = json.loads((sb / rel).read_text())["rows"]
        except (OSError, ValueError, KeyError):
            return [f"{rel} missing or unreadable after a partly failed bench"]
        return [] if any(r.get("status") == "error" for r in rows) else [f"{rel} records no failed row"]

    return check


def written_if(code: int, rel: str, also_ok: bool = False) -> Callable:
    """After exit ``code`` (or 0 with ``also_ok``) the results must be written, recording the failed rows."""

    def check(sb: Path, rec: dict) -> list:
        if rec["exit_code"] != code and not (also_ok and rec["exit_code"] == 0):
            return []
        return valid("results", rel)(sb, rec) or results_have_error_row(rel)(sb, rec)

    return check


def unlisted_int8(folder: str) -> Callable:
    """INT8 graphs on disk that the manifest does not list: garbage left by a race or an interruption."""

    def check(sb: Path, rec: dict) -> list:
        try:
            listed = {a["path"] for a in json.loads((sb / folder / "manifest.json").read_text())["artifacts"]}
        except (OSError, ValueError, KeyError):
            return []
        stray = sorted(p.name for p in (sb / folder).glob("*.int8-*.onnx") if p.name not in listed)
        return [f"unlisted INT8 files left in {folder}: {', '.join(stray)}"] if stray else []

    return check


def checks(*fns: Callable) -> Callable:
    def check(sb: Path, rec: dict) -> list:
        return [reason for fn in fns for reason in fn(sb, rec)]

    return check


# ------------------------------------------------------------------ the fixture world


def _env(token: str = "", tmpdir: Path | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="160", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if token:
        env[MARKER] = token
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return env


def build_world(root: Path) -> dict:
    stamp = root / "world.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    if not (FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").exists():
        raise SystemExit(f"Fashion-MNIST is not at {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
    root.mkdir(parents=True, exist_ok=True)
    seconds: dict = {}

    def cli(name: str, *args: str) -> None:
        print(f"  world: {name}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([PY, "-m", "ddnn_deploy", *args], cwd=root, capture_output=True, text=True, env=_env())
        if proc.returncode:
            raise SystemExit(f"fixture {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        seconds[name] = round(time.perf_counter() - start, 2)

    fm = root / "fm"
    fm.mkdir(exist_ok=True)
    for split, n in (("train", 512), ("t10k", 256)):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            array = read_idx_gz(FASHION_MNIST / f"{split}-{kind}.gz")[:n]
            (fm / f"{split}-{kind}").write_bytes(idx_bytes(array))
    test = read_idx_gz(fm / "t10k-images-idx3-ubyte")
    labels = read_idx_gz(fm / "t10k-labels-idx1-ubyte")
    for c in range(10):
        for i, index in enumerate(np.flatnonzero(labels == c)[:3]):
            for folder in (
                root / "images" / f"c{c}",
                root / "imgroot" / "train" / f"c{c}",
                root / "imgroot" / "val" / f"c{c}",
            ):
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{i}.png").write_bytes(png_bytes(test[index]))
    (root / "img.png").write_bytes(png_bytes(test[0]))
    train = read_idx_gz(fm / "train-images-idx3-ubyte")
    np.savez(root / "calib.npz", images=train[:64, None], labels=read_idx_gz(fm / "train-labels-idx1-ubyte")[:64])

    cli("train", *TRAIN[:-2], "--out", "tiny.pt")
    start = time.perf_counter()  # the unfinished run: SIGINT once its first checkpoint is on disk
    proc = subprocess.Popen(
        [PY, "-m", "ddnn_deploy", "train", *TRAIN_ARGS, "--epochs", PARTIAL_EPOCHS, "--out", "partial.pt"],
        cwd=root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while not (root / "partial.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    seconds["train_first_checkpoint"] = round(time.perf_counter() - start, 2)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(60)
    if _tool_check(root, "finished", "partial.pt") is None:
        raise SystemExit("the unfinished fixture run finished before it could be interrupted")
    cli("convert", *CONVERT)
    cli("export", "export", "--ckpt", "tiny.pt", "--out", "art", "--selector", "--no-simplify", "--no-progress")
    shutil.copytree(root / "art", root / "art8")
    cli("calibrate", "calibrate", "--artifacts", "art8", "--samples", "64", "--eval-samples", "128", "--no-progress")
    (root / "prof.toml").write_text(PROFILES)
    cli(
        "bench",
        *["bench", "--artifacts", "art8", "--device", "quick", "--profiles", "prof.toml", "--dataset"],
        *["fashion-mnist", "--data", "fm", "--limit", "128", "--precision", "fp32,int8", "--results", "res.json"],
        "--no-progress",
    )
    weights = root / "weights"
    weights.mkdir(exist_ok=True)
    script = (
        "import sys, torch\nsrc, out = sys.argv[1], sys.argv[2]\n"
        "ck = torch.load(src, weights_only=True)\nsd = ck['state_dict']\n"
        "torch.save(sd, out + '/ok.pth')\n"
        "bad = {k: v.clone() for k, v in sd.items()}\n"
        "first = next(k for k, v in bad.items() if v.is_floating_point() and v.dim() == 4)\n"
        "bad[first].fill_(float('nan'))\ntorch.save(bad, out + '/nan.pth')\n"
        "torch.save({k: torch.zeros(3, 3) for k in sd}, out + '/wrong.pth')\n"
        "ck['state_dict'] = bad\ntorch.save(ck, out + '/../nan.pt')\n"
    )
    subprocess.run([PY, "-c", script, str(root / "tiny.pt"), str(weights)], check=True, env=_env())
    (weights / "evil.pth").write_bytes(evil_pickle())
    shutil.copy2(DEMO_CKPT, root / "demo.pt")
    cli("export_demo", "export", "--ckpt", "demo.pt", "--out", "demo_art", "--selector", "--no-progress")
    shutil.copytree(root / "demo_art", root / "demo_art8")
    cli("calibrate_demo", "calibrate", "--artifacts", "demo_art8", "--eval-samples", "1000", "--no-progress")
    cli(
        "bench_demo",
        *["bench", "--artifacts", "demo_art8", "--device", "slow", "--profiles", "prof.toml", "--dataset", "none"],
        *["--results", "demo_res.json", "--no-progress"],
    )
    world = {"root": str(root), "seconds": seconds}
    stamp.write_text(json.dumps(world, indent=1))
    return world


# ------------------------------------------------------------------ the cases


def with_opt(base: list, option: str, value: str | None) -> list:
    """``base`` with ``option`` set to ``value`` (as --opt=value, so values starting with '-' stay values)."""
    out, skip = [], False
    for i, arg in enumerate(base):
        if skip:
            skip = False
            continue
        if arg == option and i + 1 < len(base):
            skip = True
            continue
        out.append(arg)
    return out + ([f"{option}={value}"] if value is not None else [option])


NUMBER_VALUES = ("nan", "inf", "-inf", "-1", "0", "huge", "abc")
# (base command, kit, option, type, expectation overrides: value -> e/o/a; default e)
NUMERIC = [
    (TRAIN, ("fm",), "--epochs", int, {"0": "o"}),  # 0 epochs: recalibrate the BN statistics only (README)
    (TRAIN, ("fm",), "--batch-size", int, {"huge": "a"}),
    (TRAIN, ("fm",), "--lr", float, {"0": "a"}),
    (TRAIN, ("fm",), "--weight-decay", float, {"0": "o"}),
    (TRAIN, ("fm",), "--warmup-epochs", float, {"0": "o", "huge": "a"}),
    (TRAIN, ("fm",), "--kl-weight", float, {"0": "o"}),
    (TRAIN, ("fm",), "--at-weight", float, {"0": "o"}),
    (TRAIN, ("fm",), "--temperature", float, {"huge": "a"}),
    (TRAIN, ("fm",), "--seed", int, {"-1": "a", "0": "o", "huge": "a"}),
    (TRAIN, ("fm",), "--width", int, {}),
    (TRAIN, ("fm",), "--threads", int, {}),
    (TRAIN, ("fm",), "--train-limit", int, {"huge": "a"}),
    (TRAIN, ("fm",), "--test-limit", int, {"huge": "a"}),
    (TRAIN, ("fm",), "--holdout", int, {"0": "o"}),
    (TRAIN, ("fm",), "--recal-samples", int, {"0": "a", "huge": "a"}),
    (["eval", "--ckpt", "tiny.pt", "--data", "fm"], ("ckpt", "fm"), "--limit", int, {"huge": "a"}),
    (["info", "--arch", "cifar_resnet20"], (), "--input-size", int, {}),
    (["info", "--arch", "cifar_resnet20"], (), "--in-channels", int, {}),
    (["info", "--arch", "cifar_resnet20"], (), "--num-classes", int, {}),
    (["info", "--arch", "cifar_resnet20"], (), "--width", int, {}),
    (CONVERT, (), "--num-classes", int, {}),
    (CONVERT, (), "--in-channels", int, {}),
    (CONVERT, (), "--input-size", int, {}),
    (CONVERT, (), "--width", int, {}),
    (CONVERT, (), "--seed", int, {"-1": "a", "0": "o", "huge": "a"}),
    (EXPORT, ("ckpt",), "--opset", int, {}),
    (EXPORT, ("ckpt",), "--input-size", int, {}),
    (EXPORT, ("ckpt",), "--batch", int, {}),
    (EXPORT, ("ckpt",), "--tolerance", float, {"0": "a", "huge": "a"}),
    (CALIBRATE, ("art",), "--samples", int, {"huge": "a"}),
    (CALIBRATE, ("art",), "--eval-samples", int, {"0": "a", "huge": "a"}),
    (CALIBRATE, ("art",), "--max-drop", float, {"0": "a", "huge": "a"}),
    (CALIBRATE + ["--method", "percentile"], ("art",), "--percentile", float, {}),
    (BENCH, ("art", "profiles"), "--budget-ms", float, {"huge": "a"}),
    (
        with_opt(BENCH, "--dataset", "fashion-mnist") + ["--data", "fm"],
        ("art", "profiles", "fm"),
        "--limit",
        int,
        {"huge": "a"},
    ),
    (["pick", "--results", "res.json", "--budget-ms", "1"], ("results",), "--budget-ms", float, {"huge": "a"}),
    (["pick", "--results", "res.json", "--budget-ms", "1000"], ("results",), "--min-accuracy", float, {"0": "a"}),
    (["pick", "--results", "res.json", "--budget-ms", "1000"], ("results",), "--batch", int, {}),
    (
        ["predict", "--artifacts", "art8", "--results", "res.json", "img.png"],
        ("art8", "results", "img"),
        "--depth",
        int,
        {},
    ),
    (["predict", "--artifacts", "art8", "img.png"], ("art8", "img"), "--top-k", int, {"huge": "a"}),
    (["predict", "--artifacts", "art8", "img.png"], ("art8", "img"), "--threads", int, {}),
    (
        ["predict", "--artifacts", "art8", "--results", "res.json", "img.png"],
        ("art8", "results", "img"),
        "--budget-ms",
        float,
        {"huge": "a"},
    ),
]
SERVE = ["serve", "--artifacts", "art8", "--results", "res.json", "--port", "{port}"]
SERVE_NUMERIC = [
    ("--port", int, {"0": "a"}),
    ("--max-queue", int, {"0": "a", "huge": "a"}),
    ("--max-batch", int, {"huge": "a"}),
    ("--max-wait-ms", float, {"0": "o", "huge": "a"}),
    ("--max-body-bytes", int, {"huge": "a"}),
    ("--slo-ms", float, {"huge": "a"}),
    ("--depth", int, {}),
    ("--threads", int, {}),
    ("--budget-ms", float, {"huge": "a"}),
]
QUICK_NUMBERS = {
    "pick/budget-ms=nan",
    "pick/budget-ms=inf",
    "export/opset=-1",
    "calibrate/percentile=nan",
    "bench/limit=0",
    "predict/top-k=0",
    "serve/max-queue=-1",
    "train/lr=nan",
    "info/width=0",
    "convert/width=huge",
    "demo/budget-ms=inf",
}


def number_cases() -> list:
    cases = []

    def add(base, kit, option, kind, overrides, runner="plain", prep=None, command=None, timeout=120.0):
        command = command or base[0]
        for key in NUMBER_VALUES:
            value = HUGE[kind] if key == "huge" else key
            name = f"{command}/{option.lstrip('-')}={key}"
            cases.append(
                Case(
                    name=name,
                    family="nonfinite" if key in ("nan", "inf", "-inf") else "numbers",
                    command=command,
                    what=f"{option} {value} ({kind.__name__} option)",
                    args=with_opt(base, option, value),
                    expect=EXPECT[overrides.get(key, "e")],
                    kit=kit,
                    prep=prep,
                    replaced=outputs(command),
                    runner=runner,
                    timeout=timeout,
                    quick=name in QUICK_NUMBERS,
                )
            )

    for base, kit, option, kind, overrides in NUMERIC:
        add(base, kit, option, kind, overrides, timeout=90.0 if base[0] == "train" else 120.0)
    for option, kind, overrides in SERVE_NUMERIC:
        add(SERVE, ("art8", "results"), option, kind, overrides, runner="serve", timeout=40.0)
    to_demo = copy("res.json", "dout/results.json")
    add(["demo", "--out", "dout", "--steps", "pick"], ("results",), "--budget-ms", float, {"huge": "a"}, prep=to_demo)
    add(["demo", "--out", "dout", "--steps", "info"], (), "--limit", int, {"huge": "a"})
    extra = [("65536", "e"), ("-99999", "e")]
    for value, expect in extra:
        cases.append(
            Case(
                f"serve/port={value}",
                "numbers",
                "serve",
                f"--port {value}",
                with_opt(SERVE, "--port", value),
                EXPECT[expect],
                ("art8", "results"),
                runner="serve",
                timeout=40.0,
            )
        )
    return cases


def _file_variants(valid: str, others: dict, ext: str) -> list:
    """(label, path argument, prep, expectation) for an input option that takes a file."""
    return [
        ("missing", "nowhere/missing" + ext, None, "e"),
        ("directory", "adir", mkdirs("adir"), "e"),
        ("empty", "empty" + ext, put("empty" + ext, b""), "e"),
        ("random-bytes", "random" + ext, noise("random" + ext), "e"),
        ("truncated", "trunc" + ext, truncate(valid, "trunc" + ext), "e"),
        ("fifo", "pipe" + ext, fifo("pipe" + ext), "e"),
        ("dev-null", "/dev/null", None, "e"),
        ("dangling-symlink", "dangle" + ext, symlink("nowhere" + ext, "dangle" + ext), "e"),
        ("newline-in-name", "no\nsuch" + ext, None, "e"),
        ("name-too-long", "x" * 300 + ext, None, "e"),
        ("empty-string", "", None, "e"),
        ("spaces-unicode", f"my files/ünï cödé ✓{ext}", copy(valid, f"my files/ünï cödé ✓{ext}"), "o"),
        ("symlink-to-valid", "link" + ext, symlink(valid, "link" + ext), "o"),
        *[(f"other-kind-{label}", path, None, expect) for label, (path, expect) in others.items()],
    ]


def path_cases() -> list:
    cases = []

    def add(command, option, base, kit, variants, family="paths", quick=(), timeout=120.0, runner="plain", check=None):
        for label, value, prep, expect in variants:
            args = [a for a in base]
            if option is None:  # positional
                args = args + [value]
            else:
                args = with_opt(args, option, value)
            name = f"{command}/{option.lstrip('-') if option else 'image'}:{label}"
            cases.append(
                Case(
                    name=name,
                    family=family,
                    command=command,
                    what=f"{option or 'IMAGE'} {label}",
                    args=args,
                    expect=EXPECT[expect],
                    kit=kit,
                    prep=prep,
                    replaced=outputs(command),
                    timeout=30.0 if "fifo" in label else timeout,
                    runner=runner,
                    quick=label in quick,
                    check=checks(no_pwned, check) if check else no_pwned,
                )
            )

    ckpt_others = {
        "results": ("res.json", "e"),
        "manifest": ("art/manifest.json", "e"),
        "onnx-graph": (f"art/{D8}", "e"),
        "profiles-toml": ("prof.toml", "e"),
        "plain-state-dict": ("weights/ok.pth", "e"),
        "malicious-pickle": ("weights/evil.pth", "e"),
    }
    kit = ("ckpt", "results", "art", "profiles", "weights", "fm")
    ckpt_variants = _file_variants("tiny.pt", ckpt_others, ".pt")
    add(
        "eval",
        "--ckpt",
        ["eval", "--ckpt", "X", "--data", "fm", "--limit", "64"],
        kit,
        ckpt_variants,
        quick=("random-bytes",),
    )
    add("info", "--ckpt", ["info", "--ckpt", "X"], kit, ckpt_variants)
    add("export", "--ckpt", EXPORT, kit, ckpt_variants)
    add("train", "--init", TRAIN, kit, ckpt_variants, timeout=90.0)
    weight_variants = [
        ("missing", "nowhere.pth", None, "e"),
        ("directory", "weights", None, "e"),
        ("empty", "e.pth", put("e.pth", b""), "e"),
        ("random-bytes", "r.pth", noise("r.pth"), "e"),
        ("truncated", "t.pth", truncate("weights/ok.pth", "t.pth"), "e"),
        ("malicious-pickle", "weights/evil.pth", None, "e"),
        ("ddnn-checkpoint", "tiny.pt", None, "a"),
        ("wrong-shapes", "weights/wrong.pth", None, "e"),
        ("nan-weights", "weights/nan.pth", None, "e"),
        ("valid", "weights/ok.pth", None, "o"),
        ("random-safetensors", "r.safetensors", noise("r.safetensors"), "e"),
        ("spaces-unicode", "my files/ünï ✓.pth", copy("weights/ok.pth", "my files/ünï ✓.pth"), "o"),
    ]
    add("convert", "--weights", CONVERT, ("ckpt", "weights"), weight_variants)

    results_others = {
        "manifest": ("art8/manifest.json", "e"),
        "checkpoint": ("tiny.pt", "e"),
        "toml": ("prof.toml", "e"),
    }
    kit = ("results", "art8", "ckpt", "profiles", "img")
    results_variants = _file_variants("res.json", results_others, ".json")
    add("pick", "--results", ["pick", "--results", "X", "--budget-ms", "1000"], kit, results_variants, quick=("fifo",))
    add(
        "predict",
        "--results",
        ["predict", "--artifacts", "art8", "--results", "X", "--budget-ms", "1000", "img.png"],
        kit,
        results_variants,
    )
    serve_subset = [
        v
        for v in results_variants
        if v[0] in ("missing", "directory", "random-bytes", "fifo", "other-kind-manifest", "spaces-unicode")
    ]
    add(
        "serve",
        "--results",
        ["serve", "--artifacts", "art8", "--results", "X", "--budget-ms", "1000", "--port", "{port}"],
        kit,
        serve_subset,
        runner="serve",
        timeout=40.0,
    )

    profile_others = {"results": ("res.json", "e"), "checkpoint": ("tiny.pt", "e")}
    add(
        "bench",
        "--profiles",
        BENCH,
        ("art", "profiles", "results", "ckpt"),
        _file_variants("prof.toml", profile_others, ".toml"),
        quick=("truncated",),
    )

    art_variants = [
        ("missing", "nowhere", None, "e"),
        ("a-file", "res.json", None, "e"),
        ("empty-dir", "adir", mkdirs("adir"), "e"),
        ("dir-without-manifest", "fm", None, "e"),
        ("manifest-file-itself", "art/manifest.json", None, "e"),
        ("newline-in-name", "no\nsuch", None, "e"),
        ("empty-string", "", None, "e"),
        ("spaces-unicode", "my arts/ärt ✓", copy("art", "my arts/ärt ✓"), "o"),
        ("symlink-to-valid", "artlink", symlink("art", "artlink"), "o"),
    ]
    kit = ("art", "results", "fm", "profiles", "img")
    add("calibrate", "--artifacts", CALIBRATE, kit, art_variants, quick=("a-file",))
    add("bench", "--artifacts", BENCH, kit, art_variants)
    add("predict", "--artifacts", PREDICT, kit, art_variants)
    add(
        "serve",
        "--artifacts",
        ["serve", "--artifacts", "X", "--port", "{port}"],
        kit,
        [v for v in art_variants if v[0] in ("missing", "a-file", "dir-without-manifest", "spaces-unicode")],
        runner="serve",
        timeout=40.0,
    )

    data_variants = [
        ("missing", "nowhere", None, "e"),
        ("a-file", "notes.txt", None, "e"),
        ("empty-dir", "adir", mkdirs("adir"), "e"),
        ("spaces-unicode", "my data/fäshion ✓", copy("fm", "my data/fäshion ✓"), "o"),
    ]
    add("eval", "--data", ["eval", "--ckpt", "tiny.pt", "--data", "X", "--limit", "64"], ("ckpt", "fm"), data_variants)
    add("train", "--data", TRAIN, ("fm",), data_variants, timeout=90.0)
    add(
        "bench",
        "--data",
        with_opt(BENCH, "--dataset", "fashion-mnist") + ["--data", "X", "--limit", "64"],
        ("art", "profiles", "fm"),
        data_variants,
    )

    # outputs
    unwritable = "/proc/ddnn-robustness/x"
    out_variants = [
        ("a-directory", "art", None, "e"),
        ("unwritable-location", unwritable + ".pt", None, "e"),
        ("parent-is-a-file", "notes.txt/x.pt", None, "e"),
        ("read-only-dir", "ro/x.pt", readonly("ro"), "e"),
        ("spaces-unicode", "my runs/ünï ✓.pt", None, "o"),
        ("empty-string", "", None, "e"),
        ("inside-artifacts", "art/x.pt", None, "a"),
        ("newline-in-name", "new\nline.pt", None, "a"),
        ("new-deep-folder", "a/b/c/x.pt", None, "a"),
    ]
    add("train", "--out", TRAIN, ("fm", "art"), out_variants, quick=("read-only-dir",), timeout=90.0)
    add("convert", "--out", CONVERT, ("art",), out_variants)
    export_out = [
        ("unwritable-location", unwritable, None, "e"),
        ("parent-is-a-file", "notes.txt/exp", None, "e"),
        ("read-only-parent", "ro/exp", readonly("ro"), "e"),
        ("spaces-unicode", "my exports/ëxp ✓", None, "o"),
        ("empty-string", "", None, "e"),
        ("inside-artifacts", "art/sub", None, "a"),
        ("an-existing-file", "notes.txt", None, "e"),
        ("new-deep-folder", "a/b/c/exp", None, "a"),
    ]
    add("export", "--out", EXPORT, ("ckpt", "art"), export_out, quick=("parent-is-a-file",))
    results_out = [
        ("a-directory", "art", None, "e"),
        ("unwritable-location", unwritable + ".json", None, "e"),
        ("parent-is-a-file", "notes.txt/r.json", None, "e"),
        ("read-only-dir", "ro/r.json", readonly("ro"), "e"),
        ("spaces-unicode", "my results/rés ✓.json", None, "o"),
        ("empty-string", "", None, "e"),
        ("inside-artifacts", "art/results.json", None, "o"),
        ("new-deep-folder", "a/b/c/r.json", None, "a"),
        ("no-suffix", "r", None, "a"),
        ("csv-suffix", "r.csv", None, "a"),
    ]
    add("bench", "--results", BENCH, ("art", "profiles"), results_out)
    demo_out = [
        ("an-existing-file", "notes.txt", None, "e"),
        ("read-only-parent", "ro/d", readonly("ro"), "e"),
        ("unwritable-location", unwritable, None, "e"),
        ("empty-string", "", None, "e"),
    ]
    add("demo", "--out", ["demo", "--steps", "export", "--out", "X"], (), demo_out)
    cases.append(
        Case(
            "calibrate/artifacts:read-only-folder",
            "paths",
            "calibrate",
            "the export folder is read-only",
            CALIBRATE,
            "error",
            ("art",),
            readonly("art"),
        )
    )
    cases.append(
        Case(
            "export/out:read-only-existing-export",
            "paths",
            "export",
            "--force onto a read-only earlier export",
            with_opt(EXPORT, "--out", "art") + ["--force"],
            "error",
            ("ckpt", "art"),
            readonly("art"),
        )
    )
    return cases


MANIFEST = "art/manifest.json"
# (label, what, prep on the sandbox holding art/, expectation by command: {calibrate, bench, predict, serve})
TAMPERS = [
    ("manifest-missing", "manifest.json deleted", remove(MANIFEST), "eeee"),
    ("manifest-empty", "manifest.json empty", put(MANIFEST, ""), "eee-"),
    ("manifest-random", "manifest.json random bytes", noise(MANIFEST), "eee-"),
    ("manifest-truncated", "manifest.json cut in half", truncate(MANIFEST), "eeee"),
    ("manifest-array", "manifest.json is []", put(MANIFEST, "[]"), "eee-"),
    ("manifest-null", "manifest.json is null", put(MANIFEST, "null"), "ee--"),
    ("manifest-is-results", "a bench results file as manifest.json", copy("res.json", MANIFEST), "eee-"),
    ("manifest-invalid-utf8", "latin-1 bytes in manifest.json", None, "eee-"),
    ("manifest-bom", "UTF-8 BOM before the JSON", None, "aaa-"),
    ("manifest-directory", "manifest.json is a directory", chain(remove(MANIFEST), mkdirs(MANIFEST)), "eee-"),
    ("manifest-fifo", "manifest.json is a named pipe", chain(remove(MANIFEST), fifo(MANIFEST)), "eee-"),
    ("manifest-deep-nesting", "200000 nested arrays in manifest.json", put(MANIFEST, deep_json()), "eeee"),
    ("format-wrong", "format is another tool's", edit_json(MANIFEST, setter("format", "other.tool")), "eee-"),
    ("version-99", "version 99", edit_json(MANIFEST, setter("version", 99)), "eee-"),
    ("artifacts-not-list", "artifacts is a string", edit_json(MANIFEST, setter("artifacts", "all")), "eee-"),
    ("artifacts-empty", "artifacts is []", edit_json(MANIFEST, setter("artifacts", [])), "eeee"),
    (
        "depth-string",
        "artifacts[0].depth is a string",
        edit_json(MANIFEST, setter("artifacts", 0, "depth", "eight")),
        "eee-",
    ),
    ("depth-negative", "artifacts[0].depth = -8", edit_json(MANIFEST, setter("artifacts", 0, "depth", -8)), "eee-"),
    (
        "depth-float-nan",
        "artifacts[0].depth = NaN",
        edit_json(MANIFEST, setter("artifacts", 0, "depth", float("nan"))),
        "eee-",
    ),
    ("sha-int", "artifacts[0].sha256 is a number", edit_json(MANIFEST, setter("artifacts", 0, "sha256", 123)), "eee-"),
    ("bytes-negative", "artifacts[0].bytes = -1", edit_json(MANIFEST, setter("artifacts", 0, "bytes", -1)), "eee-"),
    ("path-int", "artifacts[0].path is a number", edit_json(MANIFEST, setter("artifacts", 0, "path", 5)), "eee-"),
    (
        "path-dotdot",
        "artifacts[0].path = ../tiny.pt",
        edit_json(MANIFEST, setter("artifacts", 0, "path", "../tiny.pt")),
        "eeee",
    ),
    (
        "path-absolute",
        "artifacts[0].path absolute",
        edit_json(MANIFEST, setter("artifacts", 0, "path", "/etc/hostname")),
        "eee-",
    ),
    (
        "path-self",
        "artifacts[0].path = manifest.json",
        edit_json(MANIFEST, setter("artifacts", 0, "path", "manifest.json")),
        "eee-",
    ),
    (
        "path-directory",
        "artifacts[0].path names a folder",
        chain(mkdirs("art/sub"), edit_json(MANIFEST, setter("artifacts", 0, "path", "sub"))),
        "eee-",
    ),
    (
        "artifact-duplicated",
        "artifacts[0] listed twice",
        edit_json(MANIFEST, lambda d: d["artifacts"].append(d["artifacts"][0])),
        "aaa-",
    ),
    ("input-shape-string", "input.shape is a string", edit_json(MANIFEST, setter("input", "shape", "abc")), "eee-"),
    (
        "input-channels-3",
        "input.shape says 3 channels (graphs take 1)",
        edit_json(MANIFEST, setter("input", "shape", ["batch", 3, 28, 28])),
        "eee-",
    ),
    ("std-zero", "preprocess.std = [0]", edit_json(MANIFEST, setter("preprocess", "std", [0])), "eee-"),
    ("mean-nan", "preprocess.mean = [NaN]", edit_json(MANIFEST, setter("preprocess", "mean", [float("nan")])), "eeee"),
    (
        "scale-inf",
        "preprocess.scale = Infinity",
        edit_json(MANIFEST, setter("preprocess", "scale", float("inf"))),
        "eee-",
    ),
    ("scale-1e400", "preprocess.scale = 1e400 (inf once parsed)", None, "eee-"),
    ("class-names-int", "class_names = 42", edit_json(MANIFEST, setter("class_names", 42)), "eee-"),
    ("class-names-short", "one class name for 10 logits", edit_json(MANIFEST, setter("class_names", ["a"])), "aaee"),
    ("sha-mismatch", "one byte of the d8 graph changed", flip(f"art/{D8}"), "eeee"),
    ("graph-deleted", "the d8 graph deleted", remove(f"art/{D8}"), "eeee"),
    (
        "graph-is-directory",
        "the d8 graph replaced by a folder",
        chain(remove(f"art/{D8}"), mkdirs(f"art/{D8}")),
        "eee-",
    ),
    (
        "graph-random-rehashed",
        "d8 graph = random bytes, sha256 updated",
        chain(noise(f"art/{D8}"), rehash("art", D8)),
        "eaee",
    ),
    (
        "graph-truncated-rehashed",
        "d8 graph cut in half, sha256 updated",
        chain(truncate(f"art/{D8}"), rehash("art", D8)),
        "eaee",
    ),
    (
        "graphs-swapped-rehashed",
        "d8 and d14 files swapped, sha256s updated",
        chain(
            move(f"art/{D8}", "art/t"),
            move(f"art/{D14}", f"art/{D8}"),
            move("art/t", f"art/{D14}"),
            rehash("art", D8),
            rehash("art", D14),
        ),
        "eeee",
    ),
    (
        "graph-symlink-outside",
        "d8 graph is a symlink to a copy outside the folder",
        chain(copy(f"art/{D8}", "outside.onnx"), remove(f"art/{D8}"), symlink("../outside.onnx", f"art/{D8}")),
        "eeee",
    ),
    (
        "graph-symlink-inside",
        "d8 graph is a symlink to a copy inside the folder",
        chain(copy(f"art/{D8}", "art/copy.onnx"), remove(f"art/{D8}"), symlink("copy.onnx", f"art/{D8}")),
        "aaa-",
    ),
    ("extra-unlisted-file", "a user file in the export folder", put("art/my-notes.txt", "mine\n"), "ooo-"),
    ("extra-unlisted-onnx", "an unlisted .onnx in the folder", copy(f"art/{D8}", "art/extra.onnx"), "ooo-"),
    (
        "selector-data-path-outside",
        "selector data.path = ../x.data",
        chain(
            copy(f"art/{SELDATA}", "x.data"),
            edit_json(MANIFEST, lambda d: d["artifacts"][-1]["data"].update(path="../x.data")),
        ),
        "eeee",
    ),
    ("selector-data-missing", "selector .data deleted", remove(f"art/{SELDATA}"), "eeee"),
    ("selector-data-mismatch", "one byte of the selector .data changed", flip(f"art/{SELDATA}"), "eee-"),
]
QUICK_TAMPERS = {
    "bench/sha-mismatch",
    "calibrate/path-dotdot",
    "predict/graphs-swapped-rehashed",
    "bench/manifest-deep-nesting",
}


def _tamper_extra(label: str) -> Callable | None:
    if label == "manifest-invalid-utf8":
        return lambda sb: (sb / MANIFEST).write_bytes((sb / MANIFEST).read_bytes().replace(b'"arch"', b'"\xe9arch"'))
    if label == "manifest-bom":
        return lambda sb: (sb / MANIFEST).write_bytes(b"\xef\xbb\xbf" + (sb / MANIFEST).read_bytes())
    if label == "scale-1e400":

        def prep(sb: Path) -> None:
            data = json.loads((sb / MANIFEST).read_text())
            data["preprocess"]["scale"] = 12345.678
            (sb / MANIFEST).write_text(json.dumps(data).replace("12345.678", "1e400"))

        return prep
    return None


def tamper_cases() -> list:
    cases = []
    bases = {
        "calibrate": CALIBRATE,
        "bench": BENCH,
        "predict": PREDICT,
        "serve": ["serve", "--artifacts", "art", "--depth", "8", "--port", "{port}"],
    }
    for label, what, prep, expects in TAMPERS:
        prep = prep or _tamper_extra(label)
        selector = label.startswith("selector")
        for command, expect in zip(bases, expects):
            if expect == "-":
                continue
            args = list(bases[command])
            if selector and command in ("bench", "predict", "serve"):
                args = args + ["--selector"]
            family = "nonfinite" if label in ("mean-nan", "scale-inf", "scale-1e400", "depth-float-nan") else "tampered"
            if selector:
                family = "external-data"
            cases.append(
                Case(
                    name=f"{command}/{label}",
                    family=family,
                    command=command,
                    what=what,
                    args=args,
                    expect=EXPECT[expect],
                    kit=("art", "results", "profiles", "ckpt", "img"),
                    prep=prep,
                    replaced=outputs(command),
                    runner="serve" if command == "serve" else "plain",
                    timeout=30.0 if "fifo" in label else 40.0 if command == "serve" else 120.0,
                    quick=f"{command}/{label}" in QUICK_TAMPERS,
                )
            )
    return cases


def external_cases() -> list:
    """Graphs whose ONNX external data points outside the export folder (or is not listed in the manifest)."""
    variants = [
        (
            "d8-external-outside",
            "d8 weights moved to ../outside.bin (graph sha256 updated)",
            externalize("art", D8, "../outside.bin", "outside.bin"),
            "e",
            False,
        ),
        ("d8-external-absolute", "d8 weights in an absolute-path external file", None, "e", False),
        (
            "d8-external-unlisted",
            "d8 weights in an unlisted w.bin inside the folder",
            externalize("art", D8, "w.bin"),
            "a",
            False,
        ),
        (
            "d8-external-etc",
            "d8 external data location ../../../../../etc/hostname",
            externalize("art", D8, "../../../../../../../etc/hostname"),
            "e",
            False,
        ),
        (
            "selector-graph-reads-outside",
            "selector graph's external_data location rewritten to ../sel.data",
            relocate_selector_data("art", "../sel.data", "sel.data"),
            "e",
            True,
        ),
        (
            "selector-data-symlink-outside",
            "selector .data is a symlink to an identical file outside",
            chain(
                copy(f"art/{SELDATA}", "sel.data"), remove(f"art/{SELDATA}"), symlink("../sel.data", f"art/{SELDATA}")
            ),
            "e",
            True,
        ),
        (
            "selector-data-path-absolute",
            "selector data.path absolute",
            edit_json(MANIFEST, lambda d: d["artifacts"][-1]["data"].update(path="/etc/hostname")),
            "e",
            True,
        ),
        (
            "selector-data-truncated-rehashed",
            "selector .data cut in half, sha256 updated",
            chain(truncate(f"art/{SELDATA}"), rehash("art", SELDATA)),
            "e",
            True,
        ),
    ]

    def absolute(sb: Path) -> None:
        externalize("art", D8, str(sb / "abs.bin"), "abs.bin")(sb)

    cases = []
    for label, what, prep, expect, selector in variants:
        prep = prep or absolute
        commands = {
            "bench": BENCH + (["--selector"] if selector else []),
            "predict": PREDICT + (["--selector"] if selector else []),
        }
        if not selector:
            commands["calibrate"] = CALIBRATE
        for command, args in commands.items():
            bench_row_fails = command == "bench" and expect == "e"
            cases.append(
                Case(
                    name=f"{command}/{label}",
                    family="external-data",
                    command=command,
                    what=what,
                    args=args,
                    expect="any" if bench_row_fails else EXPECT[expect],
                    kit=("art", "profiles", "img"),
                    prep=prep,
                    replaced=outputs(command),
                    quick=label == "d8-external-outside" and command == "bench",
                    check=_bench_refused("r.json") if bench_row_fails else None,
                )
            )
    return cases


def _bench_refused(rel: str) -> Callable:
    """A bench that exits 0 on a graph reading outside its folder must at least record that row as failed."""

    def check(sb: Path, rec: dict) -> list:
        if rec["exit_code"] != 0:
            return []
        try:
            rows = json.loads((sb / rel).read_text())["rows"]
        except (OSError, ValueError, KeyError):
            return []
        return (
            []
            if any(r.get("status") == "error" for r in rows)
            else ["measured a graph that reads outside its folder (every row ok)"]
        )

    return check


PROFILE_VARIANTS = [
    ("syntax-error", "[profiles.quick\nthreads = ", "e"),
    ("empty-file", "", "e"),
    ("profiles-is-int", "profiles = 3\n", "e"),
    ("profile-is-string", '[profiles]\nquick = "x"\n', "e"),
    ("unknown-key", '[profiles.quick]\nextends = "x86-cpu"\nfoo = 1\n', "e"),
    ("min-iters-nan", '[profiles.quick]\nextends = "x86-cpu"\nmin_iters = nan\n', "e"),
    ("min-seconds-inf", '[profiles.quick]\nextends = "x86-cpu"\nmin_seconds = inf\n', "e"),
    ("max-cv-nan", '[profiles.quick]\nextends = "x86-cpu"\nmax_cv = nan\nmin_seconds = 0.01\n', "e"),
    ("warmup-seconds-neg-inf", '[profiles.quick]\nextends = "x86-cpu"\nwarmup_seconds = -inf\n', "e"),
    ("min-seconds-negative", '[profiles.quick]\nextends = "x86-cpu"\nmin_seconds = -1.0\n', "e"),
    ("warmup-iters-negative", '[profiles.quick]\nextends = "x86-cpu"\nwarmup_iters = -5\n', "e"),
    ("batch-sizes-empty", '[profiles.quick]\nextends = "x86-cpu"\nbatch_sizes = []\n', "e"),
    ("batch-sizes-zero", '[profiles.quick]\nextends = "x86-cpu"\nbatch_sizes = [0]\n', "e"),
    ("batch-sizes-string", '[profiles.quick]\nextends = "x86-cpu"\nbatch_sizes = ["a"]\n', "e"),
    ("batch-sizes-float", '[profiles.quick]\nextends = "x86-cpu"\nbatch_sizes = [1.5]\n', "e"),
    ("threads-zero", '[profiles.quick]\nextends = "x86-cpu"\nthreads = 0\n', "e"),
    ("threads-huge", '[profiles.quick]\nextends = "x86-cpu"\nthreads = 99999999999999999\n', "e"),
    ("precision-fp64", '[profiles.quick]\nextends = "x86-cpu"\nprecisions = ["fp64"]\n', "e"),
    ("backend-unknown", '[profiles.quick]\nbackend = "foo"\n', "e"),
    ("extends-unknown", '[profiles.quick]\nextends = "nope"\n', "e"),
    ("extends-self", '[profiles.quick]\nextends = "quick"\n', "e"),
    ("extends-cycle", '[profiles.quick]\nextends = "b"\n[profiles.b]\nextends = "quick"\n', "e"),
    ("accuracy-batch-zero", '[profiles.quick]\nextends = "x86-cpu"\naccuracy_batch = 0\n', "e"),
    ("min-seconds-1e300", '[profiles.quick]\nextends = "x86-cpu"\nmin_seconds = 1e300\n', "e"),
    ("warmup-seconds-1e300", '[profiles.quick]\nextends = "x86-cpu"\nwarmup_seconds = 1e300\n', "e"),
    ("min-iters-above-max", '[profiles.quick]\nextends = "x86-cpu"\nmin_iters = 1000000000000000000\n', "e"),
    ("duplicate-table", "[profiles.quick]\nthreads = 1\n[profiles.quick]\nthreads = 2\n", "e"),
    ("threads-negative", '[profiles.quick]\nextends = "x86-cpu"\nthreads = -1\n', "e"),
    ("provider-cuda", '[profiles.quick]\nextends = "x86-cpu"\nprovider = "cuda"\n', "e"),
    (
        "description-huge-unicode",
        '[profiles.quick]\nextends = "x86-cpu"\nmin_seconds = 0.01\nmin_iters = 5\nthreads = 1\nbatch_sizes = [1]\n'
        'description = "' + "✓" * 10000 + '"\n',
        "o",
    ),
]


def profile_cases() -> list:
    cases = []
    for label, text, expect in PROFILE_VARIANTS:
        cases.append(
            Case(
                f"bench/profiles-toml:{label}",
                "nonfinite" if any(k in label for k in ("nan", "inf")) else "profiles",
                "bench",
                f"profiles TOML: {label}",
                BENCH,
                EXPECT[expect],
                ("art", "profiles"),
                put("prof.toml", text),
                timeout=90.0,
                quick=label in ("syntax-error", "min-seconds-inf"),
            )
        )
    cases.append(
        Case(
            "bench/profiles-toml:binary",
            "profiles",
            "bench",
            "profiles TOML is binary garbage",
            BENCH,
            "error",
            ("art", "profiles"),
            noise("prof.toml"),
        )
    )
    cases.append(
        Case(
            "bench/profiles-toml:utf16",
            "profiles",
            "bench",
            "profiles TOML in UTF-16",
            BENCH,
            "error",
            ("art", "profiles"),
            put("prof.toml", PROFILES.encode("utf-16")),
        )
    )
    return cases


RES = "res.json"


def _row(field_path, value):
    def fn(data):
        row = data["rows"][0]
        obj = row
        for key in field_path[:-1]:
            obj = obj[key]
        obj[field_path[-1]] = value

    return fn


RESULT_VARIANTS = [
    ("array", put(RES, "[]"), "ee"),
    ("null", put(RES, "null"), "ee"),
    ("manifest-as-results", copy("art8/manifest.json", RES), "ee"),
    ("format-wrong", edit_json(RES, setter("format", "other")), "ee"),
    ("version-2", edit_json(RES, setter("version", 2)), "ee"),
    ("rows-not-list", edit_json(RES, setter("rows", {"a": 1})), "ee"),
    ("rows-empty", edit_json(RES, setter("rows", [])), "ee"),
    ("p50-string", edit_json(RES, _row(("latency_ms", "p50"), "fast")), "ee"),
    ("p50-nan", edit_json(RES, _row(("latency_ms", "p50"), float("nan"))), "ee"),
    ("p90-infinity", edit_json(RES, _row(("latency_ms", "p90"), float("inf"))), "ee"),
    ("p90-1e400", None, "ee"),
    ("p90-negative", edit_json(RES, _row(("latency_ms", "p90"), -1.0)), "ee"),
    ("samples-nan", edit_json(RES, _row(("samples_ms",), [float("nan")])), "ee"),
    ("top1-150", edit_json(RES, _row(("accuracy", "top1"), 150.0)), "ee"),
    ("top1-nan", edit_json(RES, _row(("accuracy", "top1"), float("nan"))), "ee"),
    ("depth-string", edit_json(RES, _row(("depth",), "x")), "ee"),
    ("latency-missing-on-ok-row", edit_json(RES, lambda d: d["rows"][0].pop("latency_ms")), "ee"),
    ("all-rows-error", edit_json(RES, lambda d: [r.update(status="error", error="boom") for r in d["rows"]]), "ee"),
    ("deep-nesting", put(RES, deep_json('{"format": "ddnn-deploy.bench", "version": 1, "deep": ')), "ee"),
    ("other-model", edit_json(RES, setter("artifacts", "checkpoint_sha256", "0" * 64)), "oe"),
    ("depth-not-exported", edit_json(RES, lambda d: [r.update(depth=99) for r in d["rows"]]), "oe"),
    (
        "latency-1e308",
        edit_json(
            RES,
            lambda d: [
                r["latency_ms"].update(p90=1e308, p95=1e308, p99=1e308, max=1e308)
                for r in d["rows"]
                if r.get("latency_ms")
            ],
        ),
        "ee",
    ),
]


def results_cases() -> list:
    cases = []
    for label, prep, expects in RESULT_VARIANTS:
        if prep is None:  # 1e400 parses to inf

            def prep(sb: Path) -> None:
                text = (sb / RES).read_text()
                data = json.loads(text)
                data["rows"][0]["latency_ms"]["p90"] = 12345.678
                (sb / RES).write_text(json.dumps(data).replace("12345.678", "1e400"))

        family = "nonfinite" if any(k in label for k in ("nan", "inf", "1e400")) else "results"
        for command, expect in zip(("pick", "predict"), expects):
            args = (
                ["pick", "--results", RES, "--budget-ms", "1000"]
                if command == "pick"
                else ["predict", "--artifacts", "art8", "--results", RES, "--budget-ms", "1000", "img.png"]
            )
            cases.append(
                Case(
                    f"{command}/results:{label}",
                    family,
                    command,
                    f"results.json: {label}",
                    args,
                    EXPECT[expect],
                    ("results", "art8", "img"),
                    prep,
                    quick=command == "pick" and label in ("p50-nan", "deep-nesting"),
                )
            )
    return cases


TEST_IMAGES, TEST_LABELS = "fm/t10k-images-idx3-ubyte", "fm/t10k-labels-idx1-ubyte"
TRAIN_IMAGES, TRAIN_LABELS = "fm/train-images-idx3-ubyte", "fm/train-labels-idx1-ubyte"


def _idx_all(fn: Callable) -> Callable:
    """Apply ``fn(sb, rel, kind)`` to the four IDX files (kind: images | labels)."""

    def prep(sb: Path) -> None:
        for rel in (TEST_IMAGES, TRAIN_IMAGES):
            fn(sb, rel, "images")
        for rel in (TEST_LABELS, TRAIN_LABELS):
            fn(sb, rel, "labels")

    return prep


def _idx_header(count: int | None = None, dims: tuple | None = None, magic: int | None = None) -> Callable:
    def fn(sb: Path, rel: str, kind: str) -> None:
        array = read_idx_gz(sb / rel)
        shape = list(array.shape)
        if count is not None:
            shape[0] = count
        if dims is not None and kind == "images":
            shape[1:] = dims
        data = idx_bytes(array, dims=tuple(shape))
        if magic is not None:
            data = struct.pack(">I", magic) + data[4:]
        (sb / rel).write_bytes(data)

    return fn


IDX_VARIANTS = [
    (
        "empty-dir",
        "no IDX files at all",
        chain(*(remove(r) for r in (TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS))),
    ),
    ("labels-missing", "labels files deleted", chain(remove(TEST_LABELS), remove(TRAIN_LABELS))),
    ("images-empty", "images files empty", chain(put(TEST_IMAGES, b""), put(TRAIN_IMAGES, b""))),
    ("images-truncated", "images files cut in half", chain(truncate(TEST_IMAGES), truncate(TRAIN_IMAGES))),
    (
        "bad-magic",
        "images files with a wrong magic number",
        _idx_all(lambda sb, rel, kind: kind == "images" and _idx_header(magic=0x0000BEEF)(sb, rel, kind)),
    ),
    (
        "count-larger-than-data",
        "header claims 10x the images present",
        _idx_all(lambda sb, rel, kind: kind == "images" and _idx_header(count=5120)(sb, rel, kind)),
    ),
    (
        "label-count-mismatch",
        "fewer labels than images",
        _idx_all(
            lambda sb, rel, kind: kind == "labels" and (sb / rel).write_bytes(idx_bytes(read_idx_gz(sb / rel)[:10]))
        ),
    ),
    (
        "labels-out-of-range",
        "labels are 200 (10 classes)",
        _idx_all(
            lambda sb, rel, kind: (
                kind == "labels"
                and (sb / rel).write_bytes(idx_bytes(np.full(len(read_idx_gz(sb / rel)), 200, np.uint8)))
            )
        ),
    ),
    (
        "corrupt-gzip",
        "a .gz that is not gzip (and no raw file)",
        chain(
            move(TEST_IMAGES, TEST_IMAGES + ".gz"),
            move(TRAIN_IMAGES, TRAIN_IMAGES + ".gz"),
            noise(TEST_IMAGES + ".gz"),
            noise(TRAIN_IMAGES + ".gz"),
        ),
    ),
    (
        "huge-header-dims",
        "header claims 4e9 images of 65535x65535",
        _idx_all(
            lambda sb, rel, kind: (
                kind == "images" and _idx_header(count=4_000_000_000, dims=(65535, 65535))(sb, rel, kind)
            )
        ),
    ),
    (
        "wrong-image-size",
        "32x32 images (the model takes 28x28)",
        _idx_all(
            lambda sb, rel, kind: (
                kind == "images"
                and (sb / rel).write_bytes(idx_bytes(np.zeros((len(read_idx_gz(sb / rel)), 32, 32), np.uint8)))
            )
        ),
    ),
    (
        "zero-images",
        "valid headers, 0 images",
        _idx_all(lambda sb, rel, kind: (sb / rel).write_bytes(idx_bytes(read_idx_gz(sb / rel)[:0]))),
    ),
    (
        "files-are-dirs",
        "the IDX names are folders",
        chain(*(chain(remove(r), mkdirs(r)) for r in (TEST_IMAGES, TRAIN_IMAGES))),
    ),
    (
        "symlink-loop",
        "images files are symlinks to themselves",
        chain(*(chain(remove(r), symlink(Path(r).name, r)) for r in (TEST_IMAGES, TRAIN_IMAGES))),
    ),
]


def _flatten_images(sb: Path) -> None:
    """The image folder without class sub-folders (every image directly in it)."""
    for path in list((sb / "images").rglob("*.png")):
        shutil.move(str(path), sb / "images" / f"{path.parent.name}-{path.name}")
    for folder in [d for d in (sb / "images").iterdir() if d.is_dir()]:
        shutil.rmtree(folder)


def quick_profile_with(lines: str) -> Callable:
    """prof.toml whose `quick` profile also sets ``lines``."""
    return put("prof.toml", PROFILES.replace("[profiles.quick]\n", "[profiles.quick]\n" + lines, 1))


def dataset_cases() -> list:
    cases = []
    idx_commands = {
        "eval": ["eval", "--ckpt", "tiny.pt", "--data", "fm", "--limit", "64"],
        "bench": with_opt(BENCH, "--dataset", "fashion-mnist") + ["--data", "fm", "--limit", "64"],
        "train": TRAIN,
    }
    for label, what, prep in IDX_VARIANTS:
        for command, args in idx_commands.items():
            # bench with out-of-range labels only reports a low accuracy; train builds its model for the images it
            # is given, so 32x32 images are a legitimate (if odd) training set
            lenient = (label, command) in (("labels-out-of-range", "bench"), ("wrong-image-size", "train"))
            expect = "any" if lenient else "error"
            cases.append(
                Case(
                    f"{command}/idx:{label}",
                    "datasets",
                    command,
                    f"Fashion-MNIST IDX: {what}",
                    args,
                    expect,
                    ("ckpt", "fm", "art", "profiles"),
                    prep,
                    timeout=90.0,
                    quick=command == "eval" and label == "huge-header-dims",
                )
            )
    cifar = [
        ("empty-dir", mkdirs("cif"), "e"),
        (
            "python-pickle-version",
            chain(
                mkdirs("cif"),
                put("cif/test_batch", pickle.dumps({"data": [1]})),
                put("cif/data_batch_1", pickle.dumps({"data": [1]})),
            ),
            "e",
        ),
        (
            "truncated-bin",
            chain(
                mkdirs("cif"), noise("cif/test_batch.bin", 3073 * 5 + 100), noise("cif/data_batch_1.bin", 3073 * 3 + 7)
            ),
            "e",
        ),
    ]
    for label, prep, expect in cifar:
        cases.append(
            Case(
                f"eval/cifar10:{label}",
                "datasets",
                "eval",
                f"CIFAR-10 binary folder: {label}",
                ["eval", "--ckpt", "tiny.pt", "--dataset", "cifar10", "--data", "cif"],
                EXPECT[expect],
                ("ckpt",),
                prep,
            )
        )

    img = np.full((28, 28), 128, np.uint8)
    good = png_bytes(img)
    folder_variants = [
        ("valid", None, "oo"),
        ("empty-folder", chain(remove("images"), mkdirs("images")), "ee"),
        ("corrupt-jpeg-among-pngs", put("images/c3/bad.jpg", b"\xff\xd8\xff\xe0" + bytes(200)), "aa"),
        ("truncated-png", put("images/c2/cut.png", good[: len(good) // 2]), "aa"),
        ("all-zero-byte-images", lambda sb: [p.write_bytes(b"") for p in (sb / "images").rglob("*.png")], "ee"),
        ("text-named-png", lambda sb: [p.write_text("not an image") for p in (sb / "images").rglob("*.png")], "ee"),
        ("decompression-bomb", put("images/c1/bomb.png", bomb_png()), "aa"),
        ("eleven-classes", copy("images/c9", "images/c99"), "aa"),
        (
            "rgba-16bit-cmyk",
            chain(
                put("images/c0/rgba.png", png_bytes(np.zeros((28, 28, 4), np.uint8))),
                put("images/c0/cmyk.jpg", png_bytes(np.zeros((28, 28, 4), np.uint8), "CMYK", "JPEG")),
                put("images/c0/i16.png", png_bytes(np.zeros((28, 28), np.uint16))),
            ),
            "oo",
        ),
        (
            "one-pixel-and-huge-aspect",
            chain(
                put("images/c0/p.png", png_bytes(np.zeros((1, 1), np.uint8))),
                put("images/c0/w.png", png_bytes(np.zeros((1, 3000), np.uint8))),
            ),
            "aa",
        ),
        ("symlink-loop-dir", symlink(".", "images/c0/loop"), "aa"),
        ("flat-files-only", _flatten_images, "ea"),
    ]
    for label, prep, expects in folder_variants:
        for command, expect in zip(("bench", "calibrate"), expects):
            args = (
                with_opt(BENCH, "--dataset", "images")
                if command == "bench"
                else with_opt(CALIBRATE, "--samples", "32") + ["--dataset", "images"]
            )
            cases.append(
                Case(
                    f"{command}/image-folder:{label}",
                    "datasets",
                    command,
                    f"image folder: {label}",
                    args,
                    EXPECT[expect],
                    ("art", "profiles", "images"),
                    prep,
                    replaced=outputs(command),
                    timeout=90.0,
                    quick=command == "bench" and label == "corrupt-jpeg-among-pngs",
                )
            )
    for label, prep in (
        ("corrupt-jpeg", put("imgroot/train/c3/bad.jpg", b"\xff\xd8\xff" + bytes(100))),
        ("empty-root", chain(remove("imgroot"), mkdirs("imgroot"))),
    ):
        cases.append(
            Case(
                f"train/imagefolder:{label}",
                "datasets",
                "train",
                f"train --dataset imagefolder: {label}",
                with_opt(with_opt(TRAIN, "--data", "imgroot"), "--dataset", "imagefolder"),
                "any" if label == "corrupt-jpeg" else "error",
                ("imgroot",),
                prep,
                replaced=("*",),
                timeout=90.0,
            )
        )

    n = 64
    good_images = np.zeros((n, 1, 28, 28), np.uint8)
    npz_variants = [
        ("valid", copy("calib.npz", "c.npz"), "o"),
        ("empty-npz", npz("c.npz"), "e"),
        ("no-images-key", npz("c.npz", pixels=good_images), "e"),
        ("images-float64", npz("c.npz", images=good_images.astype(np.float64)), "a"),
        ("images-nan", npz("c.npz", images=np.full((n, 1, 28, 28), np.nan, np.float32)), "e"),
        ("images-uint16-over-255", npz("c.npz", images=np.full((n, 1, 28, 28), 60000, np.uint16)), "e"),
        ("wrong-shape-3x32x32", npz("c.npz", images=np.zeros((n, 3, 32, 32), np.uint8)), "e"),
        ("one-dimensional", npz("c.npz", images=np.zeros(100, np.uint8)), "e"),
        ("zero-samples", npz("c.npz", images=np.zeros((0, 1, 28, 28), np.uint8)), "e"),
        ("object-array-pickle", npz("c.npz", images=np.array([{"a": 1}] * 4, dtype=object)), "e"),
        ("not-a-zip", noise("c.npz"), "e"),
        ("truncated-zip", chain(copy("calib.npz", "c.npz"), truncate("c.npz")), "e"),
        ("zip-member-corrupt", None, "e"),
    ]
    for label, prep, expect in npz_variants:
        if prep is None:

            def prep(sb: Path) -> None:
                with zipfile.ZipFile(sb / "c.npz", "w", zipfile.ZIP_STORED) as z:
                    z.writestr("images.npy", b"\x93NUMPY\x01\x00" + bytes(50))

        cases.append(
            Case(
                f"calibrate/npz:{label}",
                "nonfinite" if label == "images-nan" else "datasets",
                "calibrate",
                f".npz calibration sample: {label}",
                CALIBRATE + ["--dataset", "c.npz"],
                EXPECT[expect],
                ("art", "npz"),
                prep,
                replaced=CAL_OUT,
                quick=label == "object-array-pickle",
            )
        )

    rgb = np.zeros((40, 60, 3), np.uint8)
    predict_variants = [
        ("missing", "nowhere.png", None, "e"),
        ("directory", "images", None, "e"),
        ("empty-file", "e.png", put("e.png", b""), "e"),
        ("random-bytes", "r.png", noise("r.png"), "e"),
        ("truncated-png", "t.png", truncate("img.png", "t.png"), "e"),
        ("corrupt-jpeg", "c.jpg", put("c.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(300)), "e"),
        ("text-as-png", "txt.png", put("txt.png", "hello"), "e"),
        ("decompression-bomb", "bomb.png", put("bomb.png", bomb_png()), "e"),
        (
            "npy-object-pickle",
            "o.npy",
            lambda sb: np.save(sb / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
            "e",
        ),
        ("npy-5d", "f.npy", lambda sb: np.save(sb / "f.npy", np.zeros((1, 1, 1, 28, 28), np.uint8)), "e"),
        ("npy-nan", "n.npy", lambda sb: np.save(sb / "n.npy", np.full((28, 28), np.nan, np.float32)), "e"),
        ("npy-inf", "i.npy", lambda sb: np.save(sb / "i.npy", np.full((28, 28), np.inf, np.float32)), "e"),
        ("npy-empty-batch", "z.npy", lambda sb: np.save(sb / "z.npy", np.zeros((0, 1, 28, 28), np.uint8)), "e"),
        (
            "npy-truncated",
            "t.npy",
            lambda sb: (np.save(sb / "t.npy", np.zeros((28, 28), np.uint8)), truncate("t.npy")(sb)),
            "e",
        ),
        (
            "npy-negative-pixels",
            "neg.npy",
            lambda sb: np.save(sb / "neg.npy", np.full((28, 28), -5.0, np.float32)),
            "a",
        ),
        ("npy-int64-huge", "big.npy", lambda sb: np.save(sb / "big.npy", np.full((28, 28), 2**62, np.int64)), "e"),
        ("rgb-jpeg", "rgb.jpg", put("rgb.jpg", png_bytes(rgb, fmt="JPEG")), "o"),
        ("png-16bit", "i16.png", put("i16.png", png_bytes(np.zeros((28, 28), np.uint16))), "a"),
        ("spaces-unicode", "my pics/ïmg ✓.png", copy("img.png", "my pics/ïmg ✓.png"), "o"),
        ("dash", "-", None, "e"),
        ("fifo", "p.png", fifo("p.png"), "e"),
        ("dev-zero-npy", "/dev/null", None, "e"),
    ]
    for label, path, prep, expect in predict_variants:
        nonfinite = label in ("npy-nan", "npy-inf")
        cases.append(
            Case(
                f"predict/image:{label}",
                "nonfinite" if nonfinite else "datasets",
                "predict",
                f"IMAGE {label}",
                ["predict", "--artifacts", "art", "img.png", path],
                EXPECT[expect],
                ("art", "img", "images"),
                prep,
                timeout=30.0 if label == "fifo" else 120.0,
                quick=label == "corrupt-jpeg",
            )
        )
    return cases


def overwrite_cases() -> list:
    c = []

    def add(name, command, what, args, expect, kit, prep=None, replaced=(), check=None, quick=False, codes=None):
        c.append(
            Case(
                name,
                "overwrite",
                command,
                what,
                args,
                EXPECT[expect],
                kit,
                prep,
                replaced,
                (),
                check,
                "plain",
                120.0,
                codes,
                quick,
            )
        )

    bk = ("art", "profiles", "ckpt", "results")
    for label, target, expect in (
        ("manifest", "art/manifest.json", "e"),
        ("graph", f"art/{D8}", "e"),
        ("checkpoint", "tiny.pt", "e"),
        ("user-text-file", "notes.txt", "e"),
        ("profiles-toml", "prof.toml", "e"),
    ):
        add(
            f"bench/results-onto:{label}",
            "bench",
            f"--results points at the {label}",
            with_opt(BENCH, "--results", target),
            expect,
            bk,
            quick=label == "manifest",
        )
    add(
        "bench/results-onto:unrelated-json",
        "bench",
        "--results points at an unrelated user JSON",
        with_opt(BENCH, "--results", "user.json"),
        "e",
        bk,
        put("user.json", '{"my": "data"}'),
    )
    add(
        "bench/results-onto:default-name-user-file",
        "bench",
        "default --results (results.json) is a user file",
        [a for a in BENCH if a not in ("--results", "r.json")],
        "e",
        bk,
        put("results.json", '{"mine": 1}'),
    )
    add(
        "bench/results-companion-csv-is-user-file",
        "bench",
        "out.json's companion out.csv is a user file",
        with_opt(BENCH, "--results", "out.json"),
        "a",
        bk,
        put("out.csv", "my,spreadsheet\n1,2\n"),
        ("out.json",),
    )
    add(
        "bench/results-companion-png-is-user-file",
        "bench",
        "out.json's companion out.png is a user file",
        with_opt(with_opt(BENCH, "--results", "out.json"), "--dataset", "fashion-mnist")
        + ["--data", "fm", "--limit", "64"],
        "a",
        bk + ("fm",),
        put("out.png", png_bytes(np.zeros((8, 8), np.uint8))),
        ("out.json", "out.csv"),
    )
    add(
        "bench/results-onto:earlier-results",
        "bench",
        "--results replaces an earlier results file (asked for)",
        with_opt(BENCH, "--results", "res.json"),
        "o",
        bk,
        replaced=("res.*",),
        check=valid("results", "res.json"),
    )
    add(
        "bench/results-symlink-to-user-file",
        "bench",
        "--results is a symlink to a user file",
        with_opt(BENCH, "--results", "link.json"),
        "a",
        bk,
        symlink("notes.txt", "link.json"),
        ("link.json", "link.*"),
    )
    add(
        "bench/results-inside-artifacts",
        "bench",
        "--results inside the export folder (README example)",
        with_opt(BENCH, "--results", "art/results.json"),
        "o",
        bk,
    )
    add(
        "bench/results-onto:user-text-file-force",
        "bench",
        "--results a user file with --force (asked for)",
        with_opt(BENCH, "--results", "notes.txt") + ["--force"],
        "o",
        bk,
        None,
        ("notes.*",),
    )
    add(
        "bench/results-onto:manifest-force",
        "bench",
        "--results the export's manifest.json, even with --force",
        with_opt(BENCH, "--results", "art/manifest.json") + ["--force"],
        "e",
        bk,
    )
    add(
        "train/out-existing-checkpoint-force",
        "train",
        "--out an existing checkpoint with --force (asked for)",
        with_opt(TRAIN, "--out", "tiny.pt") + ["--force"],
        "o",
        ("fm", "ckpt"),
        None,
        ("tiny.pt",),
        valid("finished", "tiny.pt"),
    )
    add(
        "convert/out-existing-checkpoint-force",
        "convert",
        "--out an existing checkpoint with --force (asked for)",
        with_opt(CONVERT, "--out", "tiny.pt") + ["--force"],
        "o",
        ("ckpt",),
        None,
        ("tiny.pt",),
        valid("ckpt", "tiny.pt"),
    )

    ek = ("ckpt", "art", "art8")
    user_dir = chain(mkdirs("userdir"), put("userdir/thesis.tex", "my thesis\n"))
    add(
        "export/out-user-folder",
        "export",
        "--out a folder holding a user file, no --force",
        with_opt(EXPORT, "--out", "userdir"),
        "e",
        ek,
        user_dir,
        quick=True,
    )
    add(
        "export/out-user-folder-force",
        "export",
        "--out a folder holding a user file, --force: files no earlier manifest lists stay (README)",
        with_opt(EXPORT, "--out", "userdir") + ["--force"],
        "o",
        ek,
        user_dir,
    )
    add(
        "export/out-earlier-export-with-user-file-force",
        "export",
        "--force onto an earlier export holding a user file: the user file stays",
        with_opt(EXPORT, "--out", "art") + ["--force"],
        "o",
        ek,
        put("art/my-notes.txt", "mine\n"),
        ("art/manifest.json", "art/cifar_*"),
        valid("manifest", "art"),
    )
    add(
        "export/out-earlier-export",
        "export",
        "--out an earlier export, no --force",
        with_opt(EXPORT, "--out", "art"),
        "e",
        ek,
    )
    add(
        "export/out-earlier-export-force",
        "export",
        "--out an earlier export, --force",
        with_opt(EXPORT, "--out", "art") + ["--force"],
        "o",
        ek,
        replaced=("art/*",),
        check=valid("manifest", "art"),
    )
    add(
        "export/out-calibrated-export-force",
        "export",
        "--force onto an export with INT8 graphs and results",
        with_opt(EXPORT, "--out", "art8") + ["--force"],
        "o",
        ek,
        None,
        ("art8/*",),
        valid("manifest", "art8"),
    )
    add("export/out-a-file", "export", "--out is an existing file", with_opt(EXPORT, "--out", "notes.txt"), "e", ek)
    add(
        "export/out-a-file-force",
        "export",
        "--out is an existing file, --force",
        with_opt(EXPORT, "--out", "notes.txt") + ["--force"],
        "e",
        ek,
    )
    add("export/out-cwd", "export", "--out . (the working folder, user files)", with_opt(EXPORT, "--out", "."), "e", ek)
    add(
        "export/out-folder-holding-its-ckpt-force",
        "export",
        "--force onto the folder holding the checkpoint itself",
        ["export", "--ckpt", "d/tiny.pt", "--out", "d", "--depths", "8", "--no-simplify", "--no-progress", "--force"],
        "e",
        ek,
        chain(mkdirs("d"), move("tiny.pt", "d/tiny.pt")),
    )
    add(
        "export/out-cwd-force",
        "export",
        "--out . --force: the folder holding the checkpoint and user files",
        with_opt(EXPORT, "--out", ".") + ["--force"],
        "e",
        ek,
    )
    add(
        "export/out-equals-ckpt",
        "export",
        "--out is the checkpoint file",
        with_opt(EXPORT, "--out", "tiny.pt"),
        "e",
        ek,
    )
    add(
        "export/out-symlink-to-user-folder",
        "export",
        "--out is a symlink to a folder with user files, no --force",
        with_opt(EXPORT, "--out", "ulink"),
        "e",
        ek,
        chain(user_dir, symlink("userdir", "ulink")),
    )

    add(
        "train/out-existing-checkpoint",
        "train",
        "--out an existing finished checkpoint, no --resume",
        with_opt(TRAIN, "--out", "tiny.pt"),
        "e",
        ("fm", "ckpt"),
        quick=True,
    )
    for label, target in (
        ("user-text-file", "notes.txt"),
        ("manifest", "art/manifest.json"),
        ("results", "res.json"),
        ("symlink-to-user-file", "link.pt"),
    ):
        add(
            f"train/out-onto:{label}",
            "train",
            f"--out is the {label}",
            with_opt(TRAIN, "--out", target),
            "e",
            ("fm", "art", "results"),
            symlink("notes.txt", "link.pt") if "symlink" in label else None,
        )
    add(
        "convert/out-existing-checkpoint",
        "convert",
        "--out an existing checkpoint",
        with_opt(CONVERT, "--out", "tiny.pt"),
        "e",
        ("ckpt",),
    )
    for label, target in (("user-text-file", "notes.txt"), ("manifest", "art/manifest.json")):
        add(
            f"convert/out-onto:{label}",
            "convert",
            f"--out is the {label}",
            with_opt(CONVERT, "--out", target),
            "e",
            ("art",),
        )
    add(
        "convert/out-equals-weights",
        "convert",
        "--out is the --weights file itself",
        with_opt(CONVERT, "--out", "weights/ok.pth") + ["--weights", "weights/ok.pth"],
        "e",
        ("weights",),
    )
    add(
        "demo/out-user-folder",
        "demo",
        "--out a folder holding a user file, no --force",
        ["demo", "--steps", "export", "--out", "userdir"],
        "e",
        (),
        user_dir,
    )
    add(
        "calibrate/user-file-in-folder",
        "calibrate",
        "a user file inside the export folder survives calibrate",
        CALIBRATE,
        "o",
        ("art",),
        put("art/my-notes.txt", "mine\n"),
        ("art/manifest.json", "art/*.int8-*"),
    )
    add(
        "calibrate/unlisted-int8-lookalike",
        "calibrate",
        "an unlisted user file named like an INT8 graph survives",
        CALIBRATE,
        "o",
        ("art",),
        copy(f"art/{D8}", "art/cifar_resnet20-d8.int8-cpu-deadbeef.onnx"),
        ("art/manifest.json",),
        quick=True,
    )

    add(
        "calibrate/recalibrate-replaces-int8",
        "calibrate",
        "calibrate again: superseded INT8 files replaced (asked)",
        with_opt(CALIBRATE, "--artifacts", "art8") + ["--target", "tensorrt"],
        "o",
        ("art8",),
        None,
        ("art8/manifest.json", "art8/*.int8-*"),
        checks(valid("manifest", "art8"), unlisted_int8("art8")),
    )
    return c


def concurrency_cases() -> list:
    def case(name, what, procs, kit, check, poll=None, may_change=("*",), quick=False):
        return Case(
            name,
            "concurrency",
            name.split("/")[0],
            what,
            procs[0][1],
            "any",
            kit,
            None,
            (),
            may_change,
            check,
            "concurrent",
            240.0,
            None,
            quick,
            {"procs": procs, "poll": poll},
        )

    ex = ["export", "--ckpt", "tiny.pt", "--out", "art", "--no-simplify", "--no-progress", "--force"]
    return [
        case(
            "export/two-at-once-same-out",
            "two exports --force to the same folder at once",
            [(0.0, ex + ["--depths", "8"]), (0.4, ex + ["--depths", "14"])],
            ("ckpt", "art"),
            valid("manifest", "art"),
        ),
        case(
            "calibrate/two-at-once",
            "two calibrations of the same folder at once",
            [(0.0, CALIBRATE), (0.3, CALIBRATE + ["--target", "tensorrt"])],
            ("art",),
            checks(valid("manifest", "art"), unlisted_int8("art")),
            quick=True,
        ),
        case(
            "calibrate/while-bench-runs",
            "calibrate the folder a bench is measuring",
            [
                (0.0, with_opt(with_opt(BENCH, "--artifacts", "art8"), "--precision", "fp32,int8")),
                (1.5, with_opt(CALIBRATE, "--artifacts", "art8") + ["--target", "tensorrt"]),
            ],
            ("art8", "profiles"),
            checks(valid("manifest", "art8"), unlisted_int8("art8")),
        ),
        case(
            "bench/two-at-once-same-results",
            "two benches writing the same results file",
            [(0.0, BENCH), (0.3, with_opt(BENCH, "--precision", "fp32"))],
            ("art", "profiles"),
            valid("results", "r.json"),
        ),
        case(
            "pick/while-bench-rewrites-results",
            "pick reads results.json again and again while bench rewrites it",
            [(0.0, with_opt(with_opt(BENCH, "--artifacts", "art8"), "--results", "res.json"))],
            ("art8", "profiles", "results"),
            valid("results", "res.json"),
            poll=["pick", "--results", "res.json", "--budget-ms", "1000"],
        ),
        case(
            "predict/while-export-replaces-folder",
            "predict again and again while export --force replaces the folder",
            [(0.0, ex)],
            ("ckpt", "art", "img"),
            valid("manifest", "art"),
            poll=["predict", "--artifacts", "art", "img.png"],
        ),
        case(
            "train/two-at-once-same-out",
            "two trainings writing the same checkpoint",
            [(0.0, with_opt(TRAIN, "--epochs", "2")), (0.5, with_opt(TRAIN, "--seed", "1"))],
            ("fm",),
            valid("ckpt", "out.pt"),
        ),
        case(
            "convert/two-at-once-same-out",
            "two converts writing the same checkpoint",
            [(0.0, CONVERT), (0.2, with_opt(CONVERT, "--seed", "1"))],
            (),
            valid("ckpt", "conv.pt"),
        ),
        case(
            "export/two-at-once-different-out",
            "two exports into sibling folders at once",
            [(0.0, with_opt(ex, "--out", "e1")), (0.2, with_opt(ex, "--out", "e2"))],
            ("ckpt",),
            valid("manifest", "e1", "e2"),
        ),
        case(
            "export/force-while-calibrate-runs",
            "export --force replaces the folder a calibration is writing",
            [(0.0, CALIBRATE), (0.3, ex)],
            ("ckpt", "art"),
            checks(valid("manifest", "art"), unlisted_int8("art")),
        ),
    ]


def resume_cases() -> list:
    def case(name, what, args, expect, kit=("fm", "partial"), prep=None, replaced=(), check=None, quick=False):
        return Case(
            f"train/resume:{name}",
            "resume",
            "train",
            what,
            args,
            EXPECT[expect],
            kit,
            prep,
            replaced,
            (),
            check,
            timeout=120.0,
            quick=quick,
        )

    R = RESUME
    return [
        case("no-checkpoint-yet", "--resume with nothing at --out", with_opt(R, "--out", "none.pt"), "e"),
        case("finished-checkpoint", "--resume a finished run", with_opt(R, "--out", "tiny.pt"), "e", ("fm", "ckpt")),
        case(
            "unfinished-same-settings",
            "--resume the unfinished run with its own settings",
            R,
            "o",
            replaced=("partial.pt",),
            check=valid("finished", "partial.pt"),
        ),
        case("depths-changed", "--resume with other --depths", with_opt(R, "--depths", "8"), "e"),
        case("width-changed", "--resume with other --width", with_opt(R, "--width", "8"), "e", quick=True),
        case("arch-changed", "--resume with another --arch", with_opt(R, "--arch", "cifar_resnet32"), "e"),
        case("mode-changed", "--resume an EKD run in --mode ce", R + ["--mode", "ce"], "e"),
        case(
            "dataset-changed",
            "--resume on another dataset",
            with_opt(with_opt(R, "--dataset", "cifar10"), "--data", "fm"),
            "e",
        ),
        case("lr-changed", "--resume with another --lr", with_opt(R, "--lr", "0.05"), "a", replaced=("partial.pt",)),
        case(
            "epochs-changed",
            "--resume with fewer --epochs",
            with_opt(R, "--epochs", "2"),
            "a",
            replaced=("partial.pt",),
        ),
        case(
            "batch-size-changed",
            "--resume with another --batch-size",
            with_opt(R, "--batch-size", "32"),
            "a",
            replaced=("partial.pt",),
        ),
        case("truncated-checkpoint", "--resume a truncated checkpoint", R, "e", prep=truncate("partial.pt")),
        case("random-bytes", "--resume random bytes", R, "e", prep=noise("partial.pt")),
        case(
            "results-file",
            "--resume where --out is a results JSON",
            with_opt(R, "--out", "res.json"),
            "e",
            ("fm", "results"),
        ),
        case(
            "manifest-file",
            "--resume where --out is a manifest",
            with_opt(R, "--out", "art/manifest.json"),
            "e",
            ("fm", "art"),
        ),
        case(
            "converted-checkpoint",
            "--resume a convert-made checkpoint (never trained)",
            with_opt(R, "--out", "conv.pt"),
            "e",
            ("fm", "conv"),
        ),
        case(
            "malicious-pickle",
            "--resume a malicious pickle",
            with_opt(R, "--out", "weights/evil.pth"),
            "e",
            ("fm", "weights"),
            check=no_pwned,
        ),
        case(
            "with-init",
            "--resume together with --init",
            R + ["--init", "tiny.pt"],
            "a",
            ("fm", "partial", "ckpt"),
            replaced=("partial.pt",),
        ),
        case("individual-mode", "--resume --mode individual onto an EKD checkpoint", R + ["--mode", "individual"], "e"),
    ]


def bench_failure_cases() -> list:
    kit = ("art", "profiles", "art8", "ckpt", "fm", "images")
    c = []

    def add(name, what, args, expect, prep=None, codes=None, check=None, may_change=(), quick=False, timeout=120.0):
        c.append(
            Case(
                f"bench/{name}",
                "bench-failure",
                "bench",
                what,
                args,
                EXPECT[expect],
                kit,
                prep,
                ("r.*",),
                may_change,
                check,
                "plain",
                timeout,
                codes,
                quick,
            )
        )

    no_sel = chain(
        remove(f"art/{SEL}"),
        remove(f"art/{SELDATA}"),
        edit_json(MANIFEST, lambda d: d.update(artifacts=[a for a in d["artifacts"] if a["kind"] != "selector"])),
    )
    batch_two = put("prof.toml", PROFILES.replace("batch_sizes = [1]", "batch_sizes = [2]", 1))
    every_row_fails = chain(no_sel, static_batch("art", D8), static_batch("art", D14), batch_two)
    add(
        "every-row-fails",
        "every graph fails at run time (static batch 1, profile batch 2): exit 9, results still written",
        BENCH,
        "e",
        every_row_fails,
        None,
        written_if(9, "r.json"),
        ("r.*",),
        True,
    )
    add(
        "one-row-fails",
        "one graph fails at run time: the sweep goes on, records the failed row (exit 10, or 0 as documented)",
        BENCH,
        "a",
        chain(static_batch("art", D8), batch_two),
        (0, 10),
        written_if(10, "r.json", also_ok=True),
    )
    add(
        "precision-int8-not-calibrated",
        "--precision int8 on an FP32-only export",
        with_opt(BENCH, "--precision", "int8"),
        "e",
    )
    add("precision-fp64", "--precision fp64", with_opt(BENCH, "--precision", "fp64"), "e")
    add("precision-empty", "--precision ''", with_opt(BENCH, "--precision", ""), "e")
    add("precision-comma", "--precision ','", with_opt(BENCH, "--precision", ","), "e")
    add("precision-duplicate", "--precision fp32,fp32", with_opt(BENCH, "--precision", "fp32,fp32"), "a")
    add("depths-not-exported", "--depths 99", with_opt(BENCH, "--depths", "99"), "e")
    add("depths-garbage", "--depths abc", with_opt(BENCH, "--depths", "abc"), "e")
    add("depths-empty", "--depths ''", with_opt(BENCH, "--depths", ""), "a")
    add("device-cuda", "--device cuda without a GPU", with_opt(BENCH, "--device", "cuda"), "e", codes=(5,))
    add("device-jetson", "--device jetson without TensorRT", with_opt(BENCH, "--device", "jetson"), "e", codes=(5,))
    add("device-unknown", "--device nope", with_opt(BENCH, "--device", "nope"), "e", codes=(2,))
    add("selector-missing", "--selector on an export without a selector graph", BENCH + ["--selector"], "e", no_sel)
    add(
        "dataset-cifar10-absent",
        "--dataset cifar10 (no data)",
        with_opt(BENCH, "--dataset", "cifar10"),
        "e",
        codes=(4,),
    )
    add(
        "dataset-unknown-name",
        "--dataset imagenet (no such name or folder)",
        with_opt(BENCH, "--dataset", "imagenet"),
        "e",
    )
    add(
        "budget-nothing-fits",
        "--budget-ms 1e-9: results written, then exit 7",
        BENCH + ["--budget-ms", "1e-9"],
        "e",
        None,
        (7,),
        valid("results", "r.json"),
        ("r.*",),
    )
    torch_backend = quick_profile_with('backend = "torch"\n')
    add("torch-backend-no-ckpt", "a torch-backend profile without --ckpt", BENCH, "e", torch_backend)
    add(
        "torch-backend-with-ckpt",
        "a torch-backend profile with --ckpt",
        BENCH + ["--ckpt", "tiny.pt"],
        "a",
        torch_backend,
    )
    add(
        "provider-tensorrt",
        "a profile with provider tensorrt (onnxruntime CPU only here)",
        BENCH,
        "e",
        quick_profile_with('provider = "tensorrt"\n'),
        (5,),
    )
    add("json-stdout", "--json prints JSON (only) on stdout", BENCH + ["--json"], "o", check=json_stdout)
    add("image-folder-accuracy", "--dataset a valid image folder", with_opt(BENCH, "--dataset", "images"), "o")
    add(
        "limit-one",
        "--limit 1 image",
        with_opt(BENCH, "--dataset", "fashion-mnist") + ["--data", "fm", "--limit", "1"],
        "o",
    )
    add(
        "int8-sha-mismatch-fp32-only",
        "an INT8 file changed while only FP32 is measured",
        with_opt(with_opt(BENCH, "--artifacts", "art8"), "--precision", "fp32"),
        "e",
        lambda sb: flip(f"art8/{int8_path(sb, 'art8', 8)}")(sb),
    )
    add(
        "engine-cache-is-file",
        "--engine-cache is a user file (unused by onnxruntime)",
        BENCH + ["--engine-cache", "notes.txt"],
        "a",
    )
    return c


def misc_cases() -> list:
    c = []

    def add(
        name,
        family,
        what,
        args,
        expect,
        kit=(),
        prep=None,
        codes=None,
        runner="plain",
        timeout=120.0,
        quick=False,
        extra=None,
    ):
        command = name.split("/")[0]
        c.append(
            Case(
                name,
                family,
                command,
                what,
                args,
                EXPECT[expect],
                kit,
                prep,
                outputs(command),
                (),
                None,
                runner,
                timeout,
                codes,
                quick,
                extra or {},
            )
        )

    depth_values = [
        ("empty", "", "a"),
        ("comma", ",", "a"),
        ("double-comma", "8,,14", "a"),
        ("abc", "abc", "e"),
        ("99", "99", "e"),
        ("minus-8", "-8", "e"),
        ("zero", "0", "e"),
        ("9-9-9", "9-9-9", "e"),
        ("1-1", "1-1", "e"),
        ("duplicate", "8,8", "a"),
        ("fullwidth-digit", "８", "a"),
        ("space-separated", "8 14", "a"),
        ("1e1", "1e1", "e"),
        ("huge", HUGE[int], "e"),
    ]
    targets = {
        "info": (["info", "--arch", "cifar_resnet20"], (), None),
        "eval": (
            ["eval", "--ckpt", "tiny.pt", "--data", "fm", "--limit", "64"],
            ("ckpt", "fm"),
            ("abc", "99", "zero", "1-1", "empty", "huge"),
        ),
        "export": (EXPORT, ("ckpt",), ("abc", "99", "zero", "9-9-9", "duplicate", "huge")),
        "calibrate": (CALIBRATE, ("art",), ("abc", "99", "zero", "minus-8", "empty", "huge")),
        "bench": (BENCH, ("art", "profiles"), ("99", "zero", "minus-8", "fullwidth-digit", "huge")),
        "train": (TRAIN, ("fm",), ("abc", "99", "1-1", "duplicate")),
        "convert": (CONVERT, (), ("abc", "99", "9-9-9")),
    }
    for command, (base, kit, only) in targets.items():
        for label, value, expect in depth_values:
            if only is not None and label not in only:
                continue
            add(
                f"{command}/depths:{label}",
                "usage",
                f"--depths {value!r}",
                with_opt(base, "--depths", value),
                expect,
                kit,
                quick=command == "info" and label == "abc",
            )
    for command, base in (("info", ["info"]), ("train", TRAIN), ("convert", CONVERT)):
        for label, value in (("unknown", "resnet9000"), ("empty", ""), ("shell-ish", "resnet50; rm -rf ~")):
            add(f"{command}/arch:{label}", "usage", f"--arch {value!r}", with_opt(base, "--arch", value), "e", ("fm",))
    for label, value, expect in (
        ("cuda", "cuda", "e"),
        ("cuda-99", "cuda:99", "e"),
        ("tpu", "tpu", "e"),
        ("empty", "", "e"),
        ("meta", "meta", "e"),
    ):
        add(
            f"eval/device:{label}",
            "usage",
            f"--device {value!r}",
            ["eval", "--ckpt", "tiny.pt", "--data", "fm", "--limit", "64", "--device", value],
            expect,
            ("ckpt", "fm"),
        )
    add("train/device:cuda", "usage", "--device cuda without a GPU", TRAIN + ["--device", "cuda"], "e", ("fm",))
    add("train/device:meta", "usage", "--device meta", TRAIN + ["--device", "meta"], "e", ("fm",))
    add(
        "train/holdout-all",
        "usage",
        "--holdout equal to the training set",
        with_opt(TRAIN, "--holdout", "512"),
        "e",
        ("fm",),
    )
    add("info/no-arguments", "usage", "info with neither --arch nor --ckpt", ["info"], "e")
    add(
        "info/arch-and-ckpt",
        "usage",
        "info with both --arch and --ckpt",
        ["info", "--arch", "resnet50", "--ckpt", "tiny.pt"],
        "a",
        ("ckpt",),
    )
    add(
        "eval/dataset-mismatch",
        "usage",
        "eval a 1-channel model on CIFAR-10 data",
        ["eval", "--ckpt", "tiny.pt", "--dataset", "cifar10", "--data", "fm"],
        "e",
        ("ckpt", "fm"),
    )
    add(
        "export/nan-checkpoint",
        "nonfinite",
        "export a checkpoint with NaN weights (parity cannot pass)",
        ["export", "--ckpt", "nan.pt", "--out", "exp", "--depths", "8", "--no-simplify", "--no-progress"],
        "e",
        ("nan",),
    )
    add(
        "eval/nan-checkpoint",
        "nonfinite",
        "eval a checkpoint with NaN weights",
        ["eval", "--ckpt", "nan.pt", "--data", "fm", "--limit", "64"],
        "a",
        ("nan", "fm"),
    )
    add(
        "export/dynamo-exporter",
        "usage",
        "--exporter dynamo (needs onnxscript)",
        EXPORT + ["--exporter", "dynamo"],
        "a",
        ("ckpt",),
        timeout=180.0,
    )
    add("export/opset-too-old", "usage", "--opset 7", with_opt(EXPORT, "--opset", "7"), "e", ("ckpt",))
    add("export/unknown-option", "usage", "an unknown option", EXPORT + ["--frobnicate"], "e", ("ckpt",))
    add(
        "pick/unknown-stat",
        "usage",
        "--stat p42",
        ["pick", "--results", "res.json", "--budget-ms", "1", "--stat", "p42"],
        "e",
        ("results",),
    )
    add(
        "pick/nothing-fits",
        "usage",
        "--budget-ms 1e-6 (exit 7)",
        ["pick", "--results", "res.json", "--budget-ms", "1e-6"],
        "e",
        ("results",),
        codes=(7,),
    )
    add(
        "pick/default-results-missing",
        "paths",
        "pick with the default results.json absent",
        ["pick", "--budget-ms", "1"],
        "e",
    )
    for label, steps in (("empty", ""), ("bogus", "bogus"), ("comma", ",")):
        add(f"demo/steps:{label}", "usage", f"--steps {steps!r}", ["demo", "--out", "dout", "--steps", steps], "e")
    add(
        "demo/pick-without-results",
        "usage",
        "--steps pick with no results yet",
        ["demo", "--out", "dout", "--steps", "pick"],
        "e",
    )
    add(
        "demo/stat-bogus", "usage", "--stat bogus", ["demo", "--out", "dout", "--steps", "pick", "--stat", "bogus"], "e"
    )
    add("predict/no-images", "usage", "predict without IMAGES", ["predict", "--artifacts", "art"], "e", ("art",))
    add(
        "predict/int8-not-calibrated",
        "usage",
        "--precision int8 on an FP32-only export",
        ["predict", "--artifacts", "art", "--precision", "int8", "img.png"],
        "e",
        ("art", "img"),
    )
    add(
        "predict/fp16-not-exported",
        "usage",
        "--precision fp16 without --fp16 graphs",
        ["predict", "--artifacts", "art", "--precision", "fp16", "img.png"],
        "e",
        ("art", "img"),
    )
    add(
        "predict/budget-without-results",
        "usage",
        "--budget-ms without --results",
        ["predict", "--artifacts", "art8", "--budget-ms", "1", "img.png"],
        "e",
        ("art8", "img"),
    )
    add(
        "predict/budget-and-depth",
        "usage",
        "--budget-ms and --depth together",
        ["predict", "--artifacts", "art8", "--results", "res.json", "--budget-ms", "1", "--depth", "8", "img.png"],
        "e",
        ("art8", "results", "img"),
    )
    add(
        "predict/results-of-other-artifacts",
        "usage",
        "--results benched on another export (checkpoint differs)",
        ["predict", "--artifacts", "demo_art", "--results", "res.json", "--budget-ms", "1", "img.png"],
        "e",
        ("demo_art", "results", "img"),
    )
    add(
        "predict/device-cuda",
        "usage",
        "--device cuda without a GPU",
        ["predict", "--artifacts", "art", "--device", "cuda", "img.png"],
        "e",
        ("art", "img"),
        codes=(5,),
    )
    add(
        "predict/device-unknown",
        "usage",
        "--device nope",
        ["predict", "--artifacts", "art", "--device", "nope", "img.png"],
        "e",
        ("art", "img"),
    )
    add(
        "predict/selector-with-depth",
        "usage",
        "--selector --depth 8",
        ["predict", "--artifacts", "art", "--selector", "--depth", "8", "img.png"],
        "o",
        ("art", "img"),
    )
    add(
        "predict/many-images",
        "usage",
        "200 copies of one image in one call",
        ["predict", "--artifacts", "art", *["img.png"] * 200],
        "o",
        ("art", "img"),
    )
    sv = ("art8", "results")
    add(
        "serve/port-in-use",
        "serve",
        "--port already taken by another process",
        SERVE,
        "e",
        sv,
        runner="serve",
        codes=(2,),
        timeout=40.0,
        quick=True,
        extra={"hold_port": True},
    )
    for label, host in (
        ("bad-ip", "999.1.1.1"),
        ("not-a-host", "not a host"),
        ("empty", ""),
        ("unresolvable", "no-such-host.invalid"),
    ):
        add(
            f"serve/host:{label}",
            "serve",
            f"--host {host!r}",
            SERVE + ["--host", host],
            "e",
            sv,
            runner="serve",
            timeout=40.0,
        )
    add(
        "serve/slo-without-results",
        "serve",
        "--slo-ms without --results",
        ["serve", "--artifacts", "art8", "--slo-ms", "5", "--port", "{port}"],
        "e",
        sv,
        runner="serve",
        timeout=40.0,
    )
    add(
        "serve/slo-and-budget",
        "serve",
        "--slo-ms and --budget-ms together",
        SERVE + ["--slo-ms", "5", "--budget-ms", "1"],
        "e",
        sv,
        runner="serve",
        timeout=40.0,
    )
    add(
        "serve/int8-not-calibrated",
        "serve",
        "--precision int8 on an FP32-only export",
        ["serve", "--artifacts", "art", "--precision", "int8", "--port", "{port}"],
        "e",
        ("art",),
        runner="serve",
        timeout=40.0,
    )
    add(
        "serve/valid-sigterm",
        "serve",
        "a valid server stopped with SIGTERM exits 0",
        SERVE + ["--slo-ms", "5"],
        "o",
        sv,
        runner="serve",
        timeout=60.0,
        quick=True,
    )
    add(
        "serve/valid-sigint-group",
        "serve",
        "a valid server stopped with Ctrl-C (SIGINT to the group)",
        SERVE + ["--max-batch", "4"],
        "o",
        sv,
        runner="serve",
        timeout=60.0,
        extra={"stop": "SIGINT"},
    )
    return c


def interrupt_cases(world: dict, seed: int) -> list:
    """SIGINT (to the process group, as Ctrl-C), SIGTERM and SIGKILL (to the process) at a random moment."""
    rng = random.Random(seed)
    secs = world["seconds"]
    jobs = {
        "export": (
            ["export", "--ckpt", "demo.pt", "--out", "demo_art", "--selector", "--force", "--no-progress"],
            ("demo_art",),
            secs.get("export_demo", 12.0),
            ("demo_art/*",),
            valid("manifest", "demo_art"),
        ),
        "calibrate": (
            [
                "calibrate",
                "--artifacts",
                "demo_art8",
                "--eval-samples",
                "1000",
                "--target",
                "tensorrt",
                "--no-progress",
            ],
            ("demo_art8",),
            secs.get("calibrate_demo", 12.0),
            ("demo_art8/*",),
            checks(valid("manifest", "demo_art8"), unlisted_int8("demo_art8")),
        ),
        "bench": (
            [
                "bench",
                "--artifacts",
                "demo_art8",
                "--device",
                "slow",
                "--profiles",
                "prof.toml",
                "--dataset",
                "none",
                "--results",
                "results.json",
                "--no-progress",
            ],
            ("demo_art8", "profiles", "demo_res"),
            secs.get("bench_demo", 12.0),
            ("results.*",),
            valid("results", "results.json"),
        ),
        "train": (
            RESUME,
            ("fm", "partial"),
            secs.get("train_first_checkpoint", 4.0) + 6.0,
            ("partial.pt",),
            valid("ckpt", "partial.pt"),
        ),
    }
    cases = []
    for command, (args, kit, duration, outputs, check) in jobs.items():
        kit = kit + (("demo_ckpt",) if command == "export" else ())
        for sig, target in (("SIGINT", "group"), ("SIGINT", "pid"), ("SIGTERM", "pid"), ("SIGKILL", "pid")):
            rounds = 1 if command == "train" or (sig, target) == ("SIGINT", "pid") else 2  # two random moments
            for r in range(rounds):
                low = 0.5 if command != "train" else secs.get("train_first_checkpoint", 4.0)
                delay = round(rng.uniform(max(low, 0.15 * duration), max(low + 1.0, 0.65 * duration)), 2)
                name = f"{command}/killed:{sig}-{target}@{delay}s"
                cases.append(
                    Case(
                        name,
                        "interrupt",
                        command,
                        f"{sig} to the {target} {delay} s after start; earlier outputs "
                        "intact or validly replaced, no temp entries, no orphans",
                        args,
                        "any",
                        kit,
                        None,
                        (),
                        outputs,
                        check,
                        "signal",
                        180.0,
                        (130,) if sig == "SIGINT" else None,
                        quick=(command, sig, target, r)
                        in {
                            ("bench", "SIGINT", "group", 0),
                            ("export", "SIGTERM", "pid", 0),
                            ("calibrate", "SIGKILL", "pid", 0),
                        },
                        extra={"signal": sig, "target": target, "delay": delay},
                    )
                )
    return cases


def all_cases(world: dict, seed: int) -> list:
    cases = (
        number_cases()
        + path_cases()
        + tamper_cases()
        + external_cases()
        + profile_cases()
        + results_cases()
        + dataset_cases()
        + overwrite_cases()
        + concurrency_cases()
        + resume_cases()
        + bench_failure_cases()
        + misc_cases()
        + interrupt_cases(world, seed)
    )
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SystemExit(f"duplicate case names: {sorted(dupes)}")
    return cases


# ------------------------------------------------------------------ running one case


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _popen(args: list, sb: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "ddnn_deploy", *args],
        cwd=sb,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> dict:
    start = time.perf_counter()
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return {
        "rc": proc.returncode,
        "out": out.decode(errors="replace"),
        "err": err.decode(errors="replace"),
        "timed_out": timed_out,
        "wait_s": time.perf_counter() - start,
    }


def run_plain(case: Case, sb: Path, env: dict, args: list) -> dict:
    return _finish(_popen(args, sb, env), case.timeout)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def run_serve(case: Case, sb: Path, env: dict, args: list, port: int) -> dict:
    """Start the server; if it comes up (it answers /healthz, or it is still running 4 s after its 'serving' line),
    stop it with SIGTERM (or the case's signal) and record ``started``."""
    proc = _popen(args, sb, env)
    chunks: dict = {"out": [], "err": []}
    said_serving = threading.Event()

    def pump(stream, key):
        for line in iter(stream.readline, b""):
            chunks[key].append(line)
            if key == "err" and line.startswith(b"serving "):
                said_serving.set()

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for t in pumps:
        t.start()
    deadline = time.monotonic() + case.timeout
    started, serving_since = False, None
    while proc.poll() is None and time.monotonic() < deadline:
        if said_serving.is_set():
            serving_since = serving_since or time.monotonic()
            if _healthy(port) or time.monotonic() - serving_since > 4.0:
                started = True
                break
        time.sleep(0.2)
    timed_out = False
    if proc.poll() is None:
        stop = getattr(signal, case.extra.get("stop", "SIGTERM"))
        if case.extra.get("stop") == "SIGINT":
            _killpg(proc.pid, stop)
        else:
            proc.send_signal(stop)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            timed_out = True
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if not started:
            timed_out = True
    for t in pumps:
        t.join(5)
    return {
        "rc": proc.returncode,
        "out": b"".join(chunks["out"]).decode(errors="replace"),
        "err": b"".join(chunks["err"]).decode(errors="replace"),
        "timed_out": timed_out,
        "started": started,
    }


def run_signal(case: Case, sb: Path, env: dict, args: list) -> dict:
    sig = getattr(signal, case.extra["signal"])
    proc = _popen(args, sb, env)
    deadline = time.monotonic() + case.extra["delay"]
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    finished_first = proc.poll() is not None
    if not finished_first:
        if case.extra["target"] == "group":
            _killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    result = _finish(proc, 90.0)
    result["finished_before_signal"] = finished_first
    return result


def run_concurrent(case: Case, sb: Path, env: dict) -> dict:
    procs, start = [], time.monotonic()
    for delay, args in case.extra["procs"]:
        while time.monotonic() - start < delay:
            time.sleep(0.02)
        procs.append((args, _popen(args, sb, env)))
    polls = []
    poll_args = case.extra.get("poll")
    if poll_args:
        while any(p.poll() is None for _, p in procs):
            polls.append({"args": poll_args, **_finish(_popen(poll_args, sb, env), 60.0)})
    subs = [{"args": args, **_finish(p, case.timeout)} for args, p in procs]
    subs += polls
    return {
        "rc": max((s["rc"] for s in subs), key=lambda rc: (rc != 0, abs(rc or 0))),
        "out": "\n".join(s["out"] for s in subs),
        "err": "\n".join(s["err"] for s in subs),
        "timed_out": any(s["timed_out"] for s in subs),
        "subs": subs,
    }


def snapshot(root: Path) -> dict:
    """relative path -> ('file', sha256) | ('link', target) for every regular file and symlink under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                try:
                    out[rel] = ("file", _sha(path))
                except OSError:
                    out[rel] = ("file", "unreadable")
    return out


def leftovers(root: Path, before: dict) -> list:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = str((Path(dirpath) / name).relative_to(root))
            if rel not in before and any(fnmatch.fnmatch(name, p) for p in LEFTOVERS):
                found.append(rel)
    return sorted(found)


def _tmp_entries(tmpdir: Path) -> list:
    return [f"$TMPDIR/{p.name}" for p in tmpdir.iterdir() if not any(fnmatch.fnmatch(p.name, i) for i in TMP_IGNORED)]


def marked_processes(token: str) -> list:
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if needle not in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                continue
            status = Path(f"/proc/{entry.name}/stat").read_text()
            if status.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), cmd.strip()[:160]))
    return found


def orphans(token: str, grace: float = 2.0) -> list:
    deadline = time.monotonic() + grace
    while True:
        alive = marked_processes(token)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid, _ in alive:  # started by this case: end them, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"pid {pid}: {cmd}" for pid, cmd in alive]


def _lines(text: str) -> list:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _one_line(err: str, allow_interrupted: bool) -> bool:
    """The failure is reported as ONE line: the last line of stderr starts with 'error: ' (or 'interrupted'), it is
    the only such line, and no usage block or traceback surrounds it."""
    lines = _lines(err)
    if not lines:
        return False
    heads = ("error: ",) + (("interrupted",) if allow_interrupted else ())
    reports = [line for line in lines if line.startswith(heads)]
    noise_lines = [line for line in lines if line.startswith(("Usage:", "Try '", "Error:", TRACEBACK, "  File "))]
    return len(reports) == 1 and lines[-1].startswith(heads) and not noise_lines


def _observed(res: dict) -> str:
    err_lines, out_lines = _lines(res.get("err", "")), _lines(res.get("out", ""))
    if TRACEBACK in res.get("err", "") or TRACEBACK in res.get("out", ""):
        text = res.get("err", "") if TRACEBACK in res.get("err", "") else res.get("out", "")
        tb = _lines(text.split(TRACEBACK)[-1])
        frames = [i for i, line in enumerate(tb) if line.startswith("  File ")]
        after = tb[frames[-1] + 1 :] if frames else tb
        last = next((line for line in after if not line.startswith("    ")), after[-1] if after else "")
        return f"traceback: {last.strip()[:300]}"
    if err_lines:
        return err_lines[-1][:300]
    return out_lines[-1][:300] if out_lines else "(no output)"


def run_case(case: Case, world_root: Path, work: Path) -> dict:
    slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case.name)[:80]
    slug = f"{slug}-{uuid.uuid4().hex[:6]}"
    sb, tmpdir = work / "cases" / slug, work / "tmp" / slug
    sb.mkdir(parents=True)
    tmpdir.mkdir(parents=True)
    record: dict = {
        "name": case.name,
        "family": case.family,
        "command": case.command,
        "what": case.what,
        "expect": case.expect,
    }
    started = time.perf_counter()
    try:
        for fixture in case.kit:
            for src, dst in KIT[fixture]:
                if (world_root / src).is_dir():
                    shutil.copytree(world_root / src, sb / dst, symlinks=True)
                else:
                    shutil.copy2(world_root / src, sb / dst)
        (sb / "notes.txt").write_text("the user's own notes: must survive every case\n")
        if case.prep:
            case.prep(sb)
        before = snapshot(sb)
        if DRY_RUN:
            record.update(handled=True, reasons=[], dry_run=True)
            return record
        token = uuid.uuid4().hex
        env = _env(token, tmpdir)
        port, holder = _free_port(), None
        if case.extra.get("hold_port"):
            holder = socket.socket()
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
        args = [a.replace("{port}", str(port)) for a in case.args]
        record["argv"] = shlex.join(["ddnn-deploy", *args])
        try:
            if case.runner == "serve":
                res = run_serve(case, sb, env, args, port)
            elif case.runner == "signal":
                res = run_signal(case, sb, env, args)
            elif case.runner == "concurrent":
                res = run_concurrent(case, sb, env)
                record["argv"] = " & ".join(shlex.join(["ddnn-deploy", *a]) for _, a in case.extra["procs"])
                if case.extra.get("poll"):
                    record["argv"] += " & (loop) " + shlex.join(["ddnn-deploy", *case.extra["poll"]])
            else:
                res = run_plain(case, sb, env, args)
        finally:
            if holder:
                holder.close()
        orphan_list = orphans(token)
        after_kill_leftovers = leftovers(sb, before) + _tmp_entries(tmpdir)
        rerun = None
        if case.runner == "signal" and case.extra["signal"] == "SIGKILL":  # can the next run go on, and clean up?
            rerun = run_plain(case, sb, env, args)
            orphan_list += orphans(token)
        after = snapshot(sb)
        judge(case, record, res, before, after, sb, tmpdir, orphan_list, after_kill_leftovers, rerun)
    except Exception as exc:  # a harness problem, not a finding: recorded as such
        record.update(harness_error=f"{type(exc).__name__}: {exc}", handled=False, reasons=[f"harness: {exc}"])
    finally:
        record["seconds"] = round(time.perf_counter() - started, 2)
        release_immutable(sb)
        if not KEEP:
            shutil.rmtree(sb, ignore_errors=True)
            shutil.rmtree(tmpdir, ignore_errors=True)
    return record


def judge(case, record, res, before, after, sb, tmpdir, orphan_list, kill_leftovers, rerun) -> None:
    rc = res["rc"]
    err, out = res.get("err", ""), res.get("out", "")
    traceback = TRACEBACK in err or TRACEBACK in out
    reasons = []
    started = res.get("started", False)
    accepted = rc == 0 or started
    record.update(exit_code=rc, timed_out=res["timed_out"], traceback=traceback, observed=_observed(res))
    if case.runner == "serve":
        record["server_started"] = started
    one_line = None
    if rc not in (0, None) and rc > 0 and not started:
        one_line = _one_line(err, allow_interrupted=case.runner == "signal")
    if case.runner == "concurrent":
        one_line = all(_one_line(s["err"], False) for s in res["subs"] if s["rc"] not in (0, None) and s["rc"] > 0)
        record["sub_exit_codes"] = [s["rc"] for s in res["subs"]]
        if case.extra.get("poll"):
            polls = [s for s in res["subs"] if s["args"] is case.extra["poll"]]
            record["poll_runs"] = len(polls)
            bad = [s for s in polls if s["rc"] != 0]
            if bad:
                reasons.append(
                    f"{len(bad)} of {len(polls)} concurrent `{case.extra['poll'][0]}` runs failed: {_observed(bad[0])}"
                )
    record["one_line"] = one_line
    silently = case.expect == "error" and accepted and not res["timed_out"]
    record["silently_accepted"] = silently
    if res["timed_out"]:
        reasons.append(f"no answer within {case.timeout:.0f} s (killed)")
    if traceback:
        reasons.append("Python traceback")
    if silently:
        reasons.append("invalid input accepted: " + ("the server started" if started else "exit 0"))
    if case.expect == "ok" and (rc != 0 or (case.runner == "serve" and not started)) and not res["timed_out"]:
        reasons.append(f"valid input refused: exit {rc}")
    if one_line is False:
        reasons.append("failure not reported as one `error:` line")
    if case.codes and rc not in case.codes and not (case.runner == "signal" and res.get("finished_before_signal")):
        if not (case.runner == "serve" and started and case.expect != "error"):
            reasons.append(f"exit {rc}, README says {'/'.join(map(str, case.codes))}")
    if case.runner == "signal":
        record["signal"] = {k: case.extra[k] for k in ("signal", "target", "delay")}
        record["finished_before_signal"] = res.get("finished_before_signal", False)
        if case.extra["signal"] == "SIGTERM" and rc not in (130, 143, -15, 0):
            reasons.append(f"exit {rc} after SIGTERM")
    # files: a failed command may change nothing; a successful one only what the user asked to replace. calibrate's
    # exit 8 is a partial success (the depths that passed the accuracy guard get their INT8 graph)
    succeeded = rc == 0 or (case.command == "calibrate" and rc == 8)
    allowed = tuple(case.may_change) + (tuple(case.replaced) if succeeded else ())
    lost, changed = [], []
    for rel, (kind, value) in before.items():
        if any(fnmatch.fnmatch(rel, pattern) for pattern in allowed):
            continue
        now = after.get(rel)
        if now is None:
            lost.append(rel)
        elif now != (kind, value):
            changed.append(rel)
    record.update(lost=lost, changed=changed)
    if lost:
        reasons.append(f"lost: {', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}")
    if changed:
        reasons.append(f"changed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
    left = leftovers(sb, before) + _tmp_entries(tmpdir)
    if rerun is not None:  # SIGKILL: nothing can clean up inside the killed process; the next run may
        record["leftovers_after_kill"] = kill_leftovers
        record["rerun_exit_code"] = rerun["rc"]
        if rerun["rc"] != 0:
            reasons.append(f"re-run after SIGKILL failed: exit {rerun['rc']}: {_observed(rerun)}")
        if TRACEBACK in rerun["err"]:
            reasons.append("re-run after SIGKILL: Python traceback")
        # the README: the next run removes what a killed run left (beside the outputs and in $TMPDIR)
    record["leftovers"] = left
    if left:
        reasons.append(f"left behind: {', '.join(left[:4])}{' ...' if len(left) > 4 else ''}")
    record["orphans"] = orphan_list
    if orphan_list:
        reasons.append(f"orphan processes: {'; '.join(orphan_list[:2])}")
    if case.check and not res["timed_out"]:
        problems = case.check(sb, {**record, "stdout_full": out})
        if case.expect == "error" and rc != 0 and case.family not in ("interrupt", "concurrency", "bench-failure"):
            problems = [p for p in problems if "PWNED" in p]  # validity checks are about runs that went on
        reasons += problems
    record["handled"] = not reasons
    record["reasons"] = reasons
    if reasons:
        record["stderr_tail"] = err[-1500:]
        record["stdout_tail"] = out[-300:]


# ------------------------------------------------------------------ report


def report_group(rec: dict) -> str:
    if rec.get("lost") or rec.get("changed"):
        return "overwrite / lost files"
    fam = rec["family"]
    named = {
        "concurrency": "concurrency",
        "resume": "--resume",
        "interrupt": "killed runs",
        "bench-failure": "bench failure reporting",
        "external-data": "external data",
        "nonfinite": "non-finite numbers",
    }
    if fam in named:
        return named[fam]
    if rec.get("traceback"):
        return "tracebacks"
    if rec.get("reasons") == ["failure not reported as one `error:` line"] and "Usage:" in rec.get("stderr_tail", ""):
        return "usage errors in click's multi-line format"
    if rec.get("silently_accepted"):
        return f"silently accepted ({fam})"
    return fam


def environment() -> dict:
    cpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    git = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        git = {"head": head.stdout.strip(), "uncommitted_files": len(dirty.stdout.splitlines())}
    versions = {}
    from importlib import metadata

    for package in ("ddnn-deploy", "torch", "onnx", "onnxruntime", "numpy", "pydantic", "click"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "user_is_root": os.geteuid() == 0,
        "git": git,
        "versions": versions,
    }


def summarize(records: list) -> dict:
    def count(pred):
        return sum(1 for r in records if pred(r))

    return {
        "cases": len(records),
        "handled": count(lambda r: r.get("handled")),
        "failing": count(lambda r: not r.get("handled")),
        "tracebacks": count(lambda r: r.get("traceback")),
        "files_lost": count(lambda r: r.get("lost") or r.get("changed")),
        "silently_accepted": count(lambda r: r.get("silently_accepted")),
        "leftovers": count(lambda r: r.get("leftovers")),
        "orphans": count(lambda r: r.get("orphans")),
        "not_one_line": count(lambda r: r.get("one_line") is False),
        "timeouts": count(lambda r: r.get("timed_out")),
        "harness_errors": count(lambda r: r.get("harness_error")),
        "signal_after_exit": count(lambda r: r.get("finished_before_signal")),  # a kill case that tested nothing
    }


def print_report(records: list) -> None:
    by_family = defaultdict(list)
    for r in records:
        by_family[r["family"]].append(r)
    cols = [
        "cases",
        "handled",
        "tracebacks",
        "files_lost",
        "silently_accepted",
        "leftovers",
        "orphans",
        "not_one_line",
        "timeouts",
    ]
    heads = ["cases", "handled", "traceback", "lost", "accepted", "leftover", "orphan", "not1line", "timeout"]
    print()
    print(f"{'family':<16}" + "".join(f"{h:>10}" for h in heads))
    for family in sorted(by_family):
        s = summarize(by_family[family])
        print(f"{family:<16}" + "".join(f"{s[c]:>10}" for c in cols))
    s = summarize(records)
    print(f"{'TOTAL':<16}" + "".join(f"{s[c]:>10}" for c in cols))
    failing = [r for r in records if not r.get("handled")]
    if not failing:
        return
    groups = defaultdict(list)
    for r in failing:
        groups[report_group(r)].append(r)
    print(f"\n{len(failing)} failing cases, by family:")
    for group in sorted(groups):
        print(f"\n== {group} ({len(groups[group])})")
        for r in groups[group]:
            print(f"  {r['name']}: {'; '.join(r['reasons'])}")
            print(f"      $ {r.get('argv', '')}")
            print(f"      -> exit {r.get('exit_code')}: {r.get('observed', '')}")


def main() -> None:
    global KEEP, DRY_RUN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 40 representative cases")
    parser.add_argument("--only", default=None, help="a glob or substring over case names")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (each starts python + torch)")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--world", default=None, help="build (or reuse) the fixture world here")
    parser.add_argument("--keep", action="store_true", help="keep every case's sandbox (under the work folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    parser.add_argument("--dry-run", action="store_true", help="set up every case's sandbox, run nothing")
    parser.add_argument("--every", type=int, default=1, help="run every N-th case only (a spread-out subset)")
    parser.add_argument("--family", default=None, help="only this family (numbers, paths, overwrite, ...)")
    opts = parser.parse_args()
    KEEP, DRY_RUN = opts.keep, opts.dry_run

    work = Path(tempfile.mkdtemp(prefix="ddnn-robustness-"))
    try:
        placeholder = {"seconds": {}}
        if opts.list:
            for case in all_cases(placeholder, opts.seed):
                print(f"{case.family:<14} {case.expect:<5} {case.name}")
            print(f"{len(all_cases(placeholder, opts.seed))} cases")
            return
        world_root = Path(opts.world) if opts.world else work / "world"
        print(f"fixture world: {world_root}", flush=True)
        world = build_world(world_root)
        cases = all_cases(world, opts.seed)
        if opts.quick:
            cases = [c for c in cases if c.quick]
        if opts.family:
            cases = [c for c in cases if c.family == opts.family]
        if opts.every > 1:
            cases = cases[:: opts.every]
        if opts.only:
            pattern = opts.only
            glob = any(ch in pattern for ch in "*?[")
            cases = [c for c in cases if (fnmatch.fnmatch(c.name, pattern) if glob else pattern in c.name)]
        print(f"{len(cases)} cases, {opts.jobs} at a time; work folder {work}", flush=True)
        records: list = []
        lock = threading.Lock()
        t0 = time.perf_counter()

        def one(case: Case) -> dict:
            rec = run_case(case, world_root, work)
            with lock:
                records.append(rec)
                status = "ok  " if rec.get("handled") else "FAIL"
                why = "" if rec.get("handled") else " - " + "; ".join(rec.get("reasons", []))[:150]
                print(
                    f"[{len(records):>4}/{len(cases)}] {status} {case.name} ({rec['seconds']:.1f} s){why}", flush=True
                )
            return rec

        if opts.jobs > 1:
            with ThreadPoolExecutor(opts.jobs) as pool:
                list(pool.map(one, cases))
        else:
            for case in cases:
                one(case)
        order = {c.name: i for i, c in enumerate(cases)}
        records.sort(key=lambda r: order[r["name"]])
        for r in records:
            if not r.get("handled"):
                r["group"] = report_group(r)
        print_report(records)
        data = {
            "issue": 13,
            "selection": {
                "quick": opts.quick,
                "only": opts.only,
                "every": opts.every,
                "family": opts.family,
                "jobs": opts.jobs,
                "seed": opts.seed,
            },
            "summary": summarize(records),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "world_seconds": world.get("seconds", {}),
            "environment": environment(),
            "cases": records,
        }
        full = not opts.quick and not opts.only and opts.every == 1 and not opts.family
        print()
        if not DRY_RUN:
            save_result("robustness" if full else "robustness-subset", data)
    finally:
        release_immutable()
        if not KEEP:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
