"""The ImageNet-shape table (issue 6): ResNet-50's sub-nets beside the paper's Table 2, with their
measured onnxruntime FP32 and INT8 latency on x86-cpu (random weights: latency does not depend on them).

    python benchmarks/table2_resnet50.py      # reads results/bench-resnet50.json and results/int8-resnet50.json
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
# Paper, Table 2: parameters (M), top-1 error of EKD-DDNN sub-nets (%), FLOPs (G) as printed.
PAPER = {
    26: (16.0, 26.41, 2.3),
    32: (17.4, 25.39, 2.8),
    38: (21.9, 24.55, 3.2),
    41: (18.9, 24.07, 3.4),
    44: (23.3, 24.38, 3.7),
    50: (25.6, 23.83, 3.8),
}


def main() -> None:
    from ddnn_deploy.describe import describe

    ours = {r["depth"]: r for r in describe(arch="resnet50")["depths"]}
    bench = json.loads((RESULTS / "bench-resnet50.json").read_text())
    fp32 = {r["depth"]: r["latency_ms"]["p50"] for r in bench["rows"] if r["batch"] == 1 and r["status"] == "ok"}
    int8_data = json.loads((RESULTS / "int8-resnet50.json").read_text())
    int8 = {r["depth"]: r for r in int8_data["rows"]}
    lines = [
        "| depth | blocks | params (paper) | params (ours) | FLOPs (paper) | MACs (ours) | EKD top-1 err. "
        "(paper, ImageNet) | FP32 p50 ms (bench) | FP32 ms (paired) | INT8 ms (paired) | INT8 speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for depth, (params, err, flops) in PAPER.items():
        r, q = ours[depth], int8.get(depth)
        paired = f"{q['fp32_ms']:.1f} | {q['int8_ms']:.1f} | {q['speedup']:.2f}x" if q else "- | - | -"
        lines.append(
            f"| {depth} | {'-'.join(map(str, r['blocks']))} | {params:.1f} M | {r['params'] / 1e6:.1f} M | "
            f"{flops:.1f} G | {r['macs'] / 1e9:.2f} G | {err:.2f} | {fp32.get(depth, float('nan')):.1f} | "
            f"{paired} |"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "table2-resnet50.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
