"""The WideResNet baseline (docs/method.md §8): network, inputs, objective, and its training runs."""

import dataclasses
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import baseline
import score
from classify import LogitClassifier
from experiments import checkpoint, train, training
from experiments.data import load_dataset
from experiments.estimates import classifier_of, classify_chunk
from experiments.parallel import data_parallel
from experiments.runs import load_run
from likelihood import channels_first, dequantize, to_model_space

TINY = baseline.WRNConfig(depth=10, width=1, num_classes=3, channels=2, image_size=6, dropout=0.5)


def skeleton(config: baseline.WRNConfig) -> baseline.WideResNet:
    """Shapes alone: no 36 M-parameter allocation."""
    return eqx.filter_eval_shape(baseline.WideResNet, config, key=jax.random.key(0))


@eqx.filter_jit
def apply(model: baseline.WideResNet, x, key=None):
    """One compiled call instead of hundreds of eagerly dispatched operations."""
    return model(x, key=key)


@eqx.filter_jit
def batched(model: baseline.WideResNet, x):
    return jax.vmap(model)(x)


def parameter_count(config: baseline.WRNConfig) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(skeleton(config)))


def wrn_formula(config: baseline.WRNConfig) -> int:
    """The original's count: bias-free convolutions, two affine parameters per normalised
    channel, a 1x1 shortcut convolution where the width or resolution changes, a linear
    classifier with bias."""
    count, c = 9 * config.channels * 16, 16
    for width, stride in zip(config.group_widths, config.strides):
        for i in range(config.blocks_per_group):
            count += 2 * c + 9 * c * width + 2 * width + 9 * width * width
            if c != width or (i == 0 and stride != 1):
                count += c * width
            c = width
    return count + 2 * c + c * config.num_classes + config.num_classes


@pytest.mark.parametrize("name", sorted(baseline.PRESETS))
def test_every_preset_gives_one_logit_per_class(name):
    config = baseline.PRESETS[name]
    x = jax.ShapeDtypeStruct((config.channels, config.image_size, config.image_size), jnp.float32)
    logits = eqx.filter_eval_shape(lambda model, x: model(x, key=jax.random.key(1)), skeleton(config), x)
    assert logits.shape == (config.num_classes,)
    assert parameter_count(config) == wrn_formula(config)


def test_wrn_28_10_has_the_published_36_5_million_parameters():
    assert parameter_count(baseline.PRESETS["cifar10"]) == 36_479_194  # "36.5 M" in the WRN paper
    assert round(parameter_count(dataclasses.replace(baseline.PRESETS["cifar10"], width=12)) / 1e6, 1) == 52.5


def test_forward_is_per_example_and_dropout_needs_a_key():
    model = baseline.WideResNet(TINY, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2, 6, 6))
    logits = batched(model, x)
    assert logits.shape == (4, 3)
    np.testing.assert_allclose(logits[2], apply(model, x[2]), rtol=1e-5, atol=1e-6)
    with_dropout = [apply(model, x[0], jax.random.key(k)) for k in (2, 3)]
    assert not np.allclose(with_dropout[0], with_dropout[1])
    with pytest.raises(ValueError, match=r"expected one image of shape \(2, 6, 6\)"):
        model(x)


def test_config_rejects_a_depth_not_6n_plus_4():
    with pytest.raises(ValueError, match="6 n \\+ 4"):
        dataclasses.replace(TINY, depth=12)


def test_the_one_pixel_map_dequantises_as_likelihood_does_and_evaluates_at_midpoints():
    """The WRN's training inputs (noise) are the likelihood's; its evaluation takes midpoints."""
    pixels = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, 5, 5, 2)), jnp.uint8)
    key = jax.random.key(4)
    noisy = to_model_space(pixels, jax.random.uniform(key, pixels.shape))
    np.testing.assert_array_equal(noisy, dequantize(key, pixels))
    midpoints = channels_first(to_model_space(pixels, 0.5))
    np.testing.assert_allclose(midpoints, jnp.moveaxis(2 * (pixels + 0.5) / 256 - 1, -1, 1), rtol=1e-6)
    assert midpoints.shape == (3, 2, 5, 5) and float(jnp.abs(midpoints).max()) < 1


def test_random_crops_are_shifted_windows_of_the_reflected_image():
    x = jax.random.normal(jax.random.key(0), (16, 2, 8, 8))
    assert baseline.random_crop(x, 0, key=jax.random.key(1)) is x
    crops = baseline.random_crop(x, 1, key=jax.random.key(1))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    windows = [[padded[i, :, a:a + 8, b:b + 8] for a in range(3) for b in range(3)] for i in range(16)]
    shifts = [next(k for k, w in enumerate(options) if np.array_equal(w, crop))
              for options, crop in zip(windows, np.asarray(crops))]
    assert len(set(shifts)) > 3  # the images get different shifts


