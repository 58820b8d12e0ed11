"""Contract with the real TensorRT / cuda-python bindings, without either installed (issue 12).

``tests/fixtures/trt_bindings/*.json`` record, from the real wheels of every supported version (TensorRT 8.6, 10.x,
11.x; cuda-python 11.8 with the old ``cuda.cudart``, 12.x and 13.x with ``cuda.bindings.runtime``), whether each
attribute ddnn-deploy touches exists, its kind and its signature; ``scripts/record_trt_bindings.py`` made them (its
docstring has the pip commands to regenerate them).

What is checked against every fixture:

* every ``trt.X`` / ``cudart.X`` access and every method or property used on a TensorRT object (found by an AST scan
  of the modules that use the bindings: ``builder.``, ``network.``, ``parser.``, ``config.``, ``profile.``,
  ``engine.``, ``context.``, ``runtime.``, ``tensor.``, and ``props.`` for cudaDeviceProp) exists in every version the
  code reaches it on: a use inside ``if major < 11:`` (and the like), behind ``getattr(x, "name", None)`` /
  ``hasattr``, or after ``getattr(...) or`` counts as handled where the attribute is absent;
* every call passes a number of positional arguments, and keyword names, that one recorded overload accepts;
* the signatures, return types and ``(cudaError_t, *values)`` tuples the code relies on;
* ``build_engine`` and ``CudaBuffers`` run against fakes that have exactly the recorded attributes of each version.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "trt_bindings"
SOURCES = (
    ROOT / "ddnn_deploy" / "runners" / "tensorrt_runner.py",
    ROOT / "ddnn_deploy" / "runners" / "cuda_buffers.py",
)


def _load(prefix: str) -> dict[str, dict[str, Any]]:
    fixtures = {}
    for path in sorted(FIXTURES.glob(f"{prefix}-*.json")):
        data = json.loads(path.read_text())
        fixtures[data["version"]] = data
    return fixtures


TRT = _load("tensorrt")
CUDA = _load("cuda-python")


def _major(version: str) -> int:
    return int(version.split(".")[0])


# --- which bindings object a name in the code stands for ---

TRT_MODULE = {"trt"}  # trt.X, self.trt.X
CUDART_MODULE = {"cudart"}  # cudart.X, self.cudart.X
TRT_OBJECTS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "runtime": "Runtime",
    "tensor": "ITensor",
    "logger": "Logger",
}
CUDART_OBJECTS = {"props": "cudaDeviceProp"}

# uses the code reaches where the attribute is missing, with no fallback: (owner, key) -> the reason (xfail).
# None so far: record one here, with file:line and version, only together with a report to whoever owns the code.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


@dataclass
class Use:
    owner: str  # "tensorrt" or "cuda-python"
    key: str  # "BuilderFlag.FP16", "IExecutionContext.set_input_shape", "cudaMemcpyAsync"
    where: str  # file:line
    call: tuple[int, tuple[str, ...]] | None = None  # (positional count, keyword names) when called
    guarded: bool = False  # getattr(x, "name", default) / hasattr(x, "name")
    conditions: list[tuple[ast.expr, bool]] = field(default_factory=list)  # enclosing tests and their polarity


def _chain(node: ast.expr) -> tuple[str, list[str]] | None:
    """``self.trt.BuilderFlag.FP16`` -> ("trt", ["BuilderFlag", "FP16"]); the base is the name after ``self.``."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.insert(0, node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id == "self" and attrs:
        return attrs[0], attrs[1:]
    return node.id, attrs


def _classify(base: str, attrs: list[str]) -> tuple[str, list[str], bool] | None:
    """(owner, key parts, whether the key is the whole chain) of an attribute chain on a bindings module or
    object, else None. ``trt.BuilderFlag.FP16`` -> BuilderFlag.FP16; ``props.name.decode`` -> cudaDeviceProp.name
    (what comes after is the value's, not the bindings')."""
    if base in TRT_MODULE and attrs and not attrs[0].startswith("__"):
        return "tensorrt", attrs[:2], len(attrs) <= 2
    if base in CUDART_MODULE and attrs:
        return "cuda-python", attrs[:2], len(attrs) <= 2
    if base in TRT_OBJECTS and attrs:
        return "tensorrt", [TRT_OBJECTS[base], attrs[0]], len(attrs) == 1
    if base in CUDART_OBJECTS and attrs:
        return "cuda-python", [CUDART_OBJECTS[base], attrs[0]], len(attrs) == 1
    return None


