"""Issue 13, "every failure is one line": every reader of a user-supplied file, fuzzed with hypothesis.

Each reader gets random bytes, damaged copies of a valid file (truncated, bit-flipped, spliced) and valid
containers holding wrong values (a JSON manifest with one field replaced by nested garbage, a torch.save of a
checkpoint dict with a wrong-typed field, a zip whose members are garbage, ...). The contract: the reader
returns, or raises one of the project's own errors (a ``DDNNError`` subclass) whose message is one non-empty
line; never a raw ValueError, KeyError, struct.error, zlib.error, EOFError, PIL or pickle error, RecursionError,
MemoryError; and it never hangs (each call runs under a SIGALRM time limit).

Derandomized (the same examples every run) and sized to run in well under a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import math
import os
import pickle
import signal
import struct
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ddnn_deploy.errors import CheckpointError, DataError, DDNNError, ProfileError

FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FEW = settings(FUZZ, max_examples=25)
LIMIT_S = 20  # one reader call; the slowest legitimate one here takes well under a second


# ------------------------------------------------------------------------------------------------ the contract


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so that no reader's ``except Exception`` can swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _alarm(signum, frame):
        raise _Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only_ours(call, what: str = "the reader"):
    """``call()``'s result, or the DDNNError it raised (one non-empty line); anything else fails the test."""
    try:
        with _time_limit(LIMIT_S):
            return call()
    except DDNNError as exc:
        message = str(exc)
        assert message.strip(), f"{type(exc).__name__} from {what} has an empty message"
        assert "\n" not in message and "\r" not in message, f"{type(exc).__name__} from {what}: {message!r}"
        assert len(message) < 1500, f"{type(exc).__name__} from {what} is {len(message)} characters long"
        return exc
    except _Hang:
        pytest.fail(f"{what} hung (more than {LIMIT_S} s)")
    except Exception as exc:  # noqa: BLE001 - the point of this module
        pytest.fail(f"{type(exc).__name__} escaped {what}: {str(exc)[:300]!r}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def fresh(scratch: Path) -> Path:
    """A new empty folder (hypothesis runs many examples per test; function fixtures would be shared)."""
    return Path(tempfile.mkdtemp(dir=scratch))


# ------------------------------------------------------------------------------------------------ strategies


@st.composite
def mangled(draw, valid: bytes, max_edits: int = 4) -> bytes:
    """``valid`` damaged: truncated, bits flipped, bytes overwritten, inserted or deleted."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete"]))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, every prefix of ``valid``, or ``valid`` mangled."""
    return st.one_of(
        st.binary(max_size=300),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        mangled(valid),
    )


NASTY_STRINGS = st.sampled_from(
    ["", ".", "a\nb", "a\x00b", "../x", "/etc/passwd", "a\\b", "C:x", "x" * 5000, "manifest.json", "net-d8.onnx", "%s"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | NASTY_STRINGS
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def nested(depth: int, leaf=0):
    """``[[...[leaf]...]]``, ``depth`` lists deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


VALUES = JSON_VALUES | st.integers(60, 300).map(nested)  # deeper than any file of ours nests


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def one_field_replaced(draw, base, values=VALUES):
    """``base`` with one field (at any depth) replaced by ``values`` or deleted, or one key added."""
    data = copy.deepcopy(base)
    path = draw(st.sampled_from([p for p in _paths(data) if p]))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(values)
    else:
        parent[path[-1]] = draw(values)
    return data


DEEP_TEXT = st.sampled_from([500, 990, 1000, 5000, 100_000]).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, "[" * n])
)
NASTY_JSON = DEEP_TEXT | st.sampled_from(
    ["1" * 5000, "-" + "9" * 4400, "1e400", "NaN", "-Infinity", "9223372036854775808", '"\\ud800"', '"a\\u0000b"']
)


def with_nasty_text(valid: dict, marker: str = "__NASTY__") -> st.SearchStrategy[str]:
    """``valid`` as JSON text with one field's value replaced by JSON nested hundreds to 100,000 levels deep, a
    5000-digit number, a lone surrogate, ... (written as text: the test itself must not recurse that deep)."""
    keys = [p for p in _paths(valid) if p and isinstance(p[-1], str)]

    def build(path, deep):
        data = copy.deepcopy(valid)
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = marker
        return json.dumps(data).replace(json.dumps(marker), deep)

    return st.builds(build, st.sampled_from(keys), NASTY_JSON)


# --------------------------------------------------------------------------------------- manifest.json


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def export_folder(scratch):
    """A folder with four small files and a valid manifest.json listing them (sha256 and sizes right)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    folder = scratch / "artifacts"
    folder.mkdir()

    def graph(name: str, external: bool = False) -> None:
        """A tiny real graph (read_manifest checks where a graph's external data lives)."""
        weight = numpy_helper.from_array(np.ones((1, 1, 28, 28), np.float32), "w")
        nodes = [helper.make_node("Mul", ["input", "w"], ["logits"])]
        inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 28, 28])]
        model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, [weight]))
        if external:
            onnx.save_model(model, str(folder / name), save_as_external_data=True, location=f"{name}.data")
        else:
            onnx.save_model(model, str(folder / name))

    graph("net-d8.onnx")
    graph("net-d14.onnx")
    graph("net-selector.onnx", external=True)
    files = {}
    for name in ("net-d8.onnx", "net-d14.onnx", "net-selector.onnx", "net-selector.onnx.data"):
        content = (folder / name).read_bytes()
        files[name] = {"path": name, "sha256": _sha(content), "bytes": len(content)}

    def depth_entry(depth, blocks):
        return {
            "depth": depth,
            "blocks": blocks,
            "kind": "depth",
            "precision": "fp32",
            **files[f"net-d{depth}.onnx"],
            "params": 1000,
            "macs": 5000,
            "opset": 17,
            "exporter": "torchscript",
            "simplified": False,
            "simplify_note": "skipped",
            "batch": None,
            "parity": {"max_rel_err": 1e-6, "batch_sizes": [1, 3]},
        }

    manifest = {
        "format": "ddnn-deploy.export",
        "version": 1,
        "tool_version": "0.1.0",
        "created": "2026-11-25T00:00:00",
        "checkpoint": {"path": "model.pt", "sha256": "ab" * 32},
        "arch": "cifar_resnet20",
        "dataset": "fashion-mnist",
        "input": {"name": "input", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 1, 28, 28]},
        "output": {"name": "logits", "dtype": "float32", "shape": ["batch", 10]},
        "preprocess": {"scale": 1 / 255, "mean": [0.286], "std": [0.353], "layout": "NCHW"},
        "class_names": [str(i) for i in range(10)],
        "export_seconds": 1.0,
        "artifacts": [
            depth_entry(8, [1, 1, 1]),
            depth_entry(14, [2, 2, 2]),
            {
                "depth": [8, 14],
                "blocks": [[1, 1, 1], [2, 2, 2]],
                "kind": "selector",
                "precision": "fp32",
                **files["net-selector.onnx"],
                "data": files["net-selector.onnx.data"],
                "macs": {"8": 1, "14": 2},
                "weights": {"stored_bytes": 10, "referenced_bytes": 20},
            },
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, manifest


def _read_manifest_text(folder: Path, text) -> None:
    from ddnn_deploy.formats.manifest import read_manifest

    path = folder / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    only_ours(lambda: read_manifest(folder), "read_manifest")
    only_ours(lambda: read_manifest(folder, verify=False), "read_manifest(verify=False)")


def test_the_valid_files_are_valid(export_folder, results_file):
    from ddnn_deploy.formats.manifest import read_manifest
    from ddnn_deploy.formats.results import read_results

    folder, _ = export_folder
    assert [a.depths for a in read_manifest(folder).artifacts] == [[8], [14], [8, 14]]
    assert len(read_results(results_file[0]).rows) == 2


@FUZZ
@given(data=st.data())
def test_manifest_bytes(export_folder, data):
    folder, manifest = export_folder
    valid = json.dumps(manifest, indent=1).encode()
    _read_manifest_text(folder, data.draw(damaged(valid) | with_nasty_text(manifest)))


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_manifest_fields(export_folder, data):
    from ddnn_deploy.formats.manifest import parse_manifest

    folder, manifest = export_folder
    changed = data.draw(one_field_replaced(manifest))
    only_ours(lambda: parse_manifest(changed), "parse_manifest")
    _read_manifest_text(folder, json.dumps(changed))  # NaN and Infinity too: Python's json writes them


# ---------------------------------------------------------------------------------------- results.json


@pytest.fixture(scope="module")
def results_file(scratch):
    latency = {"mean": 0.3, "std": 0.01, "min": 0.2, "p50": 0.3, "p90": 0.4, "p95": 0.41, "p99": 0.5, "max": 0.9}
    rows = [
        {
            "depth": depth,
            "blocks": blocks,
            "kind": "depth",
            "precision": "fp32",
            "backend": "onnxruntime",
            "batch": 1,
            "status": "ok",
            "error": None,
            "latency_ms": {**latency, "n": 50, "cv": 0.05},
            "throughput": 3000.0,
            "accuracy": {"top1": 91.0, "top5": 99.0, "n": 100},
            "memory_mb": {"peak_rss_mb": 80.0, "gpu_mb": None},
            "samples_ms": [0.3, 0.31, 0.29],
            "runner": {"onnxruntime": "1.20"},
        }
        for depth, blocks in ((8, [1, 1, 1]), (14, [2, 2, 2]))
    ]
    rows[1].update(status="error", error="worker died", latency_ms=None)
    results = {
        "format": "ddnn-deploy.bench",
        "version": 1,
        "arch": "cifar_resnet20",
        "device": {"profile": {"name": "x86-cpu"}, "environment": {"cpu": "test", "cores": 2}},
        "settings": {"batch_sizes": [1], "dataset": "none"},
        "artifacts": {"path": "a", "checkpoint_sha256": "ab" * 32},
        "rows": rows,
    }
    path = scratch / "results.json"
    path.write_text(json.dumps(results))
    return path, results


@FUZZ
@given(data=st.data())
def test_results_bytes(results_file, data):
    from ddnn_deploy.formats.results import read_results

    path, results = results_file
    text = data.draw(damaged(json.dumps(results, indent=1).encode()) | with_nasty_text(results))
    target = path.with_name("fuzzed-results.json")
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    only_ours(lambda: read_results(target), "read_results")


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_results_fields(results_file, data):
    from ddnn_deploy.formats.results import parse_results, read_results

    path, results = results_file
    changed = data.draw(one_field_replaced(results))
    only_ours(lambda: parse_results(changed), "parse_results")
    target = path.with_name("fuzzed-results.json")
    target.write_text(json.dumps(changed))
    only_ours(lambda: read_results(target), "read_results")


# ---------------------------------------------------------------------------------------- profiles TOML

PROFILE_KEYS = [
    "extends",
    "backend",
    "provider",
    "precisions",
    "threads",
    "batch_sizes",
    "warmup_iters",
    "warmup_seconds",
    "min_iters",
    "min_seconds",
    "accuracy_batch",
    "max_cv",
    "description",
    "name",
]
TOML_SCALARS = (
    st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["x86-cpu", "jetson", "cuda", "fp16", "int8", "tensorrt", "1979-05-27T07:32:00Z", "07:32:00"])
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=5,
)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and value[:1].isdigit() and ":" in value:
        return value  # a TOML date-time or time: tomllib gives a datetime, which no profile field takes
    return json.dumps(value) if isinstance(value, str) else str(value)


