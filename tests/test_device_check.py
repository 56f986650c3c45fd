"""`python -m benchmarks.device_check`: what its toy mode must produce (run by
tests/test_optional.py, with the optional packages hidden as on a bare accelerator image), and
the deadlines and skips of its stage runner."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.device_report import markdown
from benchmarks.timed_stages import Stage, run_stages, until_deadline


def check_toy_summary(out: Path) -> None:
    """The toy check's summary in `out` holds every stage, done, with sane values
    (tests/test_optional.py runs it with the optional packages hidden)."""
    summary = json.loads((out / "device_check.json").read_text())
    stages = summary["stages"]
    assert {name: r["status"] for name, r in stages.items()} == dict.fromkeys(
        ["devices", "data", "train", "resume", "table1", "precision", "table1_paper"], "done")
    assert stages["devices"]["result"]["backend"] == "cpu" and summary["versions"]["jax"]
    assert stages["data"]["result"] == {"folder": stages["data"]["result"]["folder"], "train_images": 40,
                                        "test_images": 10, "image_shape": [32, 32, 3]}
    trained, resumed = stages["train"]["result"], stages["resume"]["result"]
    assert trained["checkpoint_step"] == 2 and trained["steps_per_second"] > 0
    assert (resumed["from_step"], resumed["checkpoint_step"], resumed["new_log_steps"]) == (2, 4, [3, 4])
    assert resumed["continued_from_checkpoint"] and resumed["steps_per_second"] > 0
    for name in ("table1", "precision", "table1_paper"):
        table = stages[name]["result"]
        assert table["images"] == 1 and table["log_p_finite"] and table["nfe_per_image"] > 0
        assert table["passes_per_image"] == table["nfe_per_image"] * 10 * (1 + table["settings"]["probes"])
        assert (out / f"{name}.jsonl").read_text().count("\n") == 1
    compared = stages["precision"]["result"]["against_highest"]
    assert compared["images_compared"] == 1 and compared["predictions_changed"] in (0, 1)
    assert np.isfinite(compared["max_abs_delta_log_p"]) and compared["max_abs_delta_log_p"] >= 0
    assert all(r["seconds"] >= 0 for r in stages.values()) and summary["wall_seconds"] > 0
    report = (out / "device_check.md").read_text()
    assert "continued from the checkpoint: yes" in report and "largest abs change in log p" in report


def test_stages_are_skipped_cut_and_failed_with_reasons():
    written = []

    def slow(results, passed):
        return {"cut": until_deadline(passed, lambda: time.sleep(5))}

    def broken(results, passed):
        raise ValueError("no luck")

    stages = [Stage("slow", slow, cap_seconds=0.2), Stage("broken", broken),
              Stage("after", lambda r, p: {}, ("broken",)),
              Stage("dear", lambda r, p: {}, needs_seconds=1e6), Stage("fine", lambda r, p: {"seen": sorted(r)})]
    began = time.perf_counter()
    records = run_stages(stages, 100.0, lambda r: written.append({k: dict(v) for k, v in r.items()}))
    assert time.perf_counter() - began < 3  # the sleep was cut at its 0.2 s deadline
    assert written[0] == {"slow": {"status": "running", "started_at_seconds": 0.0}}
    assert {name: r["status"] for name, r in records.items()} == {
        "slow": "cut", "broken": "failed", "after": "skipped", "dear": "skipped", "fine": "done"}
    assert records["broken"]["reason"] == "ValueError: no luck"
    assert records["after"]["reason"] == "needs stage broken, which failed"
    assert "the stage needs at least 1000000 s" in records["dear"]["reason"]
    assert records["fine"]["result"] == {"seen": ["slow"]}
    summary = {"toy": True, "date": "today", "versions": {"jax": "0"}, "budget_seconds": 100.0,
               "wall_seconds": 1.0, "stages": {name: records[name] for name in ("broken", "after")}}
    assert "| after | skipped |  |  | needs stage broken, which failed |" in markdown(summary)


def test_a_stop_from_outside_is_recorded_and_passed_on():
    written = []

    def interrupted(results, passed):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stage("stopped", interrupted)], 100.0, written.append)
    assert written[-1]["stopped"]["status"] == "stopped"


def test_a_cap_waits_for_something_to_show():
    began = time.perf_counter()

    def slow(results, passed):
        return {"cut": until_deadline(passed, lambda: time.sleep(5))}

    shown = lambda results: time.perf_counter() - began > 0.5
    records = run_stages([Stage("slow", slow, cap_seconds=0.1, shown=shown)], 100.0, lambda r: None)
    assert records["slow"]["status"] == "cut" and 0.5 < time.perf_counter() - began < 3