class _Scanner:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.uses: list[Use] = []
        self.imports: list[str] = []

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(ROOT)}:{node.lineno}"

    def add(self, node: ast.AST, chain: tuple[str, list[str]], conds: list, **extra: Any) -> bool:
        found = _classify(*chain)
        if found is None:
            return False
        owner, parts, whole = found
        if not whole:  # the call is to something on the attribute's value
            extra.pop("call", None)
        self.uses.append(Use(owner, ".".join(parts), self.where(node), conditions=list(conds), **extra))
        return True

    def visit(self, node: ast.AST, conds: list[tuple[ast.expr, bool]]) -> None:
        if isinstance(node, (ast.If, ast.IfExp, ast.While)):
            self.visit(node.test, conds)
            for child in node.body if isinstance(node.body, list) else [node.body]:
                self.visit(child, [*conds, (node.test, True)])
            for child in node.orelse if isinstance(node.orelse, list) else [node.orelse]:
                self.visit(child, [*conds, (node.test, False)])
            return
        if isinstance(node, ast.BoolOp):  # `a or b`: b runs only when a is falsy; `a and b`: when a is truthy
            for i, value in enumerate(node.values):
                self.visit(value, [*conds, *((earlier, isinstance(node.op, ast.And)) for earlier in node.values[:i])])
            return
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "cuda":
            self.imports.extend(f"{node.module}.{alias.name}" for alias in node.names)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr") and len(node.args) >= 2:
                target, name = node.args[0], node.args[1]
                chain = _chain(target)
                if chain and isinstance(name, ast.Constant) and isinstance(name.value, str):
                    guarded = func.id == "hasattr" or len(node.args) == 3
                    if self.add(node, (chain[0], [*chain[1], name.value]), conds, guarded=guarded):
                        for arg in node.args[2:]:
                            self.visit(arg, conds)
                        return
            chain = _chain(func) if isinstance(func, ast.Attribute) else None
            plain = not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)
            if chain and plain:
                call = (len(node.args), tuple(k.arg for k in node.keywords))
                if self.add(node, chain, conds, call=call):
                    for child in [*node.args, *(k.value for k in node.keywords)]:
                        self.visit(child, conds)
                    return
        if isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain and self.add(node, chain, conds):
                return
        for child in ast.iter_child_nodes(node):
            self.visit(child, conds)


def scan(paths: tuple[Path, ...] = SOURCES) -> tuple[list[Use], list[str]]:
    uses, imports = [], []
    for path in paths:
        scanner = _Scanner(path)
        scanner.visit(ast.parse(path.read_text()), [])
        uses.extend(scanner.uses)
        imports.extend(scanner.imports)
    return uses, imports


USES, CUDA_IMPORTS = scan()


# --- reading the fixtures ---


def lookup(fixture: dict[str, Any], key: str) -> dict[str, Any]:
    """The recorded entry of ``key``; an enum member or a class member by name when only its owner is recorded;
    ``{"kind": "unrecorded"}`` when the recorder does not cover it (extend scripts/record_trt_bindings.py)."""
    attributes = fixture["attributes"]
    if key in attributes:
        return attributes[key]
    owner, _, name = key.rpartition(".")
    parent = attributes.get(owner)
    if parent is None:
        return {"kind": "unrecorded"}
    if parent["kind"] == "missing":
        return {"kind": "missing"}
    if parent["kind"] == "enum" and name in parent["members"]:
        return {"kind": "enum member", "value": parent["members"][name]}
    if parent["kind"] == "enum" and parent.get("count", len(parent["members"])) == len(parent["members"]):
        return {"kind": "missing"}  # every member was recorded
    if parent["kind"] == "class" and "members" in parent:
        return {"kind": "member"} if name in parent["members"] else {"kind": "missing"}
    return {"kind": "unrecorded"}


def exists(fixture: dict[str, Any], key: str) -> bool | None:
    kind = lookup(fixture, key)["kind"]
    return None if kind == "unrecorded" else kind != "missing"