def _load_profiles_text(scratch: Path, text) -> None:
    from ddnn_deploy.formats.profiles import load_profiles

    path = scratch / "profiles.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    profiles = only_ours(lambda: load_profiles(path), "load_profiles")
    if isinstance(profiles, dict):
        for profile in profiles.values():  # a profile that loads is usable: no latent ValidationError
            only_ours(lambda p=profile: (p.timing, p.to_dict(), p.resolved_threads()), "a loaded profile")


@FUZZ
@given(
    name=st.text(max_size=10) | st.sampled_from(["orin", "x86-cpu", "jetson"]),
    table=st.dictionaries(st.sampled_from(PROFILE_KEYS) | st.text(max_size=5), TOML_VALUES, max_size=5),
)
def test_profile_tables(scratch, name, table):
    lines = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in table.items())
    _load_profiles_text(scratch, f"[profiles.{json.dumps(name)}]\n{lines}")


VALID_TOML = b"""[profiles.orin-nx]
extends = "jetson"
batch_sizes = [1, 4]
min_seconds = 5.0

[profiles.mine]
backend = "onnxruntime"
threads = 2
precisions = ["fp32", "int8"]
"""


@FUZZ
@given(text=damaged(VALID_TOML) | DEEP_TEXT.map(lambda deep: "a = " + deep.replace(":", "=").replace('"', "")))
def test_profile_bytes(scratch, text):
    _load_profiles_text(scratch, text)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "+nan", "1e400", "-1e400"])
