"""PGD one image at a time against a batch of images in one compiled gradient.

    python -m benchmarks.attacks --run runs/digits    # about 5 minutes on 2 cores

table3's gradient (the untargeted cross-entropy of log p(x | .) through the solver, the
reverse-mode network, table1's probes and tolerances) in table3's fixed mode, for
--images test images: `attacks.pgd` called on each image alone (as table3 did before it
batched), against one call on the whole batch split over the devices (as it does now).
Prints seconds per image and gradient for both, their ratio, and how far apart the two
computations are: the largest difference of the first step's gradients relative to the
largest gradient entry, on how many images that gradient's solve took a different number
of steps (rounding can flip the solver's accept/reject choice near the tolerance), and
the share of pixels where the adversarial images differ (a sign step turns a small
difference in a near-zero gradient entry into a full step). `--rtol` (atol alike)
shows whether the difference shrinks with the tolerance, `--dt0` whether it comes from
the solver's automatic choice of the first step.
"""

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from attacks import PGD, attack_gradient_fn, for_input_gradients, pgd
from experiments.data import load_dataset
from experiments.estimates import EstimateOptions, classifier_of, replicated
from experiments.parallel import data_parallel
from experiments.runs import load_run


def attack(classifier, images, labels, keys, steps: int):
    gradient_fn = attack_gradient_fn(classifier, labels, keys=keys, mode="fixed", route="solver")
    linf = PGD("linf", 8 / 255, 2.5 * (8 / 255) / steps, steps)
    adversarial, _ = pgd(gradient_fn, images, keys=keys, attack=linf)
    return jax.block_until_ready((adversarial, *gradient_fn(images, keys)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/digits"))
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rtol", type=float, default=None, help="default: table1's for the preset")
    parser.add_argument("--dt0", type=float, default=None, help="first step; default: diffrax's choice")
    args = parser.parse_args()
    run = load_run(args.run)
    classifier = dataclasses.replace(classifier_of(run, EstimateOptions(rtol=args.rtol, atol=args.rtol)),
                                     dt0=args.dt0)
    classifier = for_input_gradients(classifier, "solver")
    test = load_dataset(run.config.preset, "test")
    images = jnp.moveaxis(jnp.asarray(test.images[:args.images], jnp.float32) / 255, -1, 1)
    labels = jnp.asarray(test.labels[:args.images], jnp.int32)
    keys = jax.random.split(jax.random.key(0), args.images)

    attack(classifier, images[:1], labels[:1], keys[:1], 1)  # compile the batch-of-one gradient
    start = time.perf_counter()
    alone = [attack(classifier, images[i:i + 1], labels[i:i + 1], keys[i:i + 1], args.steps)
             for i in range(args.images)]
    one_at_a_time = time.perf_counter() - start
    alone = [np.concatenate(parts) for parts in zip(*alone)]

    same, split = data_parallel(args.images)
    classifier = replicated(classifier, same)
    batch = jax.device_put((images, labels, keys), split)
    attack(classifier, *batch, 1)  # compile the batch's gradient
    start = time.perf_counter()
    together = attack(classifier, *batch, args.steps)
    batched = time.perf_counter() - start

    # The timed calls include one extra gradient each (the comparison's), so args.steps + 1.
    per = lambda seconds: seconds / (args.images * (args.steps + 1))
    gradient_difference = float(np.max(np.abs(alone[1] - np.asarray(together[1])))
                                / np.max(np.abs(alone[1])))
    differing_pixels = float(np.mean(alone[0] != np.asarray(together[0])))
    other_steps = int(np.sum(alone[2] != np.asarray(together[2])))
    print(f"{run.config.preset}: {args.images} images, L-inf PGD, {args.steps} steps, fixed noise, "
          f"{classifier.divergence.n_probes} probes, rtol {classifier.rtol}, first step {args.dt0 or 'automatic'}; "
          f"{split.mesh.size} device(s) for the batch")
    print("| PGD | seconds per image and gradient | ratio |\n| --- | ---: | ---: |")
    print(f"| one image at a time | {per(one_at_a_time):.2f} | 1.00 |")
    print(f"| {args.images} images in one call | {per(batched):.2f} | {batched / one_at_a_time:.2f} |")
    print(f"first gradients: largest difference / largest entry {gradient_difference:.1e}; their "
          f"solves took other step counts alone and batched on {other_steps} of {args.images} images; "
          f"adversarial images differ in {differing_pixels:.1%} of the pixels")


if __name__ == "__main__":
    main()