def _split_top(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass
class Signature:
    params: list[tuple[str, bool]]  # (name, has a default), self dropped
    returns: str | None
    varargs: bool


def parse_signature(text: str) -> Signature:
    """``name(self: X, a: int, b: int = 0) -> bool`` (pybind11) or ``name(a, b: 'T')`` (inspect.signature)."""
    match = re.match(r"^[\w.]*\((.*)\)\s*(?:->\s*(.+))?$", text.strip())
    assert match, f"not a signature: {text!r}"
    params, varargs = [], False
    for raw in _split_top(match.group(1)):
        name = re.split(r"[:=]", raw, maxsplit=1)[0].strip()
        if name.startswith("*"):
            varargs = True
            continue
        if name == "/":
            continue
        params.append((name, "=" in raw))
    if params and params[0][0] == "self":
        params = params[1:]
    return Signature(params, match.group(2).strip() if match.group(2) else None, varargs)


def signatures(fixture: dict[str, Any], key: str) -> list[Signature]:
    entry = lookup(fixture, key)
    if entry["kind"] == "class":
        entry = lookup(fixture, f"{key}.__init__")
    return [parse_signature(s) for s in entry.get("signatures", [])]


def accepts(sig: Signature, positional: int, keywords: tuple[str, ...]) -> bool:
    names = [name for name, _ in sig.params]
    if positional > len(names) and not sig.varargs:
        return False
    if any(k not in names[positional:] for k in keywords) and not sig.varargs:
        return False
    required = [name for name, default in sig.params[positional:] if not default]
    return all(name in keywords for name in required)


# --- evaluating the conditions a use sits under, per version (True / False / unknown) ---


def _is_major(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "major"
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "trt_major"


_COMPARE = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}


def evaluate(node: ast.expr, owner: str, version: str) -> bool | None:
    fixture = (TRT if owner == "tensorrt" else CUDA)[version]
    if isinstance(node, ast.BoolOp):
        values = [evaluate(v, owner, version) for v in node.values]
        if isinstance(node.op, ast.And):
            return False if False in values else (True if all(v is True for v in values) else None)
        return True if True in values else (False if all(v is False for v in values) else None)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        value = evaluate(node.operand, owner, version)
        return None if value is None else not value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = node.left, node.comparators[0]
        if owner == "tensorrt" and _is_major(left) and isinstance(right, ast.Constant):
            return _COMPARE[type(node.ops[0])](_major(version), right.value)
        if owner == "tensorrt" and _is_major(right) and isinstance(left, ast.Constant):
            return _COMPARE[type(node.ops[0])](left.value, _major(version))
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
        chain = _chain(node.args[0]) if node.args else None
        name = node.args[1] if len(node.args) > 1 else None
        if chain and isinstance(name, ast.Constant):
            found = _classify(chain[0], [*chain[1], name.value])
            if found and found[0] == owner:
                present = exists(fixture, ".".join(found[1]))
                if node.func.id == "hasattr" or present is False:
                    return present
                if lookup(fixture, ".".join(found[1]))["kind"] in ("function", "method", "class"):
                    return True  # a callable is truthy; a property or enum value may be 0
    return None


def reached(use: Use, version: str) -> bool:
    """Whether the code can reach ``use`` with this version installed (False only when a condition proves not)."""
    for test, polarity in use.conditions:
        value = evaluate(test, use.owner, version)
        if value is not None and value != polarity:
            return False
    return True


def _params(keys: list[tuple[str, str]]) -> list[Any]:
    out = []
    for owner, key in keys:
        gap = KNOWN_GAPS.get((owner, key))
        marks = [pytest.mark.xfail(reason=gap, strict=True)] if gap else []
        out.append(pytest.param(owner, key, marks=marks, id=f"{owner}:{key}"))
    return out


USED_KEYS = sorted({(u.owner, u.key) for u in USES})
CALLED_KEYS = sorted({(u.owner, u.key) for u in USES if u.call is not None})


# --- the fixtures themselves ---


def test_fixtures_cover_every_supported_major():
    assert {_major(v) for v in TRT} >= {8, 10, 11}, sorted(TRT)
    assert {_major(v) for v in CUDA} >= {11, 12, 13}, sorted(CUDA)
    for fixture in [*TRT.values(), *CUDA.values()]:
        assert fixture["attributes"], fixture["version"]


def test_fixtures_hold_everything_the_recorder_lists():
    """A name added to the recorder's lists without regenerating the fixtures is caught here."""
    spec = importlib.util.spec_from_file_location("record_trt_bindings", ROOT / "scripts" / "record_trt_bindings.py")
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    trt_keys = [*recorder.TRT_ENUMS, *recorder.TRT_FUNCTIONS, *recorder.TRT_CLASSES]
    trt_keys += [f"{cls}.{m}" for cls, members in recorder.TRT_CLASSES.items() for m in members]
    for version, fixture in TRT.items():
        absent = [k for k in trt_keys if lookup(fixture, k)["kind"] == "unrecorded"]
        absent = [k for k in absent if lookup(fixture, k.split(".")[0])["kind"] != "missing"]
        assert not absent, f"TensorRT {version}: regenerate the fixture, it lacks {absent}"
    cuda_keys = [*recorder.CUDART_FUNCTIONS, *recorder.CUDART_ENUMS, *recorder.CUDART_VALUES, *recorder.CUDART_CLASSES]
    for version, fixture in CUDA.items():
        absent = [k for k in cuda_keys if k not in fixture["attributes"]]
        assert not absent, f"cuda-python {version}: regenerate the fixture, it lacks {absent}"


def test_the_scan_finds_what_the_code_is_known_to_use():
    """Guards the scanner itself: if these vanish, the AST walk (not the code) broke."""
    keys = {u.key for u in USES}
    for key in (
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
        "BuilderFlag.FP16",
        "OnnxParser.parse_from_file",
        "IExecutionContext.set_input_shape",
        "IExecutionContext.execute_async_v3",
        "ICudaEngine.get_tensor_mode",
        "Runtime.deserialize_cuda_engine",
        "cudaMemcpyAsync",
        "cudaMemcpyKind.cudaMemcpyHostToDevice",
        "cudaGetDeviceProperties",
        "cudaDeviceProp.multiProcessorCount",
    ):
        assert key in keys, key
    explicit = [u for u in USES if u.key == "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"]
    assert all(not reached(u, v) for u in explicit for v in TRT if _major(v) >= 10)
    assert any(reached(u, v) for u in explicit for v in TRT if _major(v) < 10)


# --- existence and calls, per attribute the code touches ---


@pytest.mark.parametrize(("owner", "key"), _params(USED_KEYS))
def test_every_attribute_the_code_touches_exists_where_it_is_reached(owner, key):
    fixtures = TRT if owner == "tensorrt" else CUDA
    problems = []
    for use in (u for u in USES if (u.owner, u.key) == (owner, key)):
        for version, fixture in fixtures.items():
            present = exists(fixture, key)
            assert present is not None, (
                f"{key} ({use.where}) is not recorded: add it to scripts/record_trt_bindings.py and regenerate"
            )
            if not present and not use.guarded and reached(use, version):
                problems.append(f"{use.where}: {key} is missing in {owner} {version}, with no fallback there")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("owner", "key"), _params(CALLED_KEYS))