@pytest.mark.parametrize("key", ["min_seconds", "warmup_seconds", "max_cv"])
def test_non_finite_profile_numbers_are_refused(scratch, key, value):
    from ddnn_deploy.formats.profiles import load_profiles

    path = scratch / f"nonfinite-{key}.toml"
    path.write_text(f"[profiles.orin]\nextends = 'jetson'\n{key} = {value}\n")
    with pytest.raises(ProfileError, match=f"profiles.orin: {key}: must be a finite number"):
        load_profiles(path)


def test_profile_settings_that_would_never_finish_are_refused(scratch):
    from ddnn_deploy.formats.profiles import load_profiles

    for line, problem in (
        ("min_iters = 9223372036854775807", "min_iters and warmup_iters must be <= 100000"),
        ("warmup_seconds = 1e300", "must be <= 3600"),
        ("threads = 99999999999999999999", "threads: must be an integer within the 64-bit range"),
    ):
        path = scratch / "never.toml"
        path.write_text(f"[profiles.orin]\n{line}\n")
        with pytest.raises(ProfileError, match=problem):
            load_profiles(path)


# ---------------------------------------------------------------------------------------- TensorRT sidecar


@FUZZ
@given(text=damaged(b'{"format": "ddnn-deploy.engine", "version": 2, "sm_count": 8}') | DEEP_TEXT)
def test_tensorrt_sidecar(scratch, text):
    from ddnn_deploy.runners.tensorrt_runner import read_sidecar

    path = scratch / "net.fp16.b1.engine.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    found = only_ours(lambda: read_sidecar(path), "read_sidecar")
    assert found is None or isinstance(found, (dict, DDNNError))


