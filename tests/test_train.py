"""`python -m experiments.train`: exact resume, interruption, checkpoints, data parallelism."""

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

import score
from experiments import checkpoint, export, runs, train, training
from experiments.cli import parse_config
from tests.conftest import TINY_TRAINING, assert_replotted, counting, ctrl_c, not_handled, signal_handled_by

def run(out: Path, steps: int, *extra: str) -> None:
    train.main([*TINY_TRAINING, "--out", str(out), "--steps", str(steps), *extra])


def saved_state(out: Path) -> training.TrainState:
    """The checkpoint of a run made with TINY_TRAINING."""
    config = training.resolve(parse_config(training.TrainConfig, [*TINY_TRAINING, "--out", str(out)],
                                           prog="test", description=""))
    optimizer = training.make_optimizer(config)
    like = jax.eval_shape(lambda: training.init_state(training.network_config(config), 0, optimizer))
    return checkpoint.load_state(out, like)


def saved_leaves(out: Path) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(saved_state(out))]


def test_run_folder_contents(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["train"]["steps"] == 4 and config["network"]["image_size"] == 8
    log = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [2, 4]
    assert all(np.isfinite(line["loss"]) for line in log)
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == [
        "step_0000002.png", "step_0000004.png"
    ]


def test_replot_draws_the_checkpoints_samples_again(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "run")
    assert_replotted(tmp_path / "run", "samples/step_0000004.png")


def test_resume_is_bit_identical(tiny_run, tmp_path):
    run(tmp_path, 2)
    with (tmp_path / "log.jsonl").open("a") as log:
        log.write('{"step": 3, "lo')  # a kill in the middle of a line (benchmarks/kill.py kills for real)
    run(tmp_path, 4, "--resume")
    for resumed, uninterrupted in zip(saved_leaves(tmp_path), saved_leaves(tiny_run), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 2


def sending(signum: int):
    return lambda: os.kill(os.getpid(), signum)


@pytest.mark.parametrize("interrupt, signum, handler_before", [
    (ctrl_c, None, None),  # Ctrl-C in a terminal
    (sending(signal.SIGTERM), signal.SIGTERM, not_handled),  # kill, a job scheduler
    (sending(signal.SIGINT), signal.SIGINT, signal.SIG_IGN),  # kill -INT to `nohup ... &`
], ids=["ctrl-c", "sigterm", "sigint-to-a-background-job"])
def test_stopping_saves_a_checkpoint_and_resume_finishes_the_same(
    tiny_run, tmp_path, monkeypatch, capsys, interrupt, signum, handler_before
):
    calls = []
    real_step = train.train_step
    monkeypatch.setattr(train, "train_step", counting(real_step, calls, interrupt_at=3, interrupt=interrupt))
    with signal_handled_by(signum, handler_before), pytest.raises(SystemExit) as exit_info:
        run(tmp_path, 4)
    assert exit_info.value.code == 130
    assert "interrupted at step 2: checkpoint saved" in capsys.readouterr().err
    monkeypatch.setattr(train, "train_step", real_step)
    run(tmp_path, 4, "--resume")
    for resumed, uninterrupted in zip(saved_leaves(tmp_path), saved_leaves(tiny_run), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


class Killed(Exception):
    """Stands in for SIGKILL, which no handler sees: nothing is saved on the way out."""


def kill() -> None:
    raise Killed


def test_checkpoints_also_come_by_the_clock(tmp_path, monkeypatch):
    """--checkpoint-minutes 0 saves after every step, between the grids and regular
    checkpoints of --checkpoint-every: a kill at step 3 leaves step 2's state."""
    monkeypatch.setattr(train, "train_step", counting(train.train_step, [], interrupt_at=3, interrupt=kill))
    with pytest.raises(Killed):
        run(tmp_path, 4, "--checkpoint-every", "100", "--checkpoint-minutes", "0")
    assert int(saved_state(tmp_path).step) == 2
    assert not (tmp_path / "samples").exists()


def test_truncated_checkpoint_names_the_file(tiny_run, tmp_path):
    for name in ("config.json", "checkpoint.eqx"):
        (tmp_path / name).write_bytes((tiny_run / name).read_bytes())
    data = (tmp_path / "checkpoint.eqx").read_bytes()
    (tmp_path / "checkpoint.eqx").write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint\.eqx: truncated"):
        run(tmp_path, 6, "--resume")


def test_a_float64_process_is_told_why_a_checkpoint_does_not_load(tiny_run):
    with jax.enable_x64(True), pytest.raises(checkpoint.CheckpointError,
                                             match="expects float64 arrays .* load it with x64 off"):
        saved_state(tiny_run)


def test_mismatched_settings_are_named(tiny_run):
    with pytest.raises(checkpoint.CheckpointError, match=r"train\.learning_rate: saved 0\.002, now 0\.01"):
        run(tiny_run, 6, "--resume", "--learning-rate", "0.01")


def test_a_run_loads_with_its_own_network_after_its_preset_changed(tiny_run, tmp_path):
    """A run records its network: a preset changed since (fashion-mnist's nf 16 -> 32) still
    loads it, and a record of another network type is named."""
    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder)
    record = json.loads((folder / "config.json").read_text())
    record["train"]["nf"] = None  # as if the preset's nf (16 for digits) had made it, not --nf 8
    (folder / "config.json").write_text(json.dumps(record))
    assert runs.load_run(folder).model.config.nf == 8
    record["network"]["width"] = 2
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(checkpoint.CheckpointError, match=r"config\.json: network: .*width"):
        runs.load_run(folder)


def test_an_exported_model_loads_as_its_run_and_is_checked(tiny_run, tmp_path):
    out = export.main(["--run", str(tiny_run), "--out", str(tmp_path / "shipped")])
    shipped, original = runs.load_run(out), runs.load_run(tiny_run)
    assert shipped.fingerprint() == original.fingerprint() and shipped.step == 4
    assert json.loads((out / "config.json").read_text())["exported"]["parameters_sha1"] == \
        original.fingerprint()["parameters_sha1"]
    assert (out / "model.eqx").stat().st_size < (tiny_run / "checkpoint.eqx").stat().st_size / 2
    with pytest.raises(checkpoint.CheckpointError, match="exported model.*resume the run it came from"):
        run(out, 6, "--resume")
    data = bytearray((out / "model.eqx").read_bytes())
    data[100] ^= 1
    (out / "model.eqx").write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=r"model\.eqx: corrupted"):
        runs.load_run(out)


def test_missing_checkpoint_and_overwrite_are_refused(tiny_run, tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="config.json: missing"):
        run(tmp_path, 2, "--resume")
    with pytest.raises(checkpoint.CheckpointError, match="exists: pass --resume"):
        run(tiny_run, 2)


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in ("--preset", "--steps", "--batch-size", "--seed", "--out", "--resume", "--ema-decay"):
        assert field in text
    assert "(default per preset: digits 3000," in text and "(default 128)" in text


DATA_PARALLEL_CHECK = """
import sys
import jax, numpy as np
import score
from experiments import parallel, train, training
from experiments.data import load_dataset
assert jax.device_count() == 6, jax.devices()
# The largest count that divides the batch: 128 and 16 on 4 of 6 devices, 18 on all 6.
assert [parallel.devices_for(b) for b in (128, 16, 18, 7)] == [4, 4, 6, 1]
config = training.resolve(training.TrainConfig(preset="digits", batch_size=16, steps=10))
optimizer = training.make_optimizer(config)
data = load_dataset("digits", "train")
# A small 8x8 network: the partitioning does not depend on the size, and it compiles faster.
network = score.NetConfig(image_size=8, channels=1, num_classes=10, nf=4, ch_mult=(1,), num_res_blocks=1,
                          attn_resolutions=(), dropout=0.0)
results = []
for shardings in (parallel.data_parallel(1), parallel.data_parallel(16)):
    replicated, batch_sharding = shardings
    state = jax.device_put(training.init_state(network, 0, optimizer), replicated)
    for step in range(2):
        index = training.batch_indices(0, step, len(data.labels), 16)
        batch = jax.device_put((data.images[index], data.labels[index]), batch_sharding)
        state, loss = training.train_step(state, *batch, optimizer, training.StepSettings.of(config))
    results.append(jax.tree.leaves(state))
assert len(results[1][0].sharding.device_set) == 4
for one, four in zip(*results, strict=True):
    np.testing.assert_allclose(np.asarray(one, np.float64), np.asarray(four, np.float64), rtol=1e-4, atol=1e-6)
# The entry point itself, with the default batch of 128 on 6 devices (it once refused), on a
# one-level network, which compiles faster.
train.main(["--preset", "digits", "--nf", "8", "--ch-mult", "1", "--steps", "2", "--samples-per-class", "0",
            "--out", sys.argv[1]])
print("equal")
"""


def test_any_device_count_gives_the_single_device_step(tmp_path):
    environment = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=6")
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL_CHECK, str(tmp_path)], env=environment,
        capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "equal" in result.stdout


