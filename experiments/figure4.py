"""Figure 4: accuracy and bits/dim against severity, one panel per corruption.

    python -m experiments.figure4 --run runs/digits

Reads table2's results (RUN/table2/table2.json, or --table2 FILE; nothing is
recomputed) and draws, per corruption, the bits/dim under the true label
(left axis) and the accuracy (right axis) at severities 0 (clean, the same
images) to 5. Writes `figure4.png` and `figure4.json` (the plotted numbers)
beside table2.json unless --out says otherwise.
"""

import dataclasses
import json
import math
from pathlib import Path

from classify import LOG_DENSITY_KINDS
from experiments.cli import option, parse_config
from experiments.files import write_json
from experiments.plotting import drawing, save_png


@dataclasses.dataclass(frozen=True)
class Figure4Config:
    run: Path = option("training run folder whose table2 results to plot", Path("runs/digits"))
    table2: Path | None = option("table2.json to plot (default: RUN/table2/table2.json)")
    out: Path | None = option("folder of figure4.png and figure4.json (default: table2.json's)")


def curves(table2: dict) -> dict[str, dict[str, list[float]]]:
    """Per corruption: severities 0..5 with bits/dim and accuracy (severity 0 is clean)."""
    result = {}
    for name, by_severity in table2["corruptions"].items():
        severities = sorted(int(s) for s in by_severity)
        result[name] = {
            "severity": [0, *severities],
            "bits_per_dim": [table2["clean_bits_per_dim"],
                             *(by_severity[str(s)]["bits_per_dim"] for s in severities)],
            "accuracy": [table2["clean_accuracy"],
                         *(by_severity[str(s)]["accuracy"] for s in severities)],
        }
    return result


@drawing
def plot(plt, path: Path, panels: dict[str, dict[str, list[float]]], title: str, likelihood: bool) -> None:
    """A panel per corruption; bits/dim on the left axis only for a likelihood (not logits)."""
    columns = min(5, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False, figsize=(3.2 * columns, 2.6 * rows))
    for axis, (name, panel) in zip(axes.flat, panels.items()):
        axis.set_title(name.replace("_", " "), fontsize=9)
        axis.set_xlabel("severity", fontsize=8)
        right = axis.twinx()
        if likelihood:
            axis.plot(panel["severity"], panel["bits_per_dim"], "o-", color="tab:blue")
            axis.set_ylabel("bits/dim", color="tab:blue", fontsize=8)
        right.plot(panel["severity"], [100 * a for a in panel["accuracy"]], "s--", color="tab:red")
        right.set_ylim(0, 102)
        right.set_ylabel("accuracy (%)", color="tab:red", fontsize=8)
    for axis in axes.flat[len(panels):]:
        axis.set_axis_off()
    figure.suptitle(title)
    figure.tight_layout()
    save_png(path, figure, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    config = parse_config(Figure4Config, argv, prog="python -m experiments.figure4",
                          description=__doc__.split("\n\n")[0])
    source = config.table2 or config.run / "table2" / "table2.json"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: missing; run `python -m experiments.table2 --run "
                                f"{config.run}` first (or pass --table2 FILE)")
    table2 = json.loads(source.read_text())
    out = config.out or source.parent
    panels = curves(table2)
    result = {"source": str(source), "preset": table2["preset"], "num_images": table2["num_images"],
              "curves": panels}
    write_json(out / "figure4.json", result)
    plot(out / "figure4.png", panels,
         f"{table2.get('model', 'sbgc')}, {table2['preset']}: {table2['num_images']} test images per "
         "corruption and severity (severity 0: clean)", likelihood=table2["kind"] in LOG_DENSITY_KINDS)
    print(f"wrote {out / 'figure4.png'} and {out / 'figure4.json'}")
    return result


if __name__ == "__main__":
    main()