# ---------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(scratch):
    """A small valid checkpoint (cifar_resnet20, width 4, depths 8 and 20, BN statistics of depth 8)."""
    torch = pytest.importorskip("torch")
    from ddnn_deploy.checkpoint import Checkpoint, save_checkpoint
    from ddnn_deploy.models import build_model
    from ddnn_deploy.spec import DepthConfig

    kwargs = {"num_classes": 10, "in_channels": 1, "input_size": 28, "width": 4}
    model = build_model("cifar_resnet20", **kwargs)
    ckpt = Checkpoint(
        arch="cifar_resnet20",
        model=kwargs,
        depths=[DepthConfig((1, 1, 1)), DepthConfig((3, 3, 3))],
        state_dict=model.state_dict(),
        bn_stats={"1-1-1": {"bn1.running_mean": torch.full((4,), 0.5), "bn1.running_var": torch.ones(4)}},
        preprocess={"scale": 1 / 255, "mean": [0.286], "std": [0.353], "layout": "NCHW"},
        input_shape=[1, 28, 28],
        dataset="fashion-mnist",
        class_names=list("abcdefghij"),
        metrics={"1-1-1": {"top1": 90.0}},
        training={"settings": {"epochs": 1}},
    )
    path = save_checkpoint(ckpt, scratch / "valid.pt")
    return _Quiet((path, path.read_bytes(), ckpt.to_dict()))


