"""Host-to-device copies through ddnn-deploy's CudaBuffers (cuda-python or pycuda): page-locked against pageable
host memory, for one image and a batch of 32 at 224x224, timed with CUDA events (median of 50 copies).

    python benchmarks/cuda_copies.py [--json OUT]

Why it exists: the TensorRT runner's timed loop copies from page-locked buffers (as trtexec does); this shows
what a pageable buffer would have added to every latency row. Needs a CUDA GPU and cuda-python (or pycuda).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ddnn_deploy.errors import DDNNError  # noqa: E402
from ddnn_deploy.runners.cuda_buffers import CudaBuffers, gpu_identity  # noqa: E402


def copy_ms(buffers: CudaBuffers, host: np.ndarray, device: int, reps: int = 50) -> float:
    start, end = buffers.event(), buffers.event()
    times = []
    for _ in range(reps + 5):
        buffers.record(start)
        buffers.to_device(device, host)
        buffers.record(end)
        buffers.synchronize()
        times.append(buffers.elapsed_ms(start, end))
    return statistics.median(times[5:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        buffers = CudaBuffers()
    except DDNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 5
    rows = []
    try:
        for batch in (1, 32):
            shape = (batch, 3, 224, 224)
            pageable = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            pinned = buffers.pinned(shape, np.float32)
            pinned[...] = pageable
            device = buffers.alloc(pageable.nbytes)
            row = {"batch": batch, "mb": pageable.nbytes / 1e6}
            for name, host in (("pageable", pageable), ("pinned", pinned)):
                ms = copy_ms(buffers, host, device)
                row[f"{name}_ms"], row[f"{name}_gb_s"] = ms, pageable.nbytes / ms / 1e6
            rows.append(row)
            print(
                f"batch {batch:>2} ({row['mb']:.1f} MB): pageable {row['pageable_ms']:.3f} ms "
                f"({row['pageable_gb_s']:.1f} GB/s), page-locked {row['pinned_ms']:.3f} ms "
                f"({row['pinned_gb_s']:.1f} GB/s)"
            )
    finally:
        buffers.close()
    report = {"gpu": gpu_identity(), "backend": buffers.backend, "h2d": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