def test_every_call_matches_a_recorded_signature(owner, key):
    fixtures = TRT if owner == "tensorrt" else CUDA
    problems = []
    for use in (u for u in USES if (u.owner, u.key) == (owner, key) and u.call is not None):
        for version, fixture in fixtures.items():
            if not exists(fixture, key) or not reached(use, version):
                continue
            entry = lookup(fixture, key)
            if entry["kind"] == "member":
                problems.append(f"{key} is called ({use.where}) but only its name is recorded: list it in the recorder")
                continue
            if entry["kind"] not in ("method", "static method", "function", "class"):
                continue  # a property or enum member used as a callable is not this test's concern
            sigs = signatures(fixture, key)
            if sigs and not any(accepts(s, *use.call) for s in sigs):
                recorded = entry.get("signatures") or lookup(fixture, f"{key}.__init__")["signatures"]
                problems.append(f"{use.where}: {key} called with {use.call} in {owner} {version}; recorded {recorded}")
    assert not problems, "\n".join(problems)


# --- the signatures and values the code relies on ---

# (params after self, in order; return type or None) for every version
TRT_SIGNATURES = {
    "Logger.__init__": (["min_severity"], "None"),
    "Builder.__init__": (["logger"], "None"),
    "Builder.create_network": (["flags"], "tensorrt.INetworkDefinition"),
    "Builder.create_builder_config": ([], "tensorrt.IBuilderConfig"),
    "Builder.create_optimization_profile": ([], "tensorrt.IOptimizationProfile"),
    "Builder.build_serialized_network": (["network", "config"], "tensorrt.IHostMemory"),
    "OnnxParser.__init__": (["network", "logger"], "None"),
    "OnnxParser.parse_from_file": (["model"], "bool"),
    "IBuilderConfig.set_memory_pool_limit": (["pool", "pool_size"], "None"),
    "IBuilderConfig.set_flag": (["flag"], "None"),
    "IBuilderConfig.clear_flag": (["flag"], "None"),
    "IBuilderConfig.add_optimization_profile": (["profile"], "int"),
    "IOptimizationProfile.set_shape": (["input", "min", "opt", "max"], "None"),
    "INetworkDefinition.get_input": (["index"], "tensorrt.ITensor"),
    "Runtime.__init__": (["logger"], "None"),
    "Runtime.deserialize_cuda_engine": (["serialized_engine"], "tensorrt.ICudaEngine"),
    "ICudaEngine.get_tensor_name": (["index"], "str"),
    "ICudaEngine.get_tensor_mode": (["name"], "TensorIOMode"),  # 8.6 prints nvinfer1::TensorIOMode
    "ICudaEngine.get_tensor_dtype": (["name"], "tensorrt.DataType"),
    "IExecutionContext.set_input_shape": (["name", "shape"], "bool"),  # False outside the profile
    "IExecutionContext.set_tensor_address": (["name", "memory"], "bool"),
    "IExecutionContext.get_tensor_shape": (["name"], "tensorrt.Dims"),
    "IExecutionContext.execute_async_v3": (["stream_handle"], "bool"),
    "IExecutionContext.set_optimization_profile_async": (["profile_index", "stream_handle"], "bool"),
}
TRT_PROPERTIES = {
    "ICudaEngine.num_io_tensors": "int",
    "ICudaEngine.num_optimization_profiles": "int",
    "OnnxParser.num_errors": "int",
    "ITensor.shape": "tensorrt.Dims",
    "ITensor.name": "str",
}