def test_ema_warm_up_forgets_the_initialisation():
    """The EMA weight of step t is 1 - min(decay, (1 + t) / (10 + t)), not a fixed 1 - decay."""
    config = training.resolve(training.TrainConfig(preset="digits", batch_size=4, lr_schedule="constant",
                                             warmup_steps=1, ema_decay=0.999))
    optimizer = training.make_optimizer(config)
    settings = training.StepSettings.of(config)
    # A 4x4 network: the rule does not depend on the size, and it compiles in a fraction of the time.
    network = score.NetConfig(image_size=4, channels=1, num_classes=4, nf=4, ch_mult=(1,), num_res_blocks=1,
                              attn_resolutions=(), dropout=0.0)
    state = training.init_state(network, 0, optimizer)
    images, labels = np.full((4, 4, 4, 1), 128, np.uint8), np.arange(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor a donation that XLA declined
        for _ in range(2):  # step 0 has learning rate 0 (warm-up), step 1 moves the parameters
            previous, (state, _) = state, training.train_step(state, images, labels, optimizer, settings)
            assert all(leaf.is_deleted() for leaf in jax.tree.leaves(previous))  # donated
    init = training.init_state(network, 0, optimizer).model
    params = lambda model: jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    moved = False
    for ema, start, now in zip(params(state.ema_model), params(init), params(state.model), strict=True):
        np.testing.assert_allclose(ema, start + 9 / 11 * (now - start), rtol=1e-5, atol=1e-6)
        moved |= bool(np.any(now != start))
    assert moved


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_run, tmp_path, monkeypatch):
    real_step = train.train_step

    def poisoned(state, *args):  # from the 4th step on, the parameters turn NaN
        state, loss = real_step(state, *args)
        if int(state.step) >= 4:
            params, static = eqx.partition(state.model, eqx.is_inexact_array)
            state = eqx.tree_at(lambda s: s.model, state,
                                eqx.combine(jax.tree.map(lambda p: p * np.nan, params), static))
            loss = loss * np.nan
        return state, loss

    monkeypatch.setattr(train, "train_step", poisoned)
    with pytest.raises(train.TrainingDiverged, match="diverged by step 4.*last good checkpoint is kept"):
        run(tmp_path, 6)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [2]  # the NaN mean of steps 3-4 was not logged
    # The kept checkpoint is step 2's, equal to the uninterrupted run's at step 2.
    monkeypatch.setattr(train, "train_step", real_step)
    reference = tmp_path / "reference"
    run(reference, 2)
    for kept, expected in zip(saved_leaves(tmp_path), saved_leaves(reference), strict=True):
        np.testing.assert_array_equal(kept, expected)