def test_loss_is_the_mean_cross_entropy():
    model = baseline.WideResNet(TINY, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 2, 6, 6))
    labels = jnp.array([0, 1, 2, 1, 0])
    log_probs = jax.nn.log_softmax(batched(model, x))
    expected = -np.mean([log_probs[i, y] for i, y in enumerate(labels)])
    loss = eqx.filter_jit(baseline.loss)
    np.testing.assert_allclose(loss(model, x, labels), expected, rtol=1e-6)
    assert np.isfinite(loss(model, x, labels, key=jax.random.key(2)))


def test_a_short_digits_run_beats_chance_by_far(wrn_digits_run):
    run = load_run(wrn_digits_run)
    assert run.config.model == "wrn" and run.step == 100
    assert isinstance(run.model, baseline.WideResNet)
    test = load_dataset("digits", "test")
    classifier = classifier_of(run)
    assert isinstance(classifier, LogitClassifier)
    records = classify_chunk(classifier, test.images, test.labels, np.arange(len(test.labels)),
                             jax.random.key(0), data_parallel(len(test.labels)), first=True)
    assert len(records) == 360 and set(records[0]) >= {"index", "label", "kind", "prediction", "scores", "seconds"}
    assert all(r["kind"] == "logits" and r["prediction"] == int(np.argmax(r["scores"])) for r in records)
    assert np.mean([r["prediction"] == r["label"] for r in records]) > 0.8  # 91.7 % when measured; chance 10 %


def test_wrn_run_folder_and_evaluated_model(wrn_digits_run):
    record = json.loads((wrn_digits_run / "config.json").read_text())
    assert record["train"]["model"] == "wrn" and record["network"]["depth"] == 10
    assert record["train"]["ema_decay"] == 0 and record["train"]["learning_rate"] == 0.1
    assert not (wrn_digits_run / "samples").exists()  # a WRN cannot sample
    log = (wrn_digits_run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [50, 100]
    # Without EMA the evaluated model is the trained one.
    config = training.resolve(training.TrainConfig(preset="digits", model="wrn", steps=100))
    like = jax.eval_shape(lambda: training.init_state(training.network_config(config), 0, training.make_optimizer(config)))
    state = checkpoint.load_state(wrn_digits_run, like)
    for evaluated, trained in zip(jax.tree.leaves(state.ema_model), jax.tree.leaves(state.model), strict=True):
        np.testing.assert_array_equal(evaluated, trained)


def test_wrn_resume_is_bit_identical(tmp_path):
    common = ["--preset", "digits", "--model", "wrn", "--batch-size", "16", "--log-every", "2",
              "--lr-schedule", "constant"]
    train.main([*common, "--steps", "4", "--out", str(tmp_path / "whole")])
    train.main([*common, "--steps", "2", "--out", str(tmp_path / "parts")])
    # As a WRN run made before the weighting was a preset's recorded it: no time weighting to match.
    config = tmp_path / "parts" / "config.json"
    record = json.loads(config.read_text())
    record["train"]["weighting"] = "likelihood_is"
    config.write_text(json.dumps(record))
    train.main([*common, "--steps", "4", "--out", str(tmp_path / "parts"), "--resume"])
    whole, parts = (load_run(tmp_path / name) for name in ("whole", "parts"))
    assert whole.fingerprint() == parts.fingerprint() and parts.step == 4


def test_wrn_width_is_a_wrn_option(tmp_path):
    with pytest.raises(ValueError, match="--wrn-width applies to --model wrn"):
        training.resolve(training.TrainConfig(preset="digits", wrn_width=4))
    config = training.resolve(training.TrainConfig(preset="cifar10", model="wrn", wrn_width=12))
    assert training.network_config(config) == dataclasses.replace(baseline.PRESETS["cifar10"], width=12)


def test_score_network_size_options_apply_to_score_runs_only():
    config = training.resolve(training.TrainConfig(preset="fashion-mnist", nf=32, ch_mult="1,2", num_res_blocks=2))
    network = training.network_config(config)
    assert (network.nf, network.ch_mult, network.num_res_blocks) == (32, (1, 2), 2)
    assert network.attn_resolutions == score.PRESETS["fashion-mnist"].attn_resolutions
    with pytest.raises(ValueError, match="--nf applies to --model score, not wrn"):
        training.resolve(training.TrainConfig(preset="digits", model="wrn", nf=32))