@pytest.mark.parametrize("version", sorted(TRT))
def test_tensorrt_signatures_the_code_relies_on(version):
    fixture = TRT[version]
    problems = []
    for key, (params, returns) in TRT_SIGNATURES.items():
        sigs = signatures(fixture, key)
        # some overload takes exactly these parameters in this order and returns this type (others may be added)
        if not any([n for n, _ in s.params] == params and (s.returns or "").endswith(returns) for s in sigs):
            problems.append(f"{key}: {lookup(fixture, key).get('signatures')}")
    for key, returns in TRT_PROPERTIES.items():
        entry = lookup(fixture, key)
        if entry["kind"] != "property" or not any(s.endswith(f"-> {returns}") for s in entry["signatures"]):
            problems.append(f"{key}: {entry}")
    assert not problems, f"TensorRT {version}:\n" + "\n".join(problems)


def test_tensorrt_version_differences_the_code_handles():
    """What differs between the versions, each handled in ddnn_deploy/runners/tensorrt_runner.py."""
    for version, fixture in TRT.items():
        major, attrs = _major(version), fixture["attributes"]
        flags = attrs["NetworkDefinitionCreationFlag"]["members"]
        builder_flags = attrs["BuilderFlag"]["members"]
        # EXPLICIT_BATCH 0 through 10.x (deprecated in 10, where explicit batch is implicit), gone in 11;
        # STRONGLY_TYPED from 10.0: 1 in 10.x, 0 in 11 (where it is the first member)
        assert flags.get("EXPLICIT_BATCH") == (0 if major < 11 else None), (version, flags)
        assert flags.get("STRONGLY_TYPED") == {8: None, 10: 1, 11: 0}[major], (version, flags)
        # 11 has no precision flags (precision comes from the graph); TF32 stays, with a version-dependent value
        assert ("FP16" in builder_flags and "INT8" in builder_flags) == (major < 11), (version, builder_flags)
        assert "TF32" in builder_flags, version
        # device_memory_size_v2 from 10.x, device_memory_size gone in 11: info() reads them with getattr
        assert exists(fixture, "ICudaEngine.device_memory_size_v2") == (major >= 10), version
        assert exists(fixture, "ICudaEngine.device_memory_size") == (major < 11), version
        # Builder.platform_has_* are gone in 11
        assert exists(fixture, "Builder.platform_has_tf32") == (major < 11), version
        # the DataType values (used by name; stable across versions), and .name on the members
        dtypes = attrs["DataType"]["members"]
        stable = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "FP8": 6}
        assert {k: dtypes[k] for k in stable} == stable, (version, dtypes)
        assert {k: dtypes.get(k) for k in ("BF16", "INT64")} == (
            {"BF16": 7, "INT64": 8} if major >= 10 else {"BF16": None, "INT64": None}
        ), (version, dtypes)
        assert attrs["DataType"]["member_name_attr"], version
        assert attrs["TensorIOMode"]["members"] == {"NONE": 0, "INPUT": 1, "OUTPUT": 2}, version
        assert attrs["Logger.WARNING"] == {"kind": "enum member", "value": 2}, version


def test_network_flags_from_the_recorded_enums():
    from ddnn_deploy.runners import tensorrt_runner as trt_runner

    expected = {8: 1 << 0, 10: 0, 11: 1 << 0}  # EXPLICIT_BATCH (0); none; STRONGLY_TYPED (0 in 11)
    for version, fixture in TRT.items():
        fake = FakeTrt(fixture)
        assert trt_runner.builder_network_flags(fake, "fp16") == expected[_major(version)], version


@pytest.mark.parametrize("version", sorted(TRT))
def test_numpy_dtypes_of_every_recorded_data_type(version):
    """The code maps DataType to numpy by name (trt.nptype used np.bool up to 8.5.2, gone in numpy 1.24)."""
    from ddnn_deploy.errors import DDNNError
    from ddnn_deploy.runners import tensorrt_runner as trt_runner

    numpy_dtype = getattr(trt_runner, "numpy_dtype", None)
    if numpy_dtype is None:
        pytest.skip("tensorrt_runner.numpy_dtype is not there (yet)")
    fake = FakeTrt(TRT[version])
    expected = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64"}
    expected.update({"BOOL": "bool", "UINT8": "uint8"})
    for name in TRT[version]["attributes"]["DataType"]["members"]:
        member = getattr(fake.DataType, name)
        if name in expected:
            assert numpy_dtype(member) == np.dtype(expected[name]), (version, name)
        else:  # BF16, FP8, INT4, FP4, E8M0: no numpy type, one clear error
            with pytest.raises(DDNNError):
                numpy_dtype(member)


