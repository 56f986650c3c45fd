"""Issue 28's items 1 and 2, reproduced with only the functions both commits have, so that
the same script runs on an old checkout (where the suite's tests of those items cannot even
be imported) and on this one.

    python -m benchmarks.reliability_checks      # here, or in an old checkout with this file copied
                                                 # into its benchmarks/ (results/reliability/)

Prints one line per check: what happened.
"""

import multiprocessing
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp


def _slow_chunks(path: str) -> None:
    from experiments.results import run_chunks

    def compute(chunk, compiling):
        time.sleep(0.5)
        return [{"index": i} for i in chunk]

    run_chunks(Path(path), [[0, 1], [2, 3]], compute, desc="race")


def two_processes_on_one_folder() -> str:
    folder = Path(tempfile.mkdtemp())
    processes = [multiprocessing.get_context("spawn").Process(target=_slow_chunks, args=(str(folder / "images.jsonl"),))
                 for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    lines = (folder / "images.jsonl").read_text().splitlines()
    return f"item 1, two processes on one results folder: exit codes {[p.exitcode for p in processes]}, {len(lines)} lines for 4 images"


def kept_lines_of_other_chunks() -> str:
    from experiments.results import run_chunks

    folder = Path(tempfile.mkdtemp())
    (folder / "images.jsonl").write_text('{"index": 0}\n{"index": 1}\n{"index": 0}\n{"index": 1}\n')
    try:
        records = run_chunks(folder / "images.jsonl", [[0, 1], [2, 3]], lambda c, _: [{"index": i} for i in c], desc="x")
        return f"item 1, kept lines 0, 1, 0, 1 for chunks [0, 1], [2, 3]: accepted, records {[r['index'] for r in records]}"
    except Exception as error:
        return f"item 1, kept lines 0, 1, 0, 1 for chunks [0, 1], [2, 3]: refused ({type(error).__name__}: {str(error)[:90]})"


def label_out_of_range() -> str:
    import score
    from classify import pair_log_likelihoods
    from sde import SubVPSDE

    config = score.NetConfig(image_size=4, channels=1, num_classes=3, nf=4, ch_mult=(1,), num_res_blocks=1,
                             attn_resolutions=(), dropout=0.0)
    network = score.ScoreNet(config, key=jax.random.key(0))
    x = jnp.zeros((1, 1, 4, 4), jnp.uint8)
    try:
        log_p = pair_log_likelihoods(network, SubVPSDE(), x, jnp.array([3]), keys=jax.random.key(0)[None])
        value = log_p[0] if isinstance(log_p, tuple) else log_p
        return f"item 2, label 3 of a 3-class network: accepted, log p {float(jnp.ravel(value)[0]):.2f}"
    except Exception as error:
        said = next((line for line in str(error).splitlines() if "must" in line), str(error).splitlines()[0])
        return f"item 2, label 3 of a 3-class network: refused ({type(error).__name__}: {said.strip()[:90]})"


if __name__ == "__main__":
    eqx.clear_caches()
    for check in (two_processes_on_one_folder, kept_lines_of_other_chunks, label_out_of_range):
        print(check(), flush=True)