def test_kept_checkpoints_and_a_resumed_config_with_its_new_steps(tmp_path):
    run(tmp_path, 4, "--keep-checkpoints")
    assert checkpoint.kept_checkpoints(tmp_path) == [(2, "checkpoints/step_0000002.eqx"),
                                                    (4, "checkpoints/step_0000004.eqx")]
    run(tmp_path, 6, "--keep-checkpoints", "--resume")
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 6
    assert [step for step, _ in checkpoint.kept_checkpoints(tmp_path)] == [2, 4, 6]
    # A run made before the retention and multi-process options resumes with them.
    record = json.loads((tmp_path / "config.json").read_text())
    for name in ("keep_last", "keep_every", "coordinator", "num_processes", "process_id"):
        del record["train"][name]
    (tmp_path / "config.json").write_text(json.dumps(record))
    run(tmp_path, 8, "--keep-checkpoints", "--resume", "--keep-last", "1", "--keep-every", "4")
    assert [step for step, _ in checkpoint.kept_checkpoints(tmp_path)] == [4, 8]
    # How often it saves changes no number: a resume may save less often.
    run(tmp_path, 12, "--keep-checkpoints", "--resume", "--keep-last", "1", "--keep-every", "4",
        "--checkpoint-every", "4")
    assert [step for step, _ in checkpoint.kept_checkpoints(tmp_path)] == [4, 8, 12]