# cuda-python: (params in order, values after cudaError_t) for every version. The code unpacks with _check:
# one value -> that value, several -> a tuple, none -> None
CUDART_SIGNATURES = {
    "cudaStreamCreate": ([], 1),
    "cudaStreamSynchronize": (["stream"], 0),
    "cudaStreamDestroy": (["stream"], 0),
    "cudaMalloc": (["size"], 1),
    "cudaFree": (["devPtr"], 0),
    "cudaHostAlloc": (["size", "flags"], 1),
    "cudaFreeHost": (["ptr"], 0),
    "cudaMemcpyAsync": (["dst", "src", "count", "kind", "stream"], 0),
    "cudaMemGetInfo": ([], 2),
    "cudaGetDeviceProperties": (["device"], 1),
    "cudaRuntimeGetVersion": ([], 1),
    "cudaDriverGetVersion": ([], 1),
    "cudaEventCreate": ([], 1),
    "cudaEventRecord": (["event", "stream"], 0),
    "cudaEventSynchronize": (["event"], 0),
    "cudaEventElapsedTime": (["start", "end"], 1),
    "cudaEventDestroy": (["event"], 0),
}


@pytest.mark.parametrize("version", sorted(CUDA))
def test_cudart_signatures_and_return_tuples(version):
    fixture = CUDA[version]
    problems = []
    for name, (params, values) in CUDART_SIGNATURES.items():
        entry = lookup(fixture, name)
        if entry["kind"] != "function":
            problems.append(f"{name}: {entry['kind']}")
            continue
        sig = parse_signature(entry["signatures"][0])
        if [n for n, _ in sig.params] != params:
            problems.append(f"{name}: parameters {entry['signatures']}")
        if entry["returns"] != ["cudaError_t", *entry["returns"][1:]] or len(entry["returns"]) - 1 != values:
            problems.append(f"{name}: returns {entry['returns']}")
    attrs = fixture["attributes"]
    kinds = attrs["cudaMemcpyKind"]["members"]
    if (kinds.get("cudaMemcpyHostToDevice"), kinds.get("cudaMemcpyDeviceToHost")) != (1, 2):
        problems.append(f"cudaMemcpyKind: {kinds}")
    if attrs["cudaError_t"]["members"].get("cudaErrorInsufficientDriver") != 35:  # cuda_buffers.py hard-codes 35
        problems.append(f"cudaError_t: {attrs['cudaError_t']['members']}")
    if attrs["cudaHostAllocDefault"].get("value") != 0:  # cuda_buffers.py passes 0
        problems.append(f"cudaHostAllocDefault: {attrs['cudaHostAllocDefault']}")
    for prop in ("name", "major", "minor", "multiProcessorCount", "totalGlobalMem"):
        if lookup(fixture, f"cudaDeviceProp.{prop}")["kind"] != "property":
            problems.append(f"cudaDeviceProp.{prop} missing")
    for cls in ("cudaStream_t", "cudaEvent_t"):  # int(stream) and the handle passed back
        if lookup(fixture, f"{cls}.__int__")["kind"] == "missing":
            problems.append(f"{cls}.__int__ missing")
    assert not problems, f"cuda-python {version}:\n" + "\n".join(problems)


def test_one_of_the_cudart_modules_the_code_tries_imports_in_every_version():
    tried = list(CUDA_IMPORTS)
    assert tried[:2] == ["cuda.bindings.runtime", "cuda.cudart"], tried
    for version, fixture in CUDA.items():
        importable = [m for m in tried if fixture["modules"][m]["imports"]]
        assert importable and importable[0] == fixture["module"], (version, fixture["modules"])
    # cuda.cudart is deprecated in 12.x and gone in 13: the code must try cuda.bindings.runtime first
    assert not any(f["modules"]["cuda.cudart"]["imports"] for v, f in CUDA.items() if _major(v) >= 13)


# --- the code run against fakes with exactly the recorded attributes of each version ---


class FakeMember:
    """A pybind11 / cython enum member: int(), .name, equality by value within its enum."""

    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeMember) and (other.enum, other.value) == (self.enum, self.value)

    def __hash__(self) -> int:
        return hash((self.enum, self.value))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}: {self.value}>"


class FakeEnum:
    def __init__(self, name: str, members: dict[str, int], version: str) -> None:
        self._name, self._version = name, version
        self.__members__ = {k: FakeMember(name, k, v) for k, v in members.items()}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self.__members__[name]
        except KeyError:
            raise AttributeError(f"{self._name} has no {name} in {self._version}") from None


