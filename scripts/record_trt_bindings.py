"""Record the TensorRT / cuda-python attributes ddnn-deploy touches, from the real bindings, into a small JSON fixture.

Run it with the Python of an environment where ONE TensorRT bindings wheel or ONE cuda-python is installed; it writes
``tests/fixtures/trt_bindings/tensorrt-<version>.json`` or ``tests/fixtures/trt_bindings/cuda-python-<version>.json``,
which ``tests/test_bindings_contract.py`` reads (that test needs neither package). For every attribute in the lists
below it records whether it exists, its kind (class, method, property, function, enum, enum member, value), the
pybind11 signature line(s) from ``__doc__`` (TensorRT) or ``inspect.signature`` plus the docstring's first line and
its "Returns" entries (cuda-python's cython functions return ``(cudaError_t, *values)``), every member and value of
the enums, and the public member names of the classes. When the code starts touching something new, add it to the
lists here and regenerate every fixture.

How the committed fixtures were made (Linux x86_64, CPython 3.11, no GPU, pip against pypi.org)::

    mkdir -p /tmp/trt-contract && cd /tmp/trt-contract
    # TensorRT: only the -bindings wheels are real wheels on pypi.org (the -libs packages and the tensorrt /
    # tensorrt-cu12 / tensorrt-cu13 meta packages are sdists that download from pypi.nvidia.com at install time;
    # the meta package's tensorrt/__init__.py is just ``from tensorrt_bindings import *``). The bindings' .so is
    # the whole Python API; libnvinfer only implements it, and nothing at import time calls into it, so
    # --stub-libs builds empty libnvinfer/libnvonnxparser/libnvinfer_plugin/libnvparsers stand-ins (needs cc) and
    # re-runs the recorder against them. Where the real libraries are installed (a GPU machine, JetPack, or
    # pip install tensorrt-cu12==10.3.0 with pypi.nvidia.com reachable), leave --stub-libs out.
    for spec in tensorrt-bindings==8.6.1 tensorrt-cu12-bindings==10.3.0 tensorrt-cu13-bindings==11.4.0.106; do
        python3.11 -m venv v && v/bin/pip install -q "$spec" &&
        v/bin/python /path/to/ddnn-deploy/scripts/record_trt_bindings.py --stub-libs /tmp/trt-contract/stubs
        rm -rf v
    done
    # cuda-python: 11.8.3 is the last one with only the old ``cuda.cudart`` module; 12.6 / 12.9 / 13.x have
    # ``cuda.bindings.runtime`` (12.x keeps ``cuda.cudart`` as a deprecated alias; 13 removed it)
    for spec in cuda-python==11.8.3 cuda-python==12.6.2.post1 cuda-python==12.9.10 cuda-python==13.4.4; do
        python3.11 -m venv v && v/bin/pip install -q "$spec" &&
        v/bin/python /path/to/ddnn-deploy/scripts/record_trt_bindings.py
        rm -rf v
    done

``--out DIR`` writes elsewhere; ``--only tensorrt`` / ``--only cuda-python`` records one when both are installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "trt_bindings"

# --- what ddnn_deploy touches (ddnn_deploy/runners/tensorrt_runner.py, ddnn_deploy/runners/cuda_buffers.py) ---

# enums: every member is recorded with its integer value
TRT_ENUMS = (
    "BuilderFlag",
    "DataType",
    "NetworkDefinitionCreationFlag",
    "TensorIOMode",
    "MemoryPoolType",
    "ILogger.Severity",
)
# classes: the public member names, and these members in detail (signature / property type / value)
TRT_CLASSES = {
    "Logger": ("__init__", "WARNING", "ERROR", "INFO", "Severity", "log"),
    "ILogger": ("Severity",),
    "Builder": (
        "__init__",
        "create_network",
        "create_builder_config",
        "create_optimization_profile",
        "build_serialized_network",
        "platform_has_fast_fp16",
        "platform_has_fast_int8",
        "platform_has_tf32",
    ),
    "OnnxParser": ("__init__", "parse_from_file", "parse", "get_error", "num_errors", "clear_errors"),
    "ParserError": ("desc", "code", "node", "__str__"),
    "IBuilderConfig": (
        "set_memory_pool_limit",
        "get_memory_pool_limit",
        "set_flag",
        "clear_flag",
        "get_flag",
        "flags",
        "add_optimization_profile",
    ),
    "INetworkDefinition": ("get_input", "num_inputs", "get_output", "num_outputs"),
    "ITensor": ("name", "shape", "dtype"),
    "IOptimizationProfile": ("set_shape", "get_shape"),
    "Runtime": ("__init__", "deserialize_cuda_engine"),
    "ICudaEngine": (
        "create_execution_context",
        "num_io_tensors",
        "get_tensor_name",
        "get_tensor_mode",
        "get_tensor_dtype",
        "get_tensor_shape",
        "get_tensor_profile_shape",
        "num_optimization_profiles",
        "device_memory_size",
        "device_memory_size_v2",
        "serialize",
    ),
    "IExecutionContext": (
        "set_input_shape",
        "set_tensor_address",
        "get_tensor_address",
        "get_tensor_shape",
        "execute_async_v3",
        "execute_v2",
        "set_optimization_profile_async",
        "all_input_dimensions_specified",
    ),
    "IHostMemory": ("nbytes", "dtype"),
    "Dims": ("__init__", "__len__", "__getitem__"),
}
TRT_FUNCTIONS = ("nptype", "volume", "get_plugin_registry", "init_libnvinfer_plugins")

CUDART_FUNCTIONS = (
    "cudaStreamCreate",
    "cudaStreamCreateWithFlags",
    "cudaStreamSynchronize",
    "cudaStreamDestroy",
    "cudaMalloc",
    "cudaFree",
    "cudaMallocHost",
    "cudaHostAlloc",
    "cudaFreeHost",
    "cudaMemcpy",
    "cudaMemcpyAsync",
    "cudaMemsetAsync",
    "cudaMemGetInfo",
    "cudaGetDeviceCount",
    "cudaGetDevice",
    "cudaSetDevice",
    "cudaDeviceSynchronize",
    "cudaGetDeviceProperties",
    "cudaDeviceGetAttribute",
    "cudaRuntimeGetVersion",
    "cudaDriverGetVersion",
    "cudaEventCreate",
    "cudaEventCreateWithFlags",
    "cudaEventRecord",
    "cudaEventSynchronize",
    "cudaEventQuery",
    "cudaEventElapsedTime",
    "cudaEventElapsedTime_v2",
    "cudaEventDestroy",
    "cudaGetErrorName",
    "cudaGetErrorString",
)
# None: every member; a tuple: only those (cudaError_t has 120+)
CUDART_ENUMS = {
    "cudaMemcpyKind": None,
    "cudaError_t": (
        "cudaSuccess",
        "cudaErrorInvalidValue",
        "cudaErrorMemoryAllocation",
        "cudaErrorInsufficientDriver",
        "cudaErrorNoDevice",
        "cudaErrorNotReady",
    ),
}
CUDART_VALUES = (
    "cudaHostAllocDefault",
    "cudaHostAllocPortable",
    "cudaHostAllocMapped",
    "cudaHostAllocWriteCombined",
    "cudaEventDefault",
    "cudaEventBlockingSync",
    "cudaEventDisableTiming",
    "cudaStreamDefault",
    "cudaStreamNonBlocking",
)
CUDART_CLASSES = {
    "cudaDeviceProp": ("name", "major", "minor", "multiProcessorCount", "totalGlobalMem", "integrated"),
    "cudaStream_t": ("getPtr", "__int__"),
    "cudaEvent_t": ("getPtr", "__int__"),
}

# what the bindings' .so imports from the TensorRT libraries (nm -D --undefined-only tensorrt.so, 8.6 / 10.x / 11.x)
STUB_SYMBOLS = (
    "createInferBuilder_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "getBuilderPluginRegistry",
    "getInferLibVersion",
    "getNvOnnxParserVersion",
    "getPluginRegistry",
    "initLibNvInferPlugins",
    "_ZN11nvuffparser15createUffParserEv",
    "_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi",
    "_ZN14nvcaffeparser117createCaffeParserEv",
    "_ZN14nvcaffeparser123shutdownProtobufLibraryEv",
)
STUB_LIBS = ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers")
STUB_ENV = "RECORD_TRT_BINDINGS_STUB_LIBS"


# --- helpers ---


def _norm(text: str) -> str:
    """One spelling of the module in pybind11 signatures, whichever package it was imported through."""
    return text.replace("tensorrt_bindings.tensorrt.", "tensorrt.").replace("tensorrt.tensorrt.", "tensorrt.")


def _pybind_signatures(name: str, doc: str | None) -> list[str]:
    """``name(self: ..., ...) -> ...`` lines of a pybind11 docstring (one per overload)."""
    lines = []
    for line in (doc or "").splitlines():
        match = re.match(rf"^\s*(?:\d+\.\s+)?({re.escape(name)}\(.*\)(?:\s*->\s*.+)?)\s*$", line)
        if match:
            lines.append(_norm(match.group(1)))
    real = [line for line in lines if not line.startswith(f"{name}(*args, **kwargs)")]
    return real or lines


def _enum_members(enum: Any, only: tuple[str, ...] | None = None) -> dict[str, int]:
    members = getattr(enum, "__members__", None)
    if members is None:  # not an enum: read the public int-valued class attributes
        members = {k: getattr(enum, k) for k in dir(enum) if not k.startswith("_")}
    out = {}
    for key, value in members.items():
        if only is not None and key not in only:
            continue
        try:
            out[key] = int(value)
        except (TypeError, ValueError):
            continue
    return out


def _enum_entry(enum: Any) -> dict[str, Any]:
    """An enum's members and values, and whether a member knows its name (``DataType.HALF.name == "HALF"``)."""
    members = _enum_members(enum)
    named = all(getattr(getattr(enum, key), "name", None) == key for key in members)
    return {"kind": "enum", "members": members, "member_name_attr": named}


