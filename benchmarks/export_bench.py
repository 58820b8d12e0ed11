"""Export benchmark (issue 3): selector vs per-depth latency, per-depth vs standalone latency, export time.

    python benchmarks/export_bench.py --ckpt models/fmnist-resnet20-ddnn.pt --name demo
    python benchmarks/export_bench.py --arch resnet50 --name resnet50     # random init via `convert`

Latency: onnxruntime CPU EP, batch 1, the machine's threads; the two graphs being compared run
interleaved in rounds and the ratio of their medians is reported (machines are noisy: only ratios
measured in one run are compared). Results go to benchmarks/results/export-NAME.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import save_result  # benchmarks/ is on sys.path when a script here runs
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def session(path: Path, threads: int):
    """A CPU session whose idle worker threads do not spin: sessions compared in one process would
    otherwise steal each other's cores while they alternate (seen: 0.6x-1.6x swings on the demo)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def paired_latency(a, feed_a, b, feed_b, *, rounds: int, per_round: int, warmup: int) -> dict:
    for _ in range(warmup):
        a.run(None, feed_a)
        b.run(None, feed_b)
    times_a, times_b = [], []
    for r in range(rounds):
        order = [(a, feed_a, times_a), (b, feed_b, times_b)]
        if r % 2:
            order.reverse()
        for sess, feed, sink in order:
            for _ in range(per_round):
                t = time.perf_counter()
                sess.run(None, feed)
                sink.append(time.perf_counter() - t)
    ma, mb = float(np.median(times_a)), float(np.median(times_b))
    return {"a_ms": ma * 1e3, "b_ms": mb * 1e3, "ratio": ma / mb, "n": len(times_a)}


class PlainNet(nn.Module):
    """The same architecture built for ONE depth as an ordinary network (no DDNN machinery)."""

    def __init__(self, ddnn_model, blocks):
        super().__init__()
        self.stem_modules = nn.ModuleDict(
            {n: m for n, m in ddnn_model.named_children() if n not in ddnn_model.stage_names}
        )
        self.stage_names = list(ddnn_model.stage_names)
        for name, stage, n in zip(ddnn_model.stage_names, ddnn_model.stages(), blocks):
            setattr(self, name, nn.Sequential(*list(stage)[:n]))
        self.source = type(ddnn_model)

    def forward(self, x):
        m = self.stem_modules
        if "conv1" in m:
            x = m["relu"](m["bn1"](m["conv1"](x)))
            if "maxpool" in m:
                x = m["maxpool"](x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if "pool" in m:
                x = m["pool"](x)
        x = torch.flatten(m["avgpool"](x), 1)
        return m["fc"](x) if "fc" in m else m["classifier"](x)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt")
    parser.add_argument("--arch")
    parser.add_argument("--name", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=0, help="runs per round (default: by model size)")
    args = parser.parse_args()

    from ddnn_deploy import export
    from ddnn_deploy.checkpoint import load_checkpoint
    from ddnn_deploy.convert import convert_weights

    work = Path(tempfile.mkdtemp(prefix="ddnn-export-bench-"))
    try:
        ckpt_path = Path(args.ckpt) if args.ckpt else work / f"{args.arch}.pt"
        if not args.ckpt:
            convert_weights(arch=args.arch, out=ckpt_path)
        torch.set_num_threads(args.threads)
        t0 = time.time()
        manifest = export(ckpt_path, work / "artifacts", selector=True, log=print).to_json_dict()
        export_seconds = time.time() - t0
        ckpt = load_checkpoint(ckpt_path)
        shape = tuple(ckpt.input_shape)
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        selector = next(a for a in manifest["artifacts"] if a["kind"] == "selector")
        sel = session(work / "artifacts" / selector["path"], args.threads)
        rows = []
        for a in (a for a in manifest["artifacts"] if a["kind"] == "depth"):
            per = session(work / "artifacts" / a["path"], args.threads)
            per_round = args.per_round or max(5, int(2e9 / max(a["macs"], 1) / 50))
            per_round = min(per_round, 200)
            vs_selector = paired_latency(
                sel,
                {"input": x, "depth": np.asarray(a["depth"], dtype=np.int64)},
                per,
                {"input": x},
                rounds=args.rounds,
                per_round=per_round,
                warmup=per_round,
            )
            # the same depth built and exported as a plain standalone network
            config = ckpt.table()[a["depth"]]
            net = ckpt.build()  # PlainNet bypasses DepthNet.forward: load this depth's BN statistics itself
            net.load_state_dict(net.depth_bn_stats(config), strict=False)
            plain = PlainNet(net, config.blocks).eval()
            plain_path = work / f"plain-{a['depth']}.onnx"
            torch.onnx.export(
                plain,
                (torch.from_numpy(x),),
                str(plain_path),
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                opset_version=17,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            with torch.no_grad():
                same = float(np.abs(plain(torch.from_numpy(x)).numpy() - per.run(None, {"input": x})[0]).max())
            vs_plain = paired_latency(
                per,
                {"input": x},
                session(plain_path, args.threads),
                {"input": x},
                rounds=args.rounds,
                per_round=per_round,
                warmup=per_round,
            )
            row = {
                "depth": a["depth"],
                "blocks": a["blocks"],
                "macs": a["macs"],
                "per_depth_ms": vs_selector["b_ms"],
                "selector_ms": vs_selector["a_ms"],
                "selector_ratio": vs_selector["ratio"],
                "standalone_ms": vs_plain["b_ms"],
                "per_depth_vs_standalone": vs_plain["ratio"],
                "standalone_max_abs_diff": same,
                "per_depth_bytes": a["bytes"],
                "n": vs_selector["n"],
            }
            rows.append(row)
            print(
                f"depth {a['depth']}: per-depth {row['per_depth_ms']:.3f} ms, selector {row['selector_ms']:.3f} ms "
                f"(x{row['selector_ratio']:.3f}), standalone {row['standalone_ms']:.3f} ms "
                f"(per-depth x{row['per_depth_vs_standalone']:.3f})"
            )
        import onnxruntime

        result = {
            "benchmark": "export",
            "name": args.name,
            "checkpoint": str(args.ckpt or f"convert --arch {args.arch}"),
            "arch": ckpt.arch,
            "input_shape": list(shape),
            "batch": 1,
            "threads": args.threads,
            "session": "CPU EP, intra_op_num_threads=threads, allow_spinning=0 (paired sessions in one process)",
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "onnxruntime": onnxruntime.__version__,
                "torch": str(torch.__version__),
            },
            "export_seconds": round(export_seconds, 1),
            "selector_bytes": selector["bytes"],
            "deepest_per_depth_bytes": max(r["per_depth_bytes"] for r in rows),
            "simplified": {str(a["depth"]): a["simplified"] for a in manifest["artifacts"] if a["kind"] == "depth"},
            "rows": rows,
            "date": time.strftime("%Y-%m-%d"),
        }
        print(f"export wall time {export_seconds:.1f} s")
        save_result(f"export-{args.name}", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