def _checked(fixture: dict[str, Any], key: str, result: Any, log: list) -> Any:
    """A callable that accepts only what a recorded overload of ``key`` accepts, logs the call, returns ``result``."""
    sigs = signatures(fixture, key)
    assert sigs, f"{key}: no signature recorded in {fixture['version']}"

    def call(*args: Any, **kwargs: Any) -> Any:
        if not any(accepts(s, len(args), tuple(kwargs)) for s in sigs):
            raise TypeError(f"{key}{args} does not match {[vars(s) for s in sigs]} in {fixture['version']}")
        log.append((key, args, kwargs))
        return result(*args, **kwargs) if callable(result) else result

    return call


class FakeObject:
    """An instance of a recorded TensorRT class: only its recorded members; methods check their arguments."""

    RETURNS: dict[str, Any] = {
        "Builder.create_network": lambda fake: fake.make("INetworkDefinition"),
        "Builder.create_builder_config": lambda fake: fake.make("IBuilderConfig"),
        "Builder.create_optimization_profile": lambda fake: fake.make("IOptimizationProfile"),
        "Builder.build_serialized_network": lambda fake: b"serialized engine",
        "OnnxParser.parse_from_file": lambda fake: True,
        "INetworkDefinition.get_input": lambda fake: fake.make("ITensor"),
        "IBuilderConfig.add_optimization_profile": lambda fake: 0,
    }
    PROPERTIES = {"ITensor.shape": (-1, 1, 28, 28), "ITensor.name": "input", "OnnxParser.num_errors": 0}

    def __init__(self, trt: FakeTrt, cls: str) -> None:
        self._trt, self._cls = trt, cls

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = f"{self._cls}.{name}"
        entry = lookup(self._trt.fixture, key)
        if entry["kind"] == "missing":
            raise AttributeError(f"{self._cls} has no {name} in TensorRT {self._trt.__version__}")
        if entry["kind"] == "property":
            assert key in self.PROPERTIES, f"{key}: give the fake a value for it"
            return self.PROPERTIES[key]
        assert entry["kind"] == "method", f"{key}: {entry} (list it in the recorder to fake it)"
        result = self.RETURNS.get(key)
        return _checked(self._trt.fixture, key, (lambda *a, **k: result(self._trt)) if result else None, self._trt.log)


