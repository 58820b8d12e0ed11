"""``fleet bench`` / ``fleet plan``: a fleet of devices at once; ``compare``: results side by side."""

from __future__ import annotations

import click

from ..formats.results import LATENCY_STATS
from .commands import _echo_json, _log, _precisions, print_table


@click.group("fleet")
def fleet() -> None:
    """Bench a fleet of devices at once, and plan which depth each one runs."""


@fleet.command("bench")
@click.option("--fleet", "fleet_file", required=True, help="fleet.toml: [devices.NAME] host, device, budget_ms.")
@click.option("--artifacts", required=True, help="Export directory (manifest.json + graphs).")
@click.option("--out", required=True, help="Folder for NAME.json per device and fleet.json.")
@click.option(
    "--dataset",
    default="auto",
    show_default=True,
    help="Dataset for accuracy, as each device names it; auto: the model's own where its data is; none.",
)
@click.option("--limit", type=int, default=None, help="Measure accuracy on this many test images.")
@click.option("--precision", default=None, help="Precisions to measure (default: each profile's).")
@click.option("--profiles", "profiles_file", default=None, help="TOML file adding or overriding device profiles.")
@click.option("--known-hosts", default=None, help="known_hosts file (default: ssh's).")
@click.option("--accept-new-host-key", is_flag=True, help="Trust unknown host keys on first use.")
@click.option("--install", is_flag=True, help="Push this ddnn-deploy (a wheel of it) to every remote device first.")
@click.option("--json", "as_json", is_flag=True)
def fleet_bench_command(fleet_file, artifacts, out, dataset, limit, precision, profiles_file, known_hosts,
                        accept_new_host_key, install, as_json) -> None:  # fmt: skip
    """Bench every device of the fleet in parallel; one failing device does not stop the others."""
    from ..errors import PartialMeasurementError
    from ..fleet import fleet_bench

    record = fleet_bench(
        fleet_file, artifacts, out, dataset=dataset, limit=limit, precisions=_precisions(precision),
        profiles_file=profiles_file, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key, install=install,
        log=_log,
    )  # fmt: skip
    if as_json:
        _echo_json(record.model_dump(mode="json"))
    else:
        rows = [
            [d.name, d.host, d.device, f"{d.seconds:.1f}", d.results or "-", d.error or "ok"] for d in record.devices
        ]
        print_table(f"fleet -> {out}", ["device", "host", "profile", "seconds", "results", "status"], rows)
    failed = [d for d in record.devices if d.error]
    if failed:
        raise PartialMeasurementError(f"{len(failed)} of {len(record.devices)} devices failed ({failed[0].name}: "
                                      f"{failed[0].error}); the others' results are in {out}")  # fmt: skip


@fleet.command("plan")
@click.option("--results", "folder", required=True, help="The folder `fleet bench --out` wrote.")
@click.option("--stat", type=click.Choice(LATENCY_STATS), default="p90", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def fleet_plan_command(folder, stat, as_json) -> None:
    """The deployment plan: each device's most accurate depth and precision that fits its budget."""
    from ..fleet import fleet_plan

    plan = fleet_plan(folder, stat=stat)
    if as_json:
        _echo_json({"devices": plan})
        return
    rows = [
        [p["name"], p["host"], p["device"], f"{p['budget_ms']:g}", p.get("depth", "-"),
         f"{p['backend']} {p['precision']}" if p.get("depth") is not None else "-",
         f"{p['latency_ms']:.3f}" if p.get("latency_ms") is not None else "-",
         f"{p['top1']:.2f}" if p.get("top1") is not None else "-", p["error"] or "ok"]
        for p in plan
    ]  # fmt: skip
    columns = ["device", "host", "profile", "budget ms", "depth", "runs on", f"{stat} ms", "top-1 %", "status"]
    print_table(f"deployment plan ({folder})", columns, rows)


@click.command("compare")
@click.argument("results", nargs=-1, required=True)
@click.option("--stat", type=click.Choice(LATENCY_STATS), default="p50", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Compare rows of this batch size.")
@click.option("--plot", "plot_path", default=None, help="Write accuracy against latency, one front per file.")
@click.option("--allow-different-models", is_flag=True, help="Compare results of different checkpoints anyway.")
@click.option("--json", "as_json", is_flag=True)
def compare_command(results, stat, batch, plot_path, allow_different_models, as_json) -> None:
    """The same depths side by side across devices or runs: latency ratio to the first file, top-1 difference."""
    from ..compare import compare_results, plot_comparison

    comparison = compare_results(results, stat=stat, batch=batch, allow_different_models=allow_different_models)
    if plot_path is not None and plot_comparison(comparison, plot_path) is None:
        _log("note: no plot (matplotlib missing, or no row has accuracy)")
    if as_json:
        _echo_json(comparison)
        return
    columns = ["depth", "kind", "back-end", "precision"]
    for label in comparison["files"]:
        columns += [f"{label} {stat} ms", "x first", "top-1 %"]
    rows = []
    for row in comparison["rows"]:
        cells = [row["depth"], row["kind"], row["backend"], row["precision"]]
        for c in row["results"]:
            cells += [
                f"{c['latency_ms']:.3f}" if c["latency_ms"] is not None else "-",
                f"{c['latency_ratio']:.2f}x" if c["latency_ratio"] is not None else "-",
                f"{c['top1']:.2f}" if c["top1"] is not None else "-",
            ]
        rows.append(cells)
    print_table(f"compare ({stat}, batch {batch})", columns, rows)