def _public_members(cls: Any) -> list[str]:
    return sorted(m for m in dir(cls) if not m.startswith("_"))


def _is_enum(obj: Any) -> bool:
    return inspect.isclass(obj) and hasattr(obj, "__members__")


def _describe_trt(owner: Any, name: str) -> dict[str, Any]:
    """One member of a TensorRT class (looked up statically first, so properties stay properties)."""
    raw = inspect.getattr_static(owner, name, None)
    if raw is None:
        return {"kind": "missing"}
    if isinstance(raw, property):
        fget_doc = (getattr(raw.fget, "__doc__", None) or "").strip()
        first = fget_doc.splitlines()[0] if fget_doc else ""
        return {"kind": "property", "readonly": raw.fset is None, "signatures": [_norm(first)] if first else []}
    value = getattr(owner, name)
    if _is_enum(value):
        return _enum_entry(value)
    if _is_enum(type(value)):  # Logger.WARNING: an ILogger.Severity member
        return {"kind": "enum member", "value": int(value)}
    if callable(value):
        sigs = _pybind_signatures(name, getattr(value, "__doc__", None))
        if not sigs:
            try:
                sigs = [f"{name}{inspect.signature(value)}"]
            except (TypeError, ValueError):
                sigs = []
        return {"kind": "static method" if isinstance(raw, staticmethod) else "method", "signatures": sigs}
    if isinstance(value, (int, float, str)):
        return {"kind": "value", "value": value}
    return {"kind": type(value).__name__}