class _Quiet(tuple):
    """A fixture value whose repr is short: hypothesis prints the arguments of a failing example."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)}>"


def _load_and_build(path: Path) -> None:
    from ddnn_deploy.checkpoint import Checkpoint, load_checkpoint

    ckpt = only_ours(lambda: load_checkpoint(path), "load_checkpoint")
    if isinstance(ckpt, Checkpoint):  # a checkpoint that loads builds, or says why not in one line
        only_ours(lambda: ckpt.build(), "Checkpoint.build")


def _tensors():
    torch = pytest.importorskip("torch")
    dtypes = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool, torch.complex64])
    shapes = st.lists(st.integers(0, 5), max_size=3)
    plain = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype), shapes, dtypes)
    expanded = st.integers(1, 10**7).map(lambda n: torch.zeros(1, 3).expand(n, 3))
    return (
        plain
        | expanded
        | st.sampled_from([torch.zeros(4), torch.ones(4), torch.zeros(10, 64), torch.zeros(4, 1, 3, 3)])
    )


def _tensor_dicts():
    names = st.sampled_from(
        [
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked",
            "conv1.weight",
            "fc.weight",
            "layer1.0.bn1.weight",
        ]
    )
    return st.dictionaries(names | st.text(max_size=6) | st.integers(-3, 3), _tensors(), max_size=3)


def _torch_values():
    return (
        VALUES
        | _tensors()
        | _tensor_dicts()
        | st.dictionaries(
            st.sampled_from(["1-1-1", "3-3-3", "2-2"]) | st.text(max_size=4), _tensor_dicts() | VALUES, max_size=2
        )
    )


@FUZZ
@given(data=st.data())
def test_checkpoint_bytes(checkpoint, scratch, data):
    path, valid, _ = checkpoint
    target = scratch / "fuzzed.pt"
    target.write_bytes(data.draw(damaged(valid)))
    _load_and_build(target)


@FUZZ
@given(data=st.data())
def test_checkpoint_fields(checkpoint, scratch, data):
    import torch

    _, _, valid = checkpoint
    field = data.draw(st.sampled_from(sorted(valid)))
    changed = dict(valid)
    action = data.draw(st.sampled_from(["replace", "replace", "delete"]))
    if action == "delete":
        del changed[field]
    else:
        changed[field] = data.draw(_torch_values())
    target = scratch / "fields.pt"
    torch.save(changed, target)
    _load_and_build(target)


@FUZZ
@given(
    members=st.dictionaries(
        st.sampled_from(["archive/data.pkl", "archive/version", "archive/byteorder", "archive/data/0", "data.pkl"])
        | st.text("abc/._", min_size=1, max_size=12),
        st.binary(max_size=64) | JSON_VALUES.map(lambda v: pickle.dumps(v, protocol=2)),
        max_size=4,
    ),
    compressed=st.booleans(),
)
def test_checkpoint_zip_members(checkpoint, scratch, members, compressed):
    target = scratch / "members.pt"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    _load_and_build(target)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path(tempfile.gettempdir()) / "ddnn-deploy-fuzz-pwned-marker"


def test_random_bytes_and_a_refused_real_pickle_get_different_messages(checkpoint, scratch):
    torch = pytest.importorskip("torch")
    from ddnn_deploy.checkpoint import load_checkpoint, load_state_dict_file

    _, _, valid = checkpoint
    messages = {}
    cases = {
        "random": lambda p: p.write_bytes(bytes(range(256)) * 4),
        "text": lambda p: p.write_text("hello, I am not a checkpoint"),
        "protocol4": lambda p: torch.save(valid, p, pickle_protocol=4),
        "plain-pickle4": lambda p: p.write_bytes(pickle.dumps({"format": "ddnn-deploy.checkpoint"}, protocol=4)),
        "exploit": lambda p: torch.save({"format": "ddnn-deploy.checkpoint", "x": _Exploit()}, p),
        "exploit-pickle4": lambda p: p.write_bytes(pickle.dumps(_Exploit(), protocol=4)),
    }
    MARKER.unlink(missing_ok=True)
    for name, write in cases.items():
        path = scratch / f"{name}.pt"
        write(path)
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        messages[name] = str(info.value)
        with pytest.raises(CheckpointError):
            load_state_dict_file(path)
    assert not MARKER.exists()  # refused, never executed
    for name in ("random", "text"):
        assert "is not a checkpoint" in messages[name] and "unsafe" not in messages[name], messages[name]
    for name in ("protocol4", "plain-pickle4", "exploit", "exploit-pickle4"):
        assert "needs unsafe unpickling and was refused, not executed" in messages[name], messages[name]
    assert "pickle protocol 4" in messages["protocol4"] and "re-save it with torch.save" in messages["protocol4"]
    assert "system" in messages["exploit"] and "system" in messages["exploit-pickle4"]  # names what it would call


def test_bn_statistics_of_unknown_buffers_or_shapes_are_named(checkpoint, scratch):
    torch = pytest.importorskip("torch")
    from ddnn_deploy.checkpoint import load_checkpoint

    _, _, valid = checkpoint
    for stats, text in (
        ({"1-1-1": {"bn9.running_mean": torch.zeros(4)}}, "unknown buffers: bn9.running_mean"),
        ({"1-1-1": {"bn1.running_mean": torch.zeros(5)}}, r"bn1.running_mean has shape \[5\], not \[4\]"),
        ({"1-1-1": {"bn1.running_mean": [0.0] * 4}}, r"bn_stats\['1-1-1'\]\['bn1.running_mean'\] is a list"),
        ({"9-9-9": {"bn1.running_mean": torch.zeros(4)}}, "depth 9-9-9 does not fit"),
        ({"1-1-1": torch.zeros(4)}, r"bn_stats\['1-1-1'\] must be a dict of tensors"),
    ):
        path = scratch / "bn.pt"
        torch.save({**valid, "bn_stats": stats}, path)
        with pytest.raises(CheckpointError, match=text):
            load_checkpoint(path).build()


def test_an_expanded_tensor_claiming_gigabytes_is_refused_before_allocation(checkpoint, scratch):
    torch = pytest.importorskip("torch")
    from ddnn_deploy.checkpoint import load_checkpoint

    _, _, valid = checkpoint
    path = scratch / "expanded.pt"
    state = dict(valid["state_dict"], **{"fc.weight": torch.zeros(1, 64).expand(10**9, 64)})
    torch.save({**valid, "state_dict": state}, path)  # 64 floats on disk, 256 GB as a weight
    with pytest.raises(CheckpointError, match=r"fc.weight'\] of shape \[1000000000, 64\] is backed by only 256 bytes"):
        load_checkpoint(path)
    torch.save({**valid, "model": {**valid["model"], "width": 10**6}}, path)  # refused before building anything
    with pytest.raises(CheckpointError, match="width 1000000 is beyond what ddnn-deploy builds"):
        load_checkpoint(path).build()
    torch.save({**valid, "model": {**valid["model"], "width": 4096}}, path)  # within limits: meta-device check
    with pytest.raises(CheckpointError, match="checkpoint weights do not fit cifar_resnet20: conv1.weight has shape"):
        load_checkpoint(path).build()


# ---------------------------------------------------------------------------------------- convert: weights files

WEIGHT_NAMES = st.sampled_from(["conv1.weight", "fc.weight", "fc.bias", "classifier.6.weight", "module.bn1.weight"])


@FEW
@given(data=st.data())
def test_convert_weights_files(checkpoint, scratch, data):
    import torch

    from ddnn_deploy.convert import convert_weights

    path, _, valid = checkpoint
    suffix = data.draw(st.sampled_from([".pth", ".pt", ".bin", ".safetensors"]))
    weights = fresh(scratch) / f"weights{suffix}"
    how = data.draw(st.sampled_from(["bytes", "state_dict"]))
    if how == "bytes":
        plain = io.BytesIO()
        torch.save(valid["state_dict"], plain)
        weights.write_bytes(data.draw(damaged(plain.getvalue())))
    else:
        state = data.draw(
            st.dictionaries(WEIGHT_NAMES | st.text(max_size=5) | st.integers(0, 3), _tensors(), max_size=4)
        )
        wrapper = data.draw(st.sampled_from([None, "state_dict", "model"]))
        torch.save(state if wrapper is None else {wrapper: state}, weights)
    out = weights.with_name("out.pt")
    only_ours(lambda: convert_weights(arch="cifar_resnet20", weights=weights, out=out), "convert_weights")


# ---------------------------------------------------------------------------------------- IDX and CIFAR binary


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


VALID_IDX = _idx(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))


@st.composite
def idx_headers(draw) -> bytes:
    """A header with any magic, 0-6 dimensions of any size, and a payload of about the declared size."""
    magic = draw(st.sampled_from([b"\0\0\x08", b"\0\0\x09", b"\x1f\x8b\x08"]) | st.binary(min_size=3, max_size=3))
    dims = draw(st.lists(st.integers(0, 5) | st.sampled_from([2**32 - 1, 2**31]), max_size=6))
    ndim = draw(st.just(len(dims)) | st.integers(0, 255))
    header = magic + bytes([ndim]) + b"".join(struct.pack(">I", d) for d in dims)
    size = 1
    for d in dims:
        size *= d
    return header + b"\x07" * min(max(0, size + draw(st.integers(-2, 2))), 4096)


@FUZZ
@given(content=damaged(VALID_IDX) | idx_headers(), gz=st.sampled_from(["plain", "gz", "gz-damaged"]), data=st.data())
def test_idx_files(scratch, content, gz, data):
    from ddnn_deploy.data import read_idx

    path = fresh(scratch) / ("t10k-images-idx3-ubyte" + ("" if gz == "plain" else ".gz"))
    if gz == "plain":
        path.write_bytes(content)
    else:
        packed = gzip.compress(content)
        path.write_bytes(packed if gz == "gz" else data.draw(mangled(packed)))
    only_ours(lambda: read_idx(path), "read_idx")


@FEW
@given(images=damaged(VALID_IDX) | idx_headers(), labels=damaged(_idx(np.array([1, 2], np.uint8))))
def test_fashion_mnist_folder(scratch, images, labels):
    from ddnn_deploy.data import load_fashion_mnist

    folder = fresh(scratch)
    (folder / "t10k-images-idx3-ubyte").write_bytes(images)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(labels)
    only_ours(lambda: load_fashion_mnist(folder, "test"), "load_fashion_mnist")


def test_idx_labels_out_of_range_and_a_bomb_are_refused(scratch):
    from ddnn_deploy.data import load_fashion_mnist, read_idx

    folder = fresh(scratch)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx(np.zeros((2, 28, 28), np.uint8)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.array([3, 200], np.uint8)))
    with pytest.raises(DataError, match="label 200 is out of range for 10 classes"):
        load_fashion_mnist(folder, "test")
    bomb = folder / "bomb.gz"  # says 10 labels, inflates to 64 MB: read_idx stops after the 10 it declared
    bomb.write_bytes(gzip.compress(_idx(np.zeros(10, np.uint8)) + bytes(64 << 20)))
    with pytest.raises(DataError, match=r"header says \(10,\), found more bytes"):
        read_idx(bomb)


@FEW
@given(
    content=st.binary(max_size=7000)
    | st.integers(1, 2).map(lambda n: bytes(range(256)) * 12 * n + bytes(3074 * n - 3072 * n)),
    names=st.none() | st.binary(max_size=40) | st.just("\n".join(str(i) for i in range(100)).encode()),
)
def test_cifar_binary(scratch, content, names):
    from ddnn_deploy.data import load_cifar_binary

    folder = fresh(scratch)
    (folder / "test.bin").write_bytes(content)
    if names is not None:
        (folder / "fine_label_names.txt").write_bytes(names)
    only_ours(lambda: load_cifar_binary(folder, "test"), "load_cifar_binary")


# ---------------------------------------------------------------------------------------- .npz calibration samples

ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.float32, np.int64, np.bool_, np.complex64, np.dtype("U2"), np.dtype("M8[s]")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
)


def _npz(arrays: dict, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


VALID_NPZ = _npz({"images": np.zeros((3, 1, 4, 4), np.uint8), "labels": np.arange(3)})
VALID_NPZ_DEFLATED = _npz({"images": np.zeros((3, 1, 4, 4), np.uint8)}, compressed=True)


@FUZZ
@given(
    content=damaged(VALID_NPZ)
    | mangled(VALID_NPZ_DEFLATED)
    | st.builds(
        _npz,
        st.dictionaries(st.sampled_from(["images", "labels", "x"]), ARRAYS, max_size=2),
        st.booleans(),
    )
)
def test_npz_calibration_samples(scratch, content):
    from ddnn_deploy.quantize.reader import calibration_images

    path = fresh(scratch) / "sample.npz"
    path.write_bytes(content)
    only_ours(
        lambda: calibration_images(str(path), input_shape=(1, 4, 4), samples=2, manifest_dataset=None),
        "calibration_images(.npz)",
    )


def test_empty_npz_and_npz_claiming_terabytes(scratch):
    from ddnn_deploy.quantize.reader import calibration_images, load_npz_sample

    empty = scratch / "empty.npz"
    empty.write_bytes(_npz({}))
    with pytest.raises(DataError, match=r"has no 'images' array \(it holds: nothing\)"):
        load_npz_sample(empty)
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 1, 10000, 10000), }"
    header = header + " " * (117 - len(header)) + "\n"
    huge = scratch / "huge.npz"
    with zipfile.ZipFile(huge, "w") as archive:
        archive.writestr("images.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    with pytest.raises(DataError, match=r"'images' is truncated or corrupt: its header says uint8 \(100000, 1, 10000"):
        calibration_images(str(huge), input_shape=(1, 28, 28), samples=4, manifest_dataset=None)


# ---------------------------------------------------------------------------------------- images


def _encoded(mode: str, fmt: str, size=(9, 7)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def encoded_images():
    pytest.importorskip("PIL.Image")
    made = []
    for mode, fmt in (("RGB", "PNG"), ("L", "PNG"), ("RGB", "JPEG"), ("L", "GIF"), ("I;16", "TIFF"), ("RGBA", "WEBP")):
        made.append(_encoded(mode, fmt))
    made.append(_encoded("1", "BMP"))
    made.append(_encoded("CMYK", "JPEG"))
    return made


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds (almost) none: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"x\x9c\x03\x00\x00\x00\x00\x01")
        + chunk(b"IEND", b"")
    )


@FUZZ
@given(data=st.data(), channels=st.sampled_from([1, 3]))
def test_decode_image_bytes(encoded_images, data, channels):
    from ddnn_deploy.runtime.inputs import decode_image, to_pixels

    valid = data.draw(st.sampled_from(encoded_images))
    content = data.draw(damaged(valid))
    only_ours(lambda: decode_image(content, (channels, 8, 8)), "decode_image")
    only_ours(lambda: to_pixels([content], (channels, 8, 8)), "to_pixels")


@FUZZ
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(
            [np.uint8, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_, np.complex128, "M8[s]", "U1"]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=12),
    ),
    shape=st.sampled_from([(1, 8, 8), (3, 8, 8), (1, 12, 12)]),
)
def test_arrays(array, shape):
    pytest.importorskip("PIL.Image")
    from ddnn_deploy.runtime.inputs import from_array, to_pixels

    pixels = only_ours(lambda: to_pixels(array, shape), "to_pixels(array)")
    if isinstance(pixels, tuple):
        assert pixels[0].dtype == np.float32 and pixels[0].shape[1:] == shape and np.isfinite(pixels[0]).all()
    only_ours(lambda: to_pixels([array, array], shape), "to_pixels([array, array])")
    only_ours(lambda: from_array(array, shape, "x"), "from_array")


def test_odd_arrays_and_pil_images():
    Image = pytest.importorskip("PIL.Image")
    from ddnn_deploy.runtime.inputs import to_pixels

    for array in (
        np.array([None, 1], dtype=object),
        np.full((8, 8), np.nan),
        np.full((9, 9), np.inf),
        np.full((8, 8), 1e300),
        np.zeros((0, 8, 8)),
        np.zeros((8, 8), dtype=[("a", "f4")]),
        np.ones((8, 8), np.complex64),
    ):
        assert isinstance(only_ours(lambda a=array: to_pixels(a, (1, 8, 8))), DataError), array.dtype
    for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16", "LA", "YCbCr", "HSV", "LAB"):
        for size in ((0, 0), (5, 0), (1, 1), (3, 50)):
            image = Image.new(mode, size)
            result = only_ours(lambda i=image: to_pixels([i], (3, 8, 8)), f"to_pixels(PIL {mode} {size})")
            assert isinstance(result, DataError) == (0 in size), (mode, size, result)


def test_a_very_elongated_image_is_resized_in_bounded_memory():
    Image = pytest.importorskip("PIL.Image")
    from ddnn_deploy.runtime.inputs import decode_image

    strip = io.BytesIO()
    Image.new("L", (1_000_000, 1), 7).save(strip, "PNG")  # resize-then-crop would need 32 G pixels at 224
    pixels = only_ours(lambda: decode_image(strip.getvalue(), (3, 224, 224)), "decode_image(1000000 x 1)")
    assert isinstance(pixels, np.ndarray) and pixels.shape == (3, 224, 224) and int(pixels.max()) == 7


@pytest.mark.parametrize("width,height", [(7000, 7000), (10_000, 10_000), (30_000, 30_000)])
def test_decompression_bombs_are_data_errors(scratch, width, height):
    """49 MP (over our 40 MP), 100 MP (PIL's DecompressionBombWarning), 900 MP (its DecompressionBombError)."""
    pytest.importorskip("PIL.Image")
    from ddnn_deploy.data import load_image_folder
    from ddnn_deploy.quantize.reader import calibration_images
    from ddnn_deploy.runtime.inputs import decode_image

    bomb = _png_header(width, height)
    with pytest.raises(DataError, match="the request body: the image has more than 40000000 pixels"):
        decode_image(bomb, (1, 28, 28), name="the request body")
    folder = fresh(scratch)
    (folder / "shoes").mkdir()
    (folder / "shoes" / "bomb.png").write_bytes(bomb)
    with pytest.raises(DataError, match=f"{folder / 'shoes' / 'bomb.png'}: the image has more than 40000000"):
        load_image_folder(folder, size=28)
    with pytest.raises(DataError, match="bomb.png: the image has more than"):
        calibration_images(str(folder / "shoes"), input_shape=(1, 28, 28), samples=4, manifest_dataset=None)


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".jpg", ".png", ".webp", ".bmp"]))
def test_image_folder_with_a_damaged_image_names_it(scratch, encoded_images, data, suffix):
    from ddnn_deploy.data import load_image_folder

    folder = fresh(scratch)
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "a" / "good.png").write_bytes(encoded_images[0])
    bad = folder / "b" / f"bad{suffix}"
    bad.write_bytes(data.draw(damaged(data.draw(st.sampled_from(encoded_images)))))
    result = only_ours(lambda: load_image_folder(folder, size=8), "load_image_folder")
    if isinstance(result, DDNNError):
        assert isinstance(result, DataError) and str(bad) in str(result), str(result)
