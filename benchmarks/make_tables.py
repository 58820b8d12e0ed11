"""Markdown tables from benchmarks/results/*.json (pasted into benchmarks/README.md and the README).

python benchmarks/make_tables.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _markdown(intro: str, columns: list[str], rows: list[str]) -> str:
    """An intro paragraph, then a markdown table with these column names and ready-made row lines."""
    header = "| " + " | ".join(columns) + " |"
    return "\n".join([intro, "", header, "|" + "---|" * len(columns)] + rows)


def export_table(name: str) -> str:
    data = _load(f"export-{name}.json")
    if not data:
        return ""
    intro = (
        f"**{data['arch']}** ({data['checkpoint']}), batch 1, {data['threads']} threads, onnxruntime "
        f"{data['machine']['onnxruntime']}; export wall time {data['export_seconds']:.1f} s "
        f"(every depth + selector, simplified and verified); selector files {data['selector_bytes'] / 1e6:.2f} MB "
        f"vs deepest per-depth graph {data['deepest_per_depth_bytes'] / 1e6:.2f} MB."
    )
    rows = [
        f"| {r['depth']} | {r['macs'] / 1e6:.1f} M | {r['per_depth_ms']:.3f} | {r['selector_ms']:.3f} | "
        f"{r['selector_ratio']:.3f} | {r['standalone_ms']:.3f} | {r['per_depth_vs_standalone']:.3f} |"
        for r in data["rows"]
    ]
    return _markdown(
        intro,
        [
            "depth",
            "MACs",
            "per-depth ms",
            "selector ms",
            "selector / per-depth",
            "standalone ms",
            "per-depth / standalone",
        ],
        rows,
    )


def bench_table(name: str) -> str:
    data = _load(f"bench-{name}.json")
    if not data:
        return ""
    env = data["device"]["environment"]
    intro = (
        f"**{data['arch']}** on `{data['device']['profile']['name']}`: {env['cpu']}, {env['cores']} cores, "
        f"{env['threads']} threads, onnxruntime {env['libraries'].get('onnxruntime')}, governor "
        f"{env.get('governor')}.\n\n"
        f"Efficiency: achieved GFLOP/s (2 x MACs / p50) against FACTS.md's FP32 peak for its Zen 5 host "
        f"({data.get('peak_fp32_gflops_assumed', 0):.0f} GFLOP/s on 2 cores) and against this host's measured "
        f"sgemm rate ({data.get('sgemm_fp32_gflops_measured', 0):.0f} GFLOP/s, same threads)."
    )
    columns = [
        "depth",
        "back-end",
        "precision",
        "batch",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "img/s",
        "top-1 %",
        "GFLOP/s",
        "% of FACTS peak",
        "% of sgemm",
        "peak RSS MB",
    ]
    lines: list[str] = []
    for r in data["rows"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['depth']} | {r.get('backend', '-')} | {r.get('precision', '-')} | {r['batch']} | "
                f"{r['status']}: {r.get('error')} ||||||||"
            )
            continue
        lat, acc = r["latency_ms"], r.get("accuracy") or {}
        top1 = f"{acc['top1']:.2f}" if acc.get("top1") is not None else "-"
        lines.append(
            f"| {r['depth']} | {r.get('backend', '-')} | {r.get('precision', '-')} | {r['batch']} | "
            f"{lat['p50']:.3f} | {lat['p90']:.3f} | {lat['p99']:.3f} | "
            f"{r['throughput']:.0f} | {top1} | {r.get('achieved_gflops', 0):.0f} | "
            f"{100 * r.get('fraction_of_fp32_peak', 0):.0f} | "
            f"{100 * r.get('fraction_of_measured_sgemm', 0):.0f} | {r['memory_mb']['peak_rss_mb']:.0f} |"
        )
    return _markdown(intro, columns, lines)


def int8_table(name: str) -> str:
    data = _load(f"int8-{name}.json")
    if not data:
        return ""
    intro = (
        f"**{name}**: batch 1, {data['threads']} threads, onnxruntime {data['onnxruntime']}, INT8 = QDQ "
        "U8S8 per-channel (target cpu, MinMax)."
    )
    columns = [
        "depth",
        "FP32 ms",
        "INT8 ms",
        "speed-up",
        f"INT8 GOPS (floor ~{data['int8_floor_gops']:.0f})",
        "FP32 top-1 %",
        "INT8 top-1 %",
        "drop",
    ]
    lines: list[str] = []
    for r in data["rows"]:
        acc = r.get("accuracy") or {}
        accs = f"{acc['fp32_top1']:.2f} | {acc['int8_top1']:.2f} | {acc['drop']:+.2f}" if acc else "- | - | -"
        lines.append(
            f"| {r['depth']} | {r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | {r['speedup']:.2f}x | "
            f"{r['int8_gops']:.0f} | {accs} |"
        )
    return _markdown(intro, columns, lines)


def harness_table() -> str:
    data = _load("harness-overhead.json")
    if not data:
        return ""
    return (
        f"Harness p50 {data['harness_p50_ms']:.4f} ms vs minimal loop {data['minimal_p50_ms']:.4f} ms on "
        f"{data['onnx']} ({data['threads']} threads, {data['rounds']} x {data['iters_per_round']} runs): "
        f"ratio {data['ratio']:.3f} (goal <= 1.03)."
    )


if __name__ == "__main__":
    for title, text in (
        ("Export: demo", export_table("demo")),
        ("Export: ResNet-50", export_table("resnet50")),
        ("Bench: demo", bench_table("demo")),
        ("Bench: ResNet-50", bench_table("resnet50")),
        ("Harness overhead", harness_table()),
        ("INT8: demo", int8_table("demo")),
        ("INT8: ResNet-50", int8_table("resnet50")),
    ):
        if text:
            print(f"### {title}\n\n{text}\n")