def test_retention_keeps_the_last_and_the_multiples():
    steps = [2, 4, 6, 8, 10, 12]
    assert checkpoint.retained(steps, keep_last=0, keep_every=0) == steps
    assert checkpoint.retained(steps, keep_last=2, keep_every=0) == [10, 12]
    assert checkpoint.retained(steps, keep_last=2, keep_every=4) == [4, 8, 10, 12]
    with pytest.raises(ValueError, match="add --keep-checkpoints"):
        run(Path("unused"), 2, "--keep-last", "2")


def tiny_state() -> training.TrainState:
    """A 4x4 network's state: typed-key data as uint32, a step scalar, Adam's moments."""
    config = training.resolve(training.TrainConfig(preset="digits", batch_size=4, lr_schedule="constant",
                                                   warmup_steps=1, ema_decay=0.999))
    network = score.NetConfig(image_size=4, channels=1, num_classes=4, nf=4, ch_mult=(1,), num_res_blocks=1,
                              attn_resolutions=(), dropout=0.0)
    return training.init_state(network, 0, training.make_optimizer(config))


def test_a_background_save_writes_the_bytes_of_a_synchronous_one(tmp_path):
    state = tiny_state()
    checkpoint.write_checkpoint(tmp_path, checkpoint.serialised(state), "synchronous.eqx")
    with checkpoint.BackgroundSaver() as saver:
        saver.save(state, lambda host: checkpoint.write_checkpoint(tmp_path, checkpoint.serialised(host),
                                                                   "background.eqx"))
    assert (tmp_path / "background.eqx").read_bytes() == (tmp_path / "synchronous.eqx").read_bytes()
    assert int(checkpoint.load_state(tmp_path, state, "background.eqx").step) == 0


def test_a_failed_background_save_raises_where_it_is_waited_for(tmp_path):
    (tmp_path / "file").write_text("")
    state = tiny_state()
    with pytest.raises(NotADirectoryError):  # the worker's error, raised by the next save
        with checkpoint.BackgroundSaver() as saver:
            saver.save(state, lambda host: checkpoint.write_checkpoint(tmp_path / "file" / "run", b""))
            saver.save(state, lambda host: None)
    with pytest.raises(NotADirectoryError):  # ... or by leaving the block, even for another error
        with checkpoint.BackgroundSaver() as saver:
            saver.save(state, lambda host: checkpoint.write_checkpoint(tmp_path / "file" / "run", b""))
            raise KeyboardInterrupt


def test_retention_options_need_kept_checkpoints():
    with pytest.raises(ValueError, match="--keep-last and --keep-every choose among the kept checkpoints"):
        training.resolve(training.TrainConfig(keep_last=2))
    with pytest.raises(ValueError, match="--keep-every keeps checkpoints that --keep-last would drop"):
        training.resolve(training.TrainConfig(keep_checkpoints=True, keep_every=100))
    with pytest.raises(ValueError, match="--keep-every 2500 keeps multiples of it among the checkpoints of "
                                         "--checkpoint-every 1000"):
        training.resolve(training.TrainConfig(keep_checkpoints=True, keep_last=1, keep_every=2500))
