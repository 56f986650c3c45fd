"""Stages of a check that must end within a time budget, each recorded as it goes.

A stage runs when the stages it needs have results and enough of the budget
is left, else it is recorded as skipped with the reason. At its deadline
SIGALRM raises KeyboardInterrupt in it, which the entry points' loops take
as Ctrl-C: training saves its checkpoint and a table its finished chunks,
then both exit with status 130, and the stage reports what was done by
then. The deadline is the stage's cap, put off until the stage has something
to show (`shown`: a first image, say), but never past the budget's end.

Deadlines are soft: XLA finishes a compile or a computation it has begun
before Python sees the signal (and a table loses the chunk it was in). So
the record is written before each stage too, as "running": a process killed
during the stage (by the wrapper's timeout) leaves that behind.
"""

import contextlib
import dataclasses
import functools
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator

# What a stage's run gets: the results of the stages before it, and whether its deadline passed.
StageRun = Callable[[dict[str, dict], Callable[[], bool]], dict]


@dataclasses.dataclass(frozen=True)
class Stage:
    """`run(results, passed)` returns the stage's result, with "cut": True where the deadline
    cut its work short. It runs only once every stage in `after` has a result and at least
    `needs_seconds` of the budget are left. Its deadline is `cap_seconds` after it starts (None:
    the budget's end), or later, once `shown(results)` says it has something to show."""

    name: str
    run: StageRun
    after: tuple[str, ...] = ()
    needs_seconds: float = 0.0
    cap_seconds: float | None = None
    shown: Callable[[dict[str, dict]], bool] = lambda results: True


class Deadline:
    """Within `armed()`, SIGALRM at the cap raises KeyboardInterrupt once `shown()`, or at the
    end regardless (both `time.perf_counter()` times)."""

    def __init__(self, cap: float, end: float, shown: Callable[[], bool]) -> None:
        self.cap, self.end, self.shown = min(cap, end), end, shown
        self.active, self.fired = False, False

    def passed(self) -> bool:
        return self.fired

    def _handler(self, signum: int, frame: object) -> None:
        if not self.active:  # an alarm delivered just after the stage ended is dropped
            return
        if time.perf_counter() < self.end and not self.shown():
            signal.setitimer(signal.ITIMER_REAL, min(1.0, max(self.end - time.perf_counter(), 1e-3)))
            return
        self.fired = True
        raise KeyboardInterrupt("deadline")

    @contextlib.contextmanager
    def armed(self) -> Iterator["Deadline"]:
        previous = signal.signal(signal.SIGALRM, self._handler)
        self.active = True
        signal.setitimer(signal.ITIMER_REAL, max(self.cap - time.perf_counter(), 1e-3))
        try:
            yield self
        finally:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def until_deadline(passed: Callable[[], bool], call: Callable[[], object]) -> bool:
    """Run `call()`; True if the deadline stopped it (an entry point's loop then saves its work
    and exits with status 130), False if it finished. Any other stop is passed on."""
    try:
        call()
    except (KeyboardInterrupt, SystemExit) as stop:
        if not passed() or (isinstance(stop, SystemExit) and stop.code != 130):
            raise
        return True
    return False


def _reason_to_skip(stage: Stage, records: dict[str, dict], left: float) -> str | None:
    for name in stage.after:
        if "result" not in records.get(name, {}):
            return f"needs stage {name}, which {records.get(name, {}).get('status', 'did not run')}"
    if left < stage.needs_seconds:
        return f"{left:.0f} s of the budget left, the stage needs at least {stage.needs_seconds:.0f} s"
    return None


def run_stages(stages: list[Stage], budget_seconds: float, report: Callable[[dict[str, dict]], None]
               ) -> dict[str, dict]:
    """Every stage in order within `budget_seconds`; `report(records)` after every change.

    A record: "status" (done, cut, skipped, failed, running, stopped), "reason" where
    skipped, failed, stopped or cut without a result, "result", "started_at_seconds" (since the first
    stage began) and "seconds" (its wall time). A failure is printed and recorded, and the
    stages that need it are skipped; a stop from outside (Ctrl-C, SIGTERM) is recorded, then
    passed on.
    """
    began, records = time.perf_counter(), {}
    for stage in stages:
        left = budget_seconds - (time.perf_counter() - began)
        reason = _reason_to_skip(stage, records, left)
        if reason is not None:
            records[stage.name] = {"status": "skipped", "reason": reason}
            report(records)
            continue
        started = time.perf_counter()
        timing = {"started_at_seconds": round(started - began, 1)}
        records[stage.name] = {"status": "running", **timing}
        report(records)
        results = {name: record["result"] for name, record in records.items() if "result" in record}
        cap = started + (left if stage.cap_seconds is None else stage.cap_seconds)
        deadline = Deadline(cap, started + left, functools.partial(stage.shown, results))
        try:
            with deadline.armed():
                result = stage.run(results, deadline.passed)
            entry = {"status": "cut" if result.get("cut") else "done", "result": result}
        except (KeyboardInterrupt, SystemExit):
            if not deadline.passed():
                records[stage.name] = {"status": "stopped", "reason": "stopped from outside (Ctrl-C, SIGTERM)",
                                       **timing, "seconds": round(time.perf_counter() - started, 2)}
                report(records)
                raise
            entry = {"status": "cut", "reason": "its deadline passed before it had a result"}
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            entry = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
        records[stage.name] = {**entry, **timing, "seconds": round(time.perf_counter() - started, 2)}
        report(records)
    return records