class FakeTrt:
    """``import tensorrt`` as recorded for one version: enums with their members, classes with their members."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.fixture, self.__version__, self.log = fixture, fixture["version"], []
        for key, entry in fixture["attributes"].items():
            if "." not in key and entry["kind"] == "enum":
                setattr(self, key, FakeEnum(key, entry["members"], self.__version__))
        severity = fixture["attributes"]["ILogger.Severity"]["members"]
        self.Logger = self._class("Logger")
        for name, value in severity.items():
            setattr(self.Logger, name, FakeMember("Severity", name, value))
        self.Builder, self.OnnxParser, self.Runtime = (self._class(c) for c in ("Builder", "OnnxParser", "Runtime"))

    def make(self, cls: str) -> FakeObject:
        return FakeObject(self, cls)

    def _class(self, cls: str) -> Any:
        construct = _checked(self.fixture, f"{cls}.__init__", lambda *a, **k: self.make(cls), self.log)
        return type(cls, (), {"__new__": lambda _cls, *a, **k: construct(*a, **k)})

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"module 'tensorrt' {self.__version__} has no attribute {name!r} (as recorded)")


@pytest.mark.parametrize("version", sorted(TRT))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_engine_against_the_recorded_api(version, precision, tmp_path):
    from ddnn_deploy.errors import DDNNError
    from ddnn_deploy.runners import tensorrt_runner as trt_runner

    major = _major(version)
    graph = "fp16" if precision == "fp16" and major >= 11 else "fp32"
    kwargs: dict[str, Any] = {"graph_precision": graph}
    if "batch_sizes" in inspect.signature(trt_runner.build_engine).parameters:
        kwargs["batch_sizes"] = (1, 4)
    fake = FakeTrt(TRT[version])
    blob = trt_runner.build_engine(fake, tmp_path / "d8.onnx", precision, 4, (1, 28, 28), **kwargs)
    assert blob == b"serialized engine"
    calls = {key: [args for k, args, _ in fake.log if k == key] for key, _, _ in fake.log}
    assert calls["Builder.create_network"] == [(trt_runner.builder_network_flags(fake, precision),)]
    set_flags = [args[0].name for args in calls.get("IBuilderConfig.set_flag", [])]
    assert set_flags == ({"fp16": ["FP16"], "int8": ["INT8"]}.get(precision, []) if major < 11 else []), set_flags
    if precision == "fp32":  # TF32 (in every version) is cleared: fp32 rows are fp32
        assert [args[0].name for args in calls.get("IBuilderConfig.clear_flag", [])] == ["TF32"]
    assert calls["IOptimizationProfile.set_shape"], "a dynamic batch gets an optimisation profile"
    if precision == "fp16" and major >= 11:  # an fp32 graph cannot give an fp16 engine on 11
        with pytest.raises(DDNNError, match="takes precision from the graph"):
            trt_runner.build_engine(FakeTrt(TRT[version]), tmp_path / "d8.onnx", precision, 4, (1, 28, 28))


class FakeCudart:
    """``cuda.bindings.runtime`` as recorded for one version: each function returns ``(cudaSuccess, *values)``
    with as many values as its recorded "Returns" section lists."""

    VALUES: dict[str, Any] = {
        "cudaStreamCreate": lambda self, *a: FakeHandle(0x5000),
        "cudaMalloc": lambda self, size: 0x7000_0000 + len(self.log),
        "cudaMemGetInfo": lambda self: (6 << 30, 8 << 30),
        "cudaGetDeviceProperties": lambda self, device: self.props(),
        "cudaRuntimeGetVersion": lambda self: 12060,
        "cudaDriverGetVersion": lambda self: 12060,
        "cudaHostAlloc": lambda self, size, flags: self.host(size),
        "cudaEventCreate": lambda self: FakeHandle(0x6000 + len(self.log)),
        "cudaEventElapsedTime": lambda self, start, end: 0.25,
    }

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.fixture, self.log, self._host = fixture, [], []
        for name, entry in fixture["attributes"].items():
            if "." not in name and entry["kind"] == "enum":
                setattr(self, name, FakeEnum(name, entry["members"], fixture["version"]))
            elif entry["kind"] == "value":
                setattr(self, name, entry["value"])

    def host(self, size: int) -> int:
        buffer = ctypes.create_string_buffer(size)
        self._host.append(buffer)
        return ctypes.addressof(buffer)

    def props(self) -> Any:
        values = {"name": b"Orin", "major": 8, "minor": 7, "multiProcessorCount": 8, "totalGlobalMem": 8 << 30}
        recorded = {
            k: v for k, v in values.items() if lookup(self.fixture, f"cudaDeviceProp.{k}")["kind"] == "property"
        }
        return SimpleNamespace(**recorded)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        entry = lookup(self.fixture, name)
        if entry["kind"] != "function":
            raise AttributeError(f"cuda-python {self.fixture['version']} has no {name} ({entry['kind']})")
        produce, count = self.VALUES.get(name), len(entry["returns"]) - 1

        def result(*args: Any) -> tuple:
            values = produce(self, *args) if produce else None
            values = values if isinstance(values, tuple) else (values,)
            assert len(values) == count or produce is None, (name, values, entry["returns"])
            return (self.cudaError_t.cudaSuccess, *(values if produce else (None,) * count))

        return _checked(self.fixture, name, result, self.log)


class FakeHandle:
    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's spelling
        return self.value


@pytest.mark.parametrize("version", sorted(CUDA))
def test_cuda_buffers_against_the_recorded_api(version, monkeypatch):
    from ddnn_deploy.runners import cuda_buffers

    fake = FakeCudart(CUDA[version])
    monkeypatch.setattr(cuda_buffers, "_cudart", lambda: fake)
    buffers = cuda_buffers.CudaBuffers()
    assert buffers.backend == "cuda-python" and buffers.stream_handle == 0x5000
    host = np.arange(6, dtype=np.float32)
    ptr = buffers.alloc(host.nbytes)
    buffers.to_device(ptr, host)
    buffers.to_host(host, ptr)
    buffers.synchronize()
    assert buffers.memory_used_mb() == 2048.0
    if hasattr(buffers, "pinned"):
        pinned = buffers.pinned((2, 3), np.float32)
        pinned[...] = 1.5
        assert pinned.shape == (2, 3) and pinned.sum() == 9.0
    if hasattr(buffers, "event"):
        start, end = buffers.event(), buffers.event()
        buffers.record(start)
        buffers.record(end)
        assert buffers.elapsed_ms(start, end) == 0.25
    buffers.close()
    called = [key for key, _, _ in fake.log]
    assert "cudaMemcpyAsync" in called and called[-1] == "cudaStreamDestroy"
    assert [args[3].name for key, args, _ in fake.log if key == "cudaMemcpyAsync"] == [
        "cudaMemcpyHostToDevice",
        "cudaMemcpyDeviceToHost",
    ]
    identity = cuda_buffers.gpu_identity()
    assert {k: identity[k] for k in ("gpu", "compute_capability", "sm_count", "cuda_runtime")} == {
        "gpu": "Orin",
        "compute_capability": "8.7",
        "sm_count": 8,
        "cuda_runtime": 12060,
    }
