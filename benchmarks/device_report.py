"""device_check.md: the device check's summary (device_check.json) as a table, a line per stage."""

RUNNING = ("running when this was written; if the check has ended, it ended during this stage "
           "(its timeout, benchmarks/device_check.sh)")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _memory(result: dict) -> str:
    peak = result.get("peak_memory_gib")
    return "" if peak is None else f"; peak device memory {peak:.1f} GiB"


def _table(result: dict) -> str:
    s = result["settings"]
    head = (f"{result['images']} image(s), {s['probes']} probe(s), rtol {s['rtol']:g}, atol {s['atol']:g}, "
            f"precision {result['precision']}")
    if not result["images"]:
        return f"{head}: no image finished"
    timing = "with compiling: one image only" if result["seconds_include_compiling"] else "after the first"
    return (f"{head}: {result['seconds_per_image']:.2f} s/image ({timing}; the first took "
            f"{result['first_image_seconds']:.1f} s), NFE {result['nfe_per_image']:.0f}, "
            f"{result['passes_per_image']:,.0f} network passes/image, log p finite: "
            f"{'yes' if result['log_p_finite'] else 'NO'} (median abs log p {result['median_abs_log_p']:.0f} nats)"
            f"{_memory(result)}")


def _comparison(differences: dict) -> str:
    if not differences["images_compared"]:
        return "no image scored at both precisions"
    return (f"against highest on {differences['images_compared']} image(s) x 10 labels: largest abs change in "
            f"log p {differences['max_abs_delta_log_p']:.3g} nats (mean {differences['mean_abs_delta_log_p']:.3g}), "
            f"{differences['predictions_changed']} prediction(s) changed")


def _devices(r: dict) -> str:
    memory = "" if r["memory_limit_gib"] is None else f"; memory limit {r['memory_limit_gib']:.1f} GiB"
    return (f"{r['backend']}: {', '.join(r['devices'])}; {r['processes']} process(es), float32 precision "
            f"{r['precision']}{memory}")


def _data(r: dict) -> str:
    return (f"{r['train_images']:,} training and {r['test_images']:,} test images of "
            f"{'x'.join(map(str, r['image_shape']))} (CIFAR-10's python batches)")


def _train(r: dict) -> str:
    return (f"to step {r['checkpoint_step']} in batches of {r['batch_size']}: {_number(r['steps_per_second'])} "
            f"steps/s (first log line, with compiling: {_number(r['first_line_steps_per_second'])}){_memory(r)}")


def _resume(r: dict) -> str:
    return (f"step {r['from_step']} to {r['checkpoint_step']} (asked: {r['to_step']}), log lines "
            f"{r['new_log_steps']}: continued from the checkpoint: "
            f"{'yes' if r['continued_from_checkpoint'] else 'NO'}; "
            f"{_number(r['steps_per_second'])} steps/s (first line {_number(r['first_line_steps_per_second'])})"
            f"{_memory(r)}")


DESCRIBE = {"devices": _devices, "data": _data, "train": _train, "resume": _resume, "table1": _table,
            "precision": lambda r: f"{_table(r)}; {_comparison(r['against_highest'])}", "table1_paper": _table}


def describe(name: str, record: dict) -> str:
    """One stage's cell: what it measured, or why it has no result."""
    if record["status"] == "running":
        return RUNNING
    if "result" not in record:
        return record["reason"]
    return DESCRIBE[name](record["result"]) + (". Cut at its deadline." if record["result"].get("cut") else ".")


def markdown(summary: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in summary["versions"].items())
    lines = [
        f"# Device check ({'toy' if summary['toy'] else 'full'}), {summary['date']}",
        "",
        f"{versions}. Wall time {summary['wall_seconds']:.0f} s; the stages' budget {summary['budget_seconds']:.0f} s.",
        "",
        "| stage | status | started at (s) | wall (s) | result |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for name, record in summary["stages"].items():
        started, seconds = record.get("started_at_seconds"), record.get("seconds")
        lines.append(f"| {name} | {record['status']} | {'' if started is None else f'{started:.0f}'} | "
                     f"{'' if seconds is None else f'{seconds:.1f}'} | {describe(name, record)} |")
    commands = [r["result"]["command"] for r in summary["stages"].values() if "command" in r.get("result", {})]
    if commands:
        lines += ["", "Commands (each run in the check's process, `main(argv)`):", "",
                  *(f"- `{c}`" for c in commands)]
    return "\n".join(lines) + "\n"