def _resolve(root: Any, dotted: str) -> Any:
    obj = root
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _distribution(prefixes: tuple[str, ...]) -> str | None:
    found = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(prefixes):
            found.append(f"{name}=={dist.version}")
    return ", ".join(sorted(set(found))) or None


# --- TensorRT ---


def import_tensorrt() -> tuple[Any, str] | None:
    for module in ("tensorrt", "tensorrt_bindings"):
        try:
            return importlib.import_module(module), module
        except ImportError as exc:
            if "libnvinfer" in str(exc) or "libnvonnxparser" in str(exc):
                raise SystemExit(
                    f"import {module} failed: {exc}\nthe TensorRT libraries are not installed: pass --stub-libs DIR"
                ) from None
            continue
    return None


def record_tensorrt(trt: Any, module: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for dotted in TRT_ENUMS:
        try:
            attributes[dotted] = _enum_entry(_resolve(trt, dotted))
        except AttributeError:
            attributes[dotted] = {"kind": "missing"}
    for cls_name, members in TRT_CLASSES.items():
        cls = getattr(trt, cls_name, None)
        if cls is None:
            attributes[cls_name] = {"kind": "missing"}
            continue
        attributes[cls_name] = {"kind": "class", "members": _public_members(cls)}
        for member in members:
            attributes[f"{cls_name}.{member}"] = _describe_trt(cls, member)
    for name in TRT_FUNCTIONS:
        func = getattr(trt, name, None)
        if func is None:
            attributes[name] = {"kind": "missing"}
            continue
        entry: dict[str, Any] = {"kind": "function", "signatures": _pybind_signatures(name, func.__doc__)}
        if not entry["signatures"]:
            try:
                entry["signatures"] = [f"{name}{inspect.signature(func)}"]
            except (TypeError, ValueError):
                pass
        try:  # which numpy names a Python-level helper (trt.nptype) refers to: np.bool is gone since numpy 1.24
            entry["numpy_names"] = sorted(set(re.findall(r"\bnp\.(\w+)", inspect.getsource(func))))
        except (OSError, TypeError):
            pass
        attributes[name] = entry
    return {
        "package": "tensorrt",
        "version": trt.__version__,
        "module": module,
        "distribution": _distribution(("tensorrt",)),
        "libraries": "stub (bindings only: see the script's docstring)" if os.environ.get(STUB_ENV) else "real",
        **_platform(),
        "attributes": attributes,
    }


# --- cuda-python ---


def import_cudart() -> tuple[Any, str, dict[str, Any]] | None:
    """The module ddnn_deploy/runners/cuda_buffers.py would use (the same order), and which spellings import."""
    modules: dict[str, Any] = {}
    chosen = None
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                imported = importlib.import_module(module)
            except ImportError:
                modules[module] = {"imports": False}
                continue
        deprecated = [
            str(w.message)[:160] for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
        ]
        modules[module] = {"imports": True, **({"deprecation": deprecated[0]} if deprecated else {})}
        if chosen is None:
            chosen = (imported, module)
    if chosen is None:
        return None
    return chosen[0], chosen[1], modules


def _returns(doc: str | None) -> list[str] | None:
    """The entries of a numpydoc "Returns" section: ["cudaError_t", "pStream"]."""
    lines = (doc or "").splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == "Returns" and set(lines[i + 1].strip()) == {"-"}:
            indent = len(line) - len(line.lstrip())
            out = []
            for body in lines[i + 2 :]:
                if not body.strip():
                    continue
                level = len(body) - len(body.lstrip())
                if level < indent:
                    break
                if level == indent:
                    if set(body.strip()) == {"-"}:  # the next section's underline: drop its title
                        out.pop()
                        break
                    out.append(body.strip().split(" :")[0].strip())
            return out
    return None


def record_cudart(cudart: Any, module: str, modules: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name in CUDART_FUNCTIONS:
        func = getattr(cudart, name, None)
        if func is None:
            attributes[name] = {"kind": "missing"}
            continue
        doc = func.__doc__ or ""
        entry: dict[str, Any] = {"kind": "function", "doc_signature": doc.strip().splitlines()[0] if doc else None}
        try:
            entry["signatures"] = [f"{name}{inspect.signature(func)}"]
        except (TypeError, ValueError):
            entry["signatures"] = [entry["doc_signature"]] if entry["doc_signature"] else []
        entry["returns"] = _returns(doc)
        attributes[name] = entry
    for name, only in CUDART_ENUMS.items():
        enum = getattr(cudart, name, None)
        if enum is None:
            attributes[name] = {"kind": "missing"}
            continue
        members = _enum_members(enum, only)
        attributes[name] = {"kind": "enum", "members": members, "count": len(getattr(enum, "__members__", {}))}
        for key in only or ():
            if key not in members:
                attributes[f"{name}.{key}"] = {"kind": "missing"}
    for name in CUDART_VALUES:
        value = getattr(cudart, name, None)
        attributes[name] = {"kind": "missing"} if value is None else {"kind": "value", "value": int(value)}
    for cls_name, members in CUDART_CLASSES.items():
        cls = getattr(cudart, cls_name, None)
        if cls is None:
            attributes[cls_name] = {"kind": "missing"}
            continue
        attributes[cls_name] = {"kind": "class"}
        for member in members:
            raw = inspect.getattr_static(cls, member, None)
            if raw is None:
                attributes[f"{cls_name}.{member}"] = {"kind": "missing"}
            elif type(raw).__name__ in ("getset_descriptor", "member_descriptor", "property"):
                attributes[f"{cls_name}.{member}"] = {"kind": "property"}
            else:
                attributes[f"{cls_name}.{member}"] = {"kind": "method"}
    version = None
    for dist in ("cuda-python", "cuda-bindings"):
        try:
            version = importlib.metadata.version(dist)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "package": "cuda-python",
        "version": version,
        "module": module,
        "modules": modules,
        "distribution": _distribution(("cuda-python", "cuda-bindings")),
        **_platform(),
        "attributes": attributes,
    }


def _platform() -> dict[str, str]:
    return {"python": platform.python_version(), "machine": platform.machine()}


# --- stub TensorRT libraries ---


def build_stub_libs(directory: Path) -> None:
    """libnvinfer.so.{8,10,11} etc. defining what the bindings import, each a function that returns NULL."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--stub-libs needs a C compiler (cc)")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "stub.c"
    source.write_text(
        "#include <stdio.h>\n"
        + "".join(
            f'void *{sym}(void) {{ fprintf(stderr, "stub TensorRT library: {sym} called\\n"); return 0; }}\n'
            for sym in STUB_SYMBOLS
        )
    )
    for major in (8, 10, 11):
        for lib in STUB_LIBS:
            soname = f"lib{lib}.so.{major}"
            subprocess.run(
                [cc, "-shared", "-fPIC", "-o", str(directory / soname), f"-Wl,-soname,{soname}", str(source)],
                check=True,
            )


def dump(fixture: dict[str, Any]) -> str:
    """JSON with one line per attribute: small, and a regenerated fixture diffs attribute by attribute."""
    head = {k: v for k, v in fixture.items() if k != "attributes"}
    lines = [json.dumps(head, indent=1, sort_keys=True)[:-2] + ',\n "attributes": {']
    items = sorted(fixture["attributes"].items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}{comma}")
    lines.append(" }\n}\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=("tensorrt", "cuda-python"))
    parser.add_argument("--stub-libs", type=Path, help="build stand-in TensorRT libraries here and use them")
    args = parser.parse_args(argv)
    if args.stub_libs and not os.environ.get(STUB_ENV):
        build_stub_libs(args.stub_libs.resolve())
        env = dict(os.environ, **{STUB_ENV: "1"})
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(args.stub_libs.resolve()), env.get("LD_LIBRARY_PATH")])
        )
        return subprocess.call([sys.executable, *sys.argv], env=env)
    fixtures = []
    if args.only in (None, "tensorrt"):
        found = import_tensorrt()
        if found is not None:
            fixtures.append(record_tensorrt(*found))
    if args.only in (None, "cuda-python"):
        found_cudart = import_cudart()
        if found_cudart is not None:
            fixtures.append(record_cudart(*found_cudart))
    if not fixtures:
        print("neither TensorRT nor cuda-python is importable here", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for fixture in fixtures:
        path = args.out / f"{fixture['package']}-{fixture['version']}.json"
        path.write_text(dump(fixture))
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
