"""The pictures drawn from what training and the tables save, in one place, so that
`python -m experiments.replot` redraws each from the files alone.

- `training_samples`: a run's sample grid at a step (from its checkpoint);
- `figure1`: accuracy against bits/dim, from figure1.json;
- `figure2`: likelihood along interpolations, from figure2.json;
- `table3_examples`: attacked examples, from table3's images.jsonl and examples.npz.

figure3, figure4 and table2's contact sheet are drawn by their entry points.
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int, PRNGKeyArray

import score
from experiments.images import save_grid, to_pixels
from experiments.plotting import drawing, save_png
from likelihood.sampling import sample_probability_flow
from sde import SubVPSDE


@eqx.filter_jit
def _class_samples(model: score.ScoreNet, labels: Int[Array, " n"], key: PRNGKeyArray):
    config = model.config
    noise_fn = lambda x, t, y: model(x, t, y)
    shape = (config.channels, config.image_size, config.image_size)
    return sample_probability_flow(noise_fn, SubVPSDE(), labels, shape, key=key)


def training_samples(folder: Path, model: score.ScoreNet, step: int, samples_per_class: int,
                     class_names: tuple[str, ...]) -> Path:
    """A grid of samples of the evaluated (EMA) model at `step`, one row per label (named),
    from the probability-flow ODE; the same draws at the same step."""
    num_classes = model.config.num_classes
    labels = jnp.repeat(jnp.arange(num_classes), samples_per_class)
    images = _class_samples(model, labels, jax.random.fold_in(jax.random.key(0), step))
    pixels = to_pixels(np.asarray(images)).reshape(num_classes, samples_per_class, *images.shape[2:], -1)
    path = folder / "samples" / f"step_{step:07d}.png"
    save_grid(path, pixels, scale=max(1, 64 // pixels.shape[2]), row_names=class_names,
              title=f"step {step}: samples of the EMA model (probability-flow ODE), one row per label")
    return path


def _spread_out(path: list[dict], apart: float = 0.06) -> list[dict]:
    """The points of a path to name by their step: the first, then each at least `apart` of
    the path's extent (in bits/dim and accuracy) from the last one named, so labels of the
    points that bunch up at the end of training do not overlap."""
    if not path:
        return []
    extent = [max(max(p[k] for p in path) - min(p[k] for p in path), 1e-12) for k in ("bits_per_dim", "accuracy")]
    named = [path[0]]
    for p in path[1:]:
        if max(abs(p[k] - named[-1][k]) / e for k, e in zip(("bits_per_dim", "accuracy"), extent)) >= apart:
            named.append(p)
    return named


@drawing
def figure1(plt, path: Path, runs: dict[str, dict], limit: int, published_points: list, published_lines: list) -> None:
    """Figure 1 (figure1.json's fields): each run's accuracy against bits/dim and its path
    through training; the published CIFAR-10 numbers beside them."""
    figure, (ours, published) = plt.subplots(1, 2, figsize=(11, 5.2))
    for name, run in runs.items():
        if run["kind"] == "logits":
            if run["point"] is not None:
                ours.axhline(100 * run["point"]["accuracy"], linestyle="--", color="grey",
                             label=f"{name} (discriminative)")
            continue
        if run["path"]:
            line, = ours.plot([p["bits_per_dim"] for p in run["path"]],
                              [100 * p["accuracy"] for p in run["path"]], "o-",
                              label=f"{name}: through training ({limit} test images)")
            for p in _spread_out(run["path"]):
                ours.annotate(f"step {p['step']}", (p["bits_per_dim"], 100 * p["accuracy"]), fontsize=6,
                              xytext=(4, -9), textcoords="offset points", color=line.get_color())
        if run["point"] is not None:
            ours.plot(run["point"]["bits_per_dim"], 100 * run["point"]["accuracy"], "*",
                      markersize=12, label=f"{name}: table1 ({run['point']['num_images']} images)")
    ours.set(xlabel="bits/dim (true label)", ylabel="accuracy (%)", title="this project's runs")
    ours.invert_xaxis()  # better likelihood to the right, as the paper draws it
    for name, bits, accuracy in published_points:
        published.plot(bits, 100 * accuracy, "*", markersize=12, label=name)
    for name, accuracy in published_lines:
        published.axhline(100 * accuracy, linestyle="--", color="grey", label=name)
    published.set(xlabel="bits/dim", ylabel="accuracy (%)", title="CIFAR-10, published (docs/method.md §5)")
    published.invert_xaxis()
    for axis in (ours, published):  # below the axes, where it covers no point
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    figure.tight_layout()
    save_png(path, figure, dpi=120)


@drawing
def figure2(plt, path: Path, result: dict) -> None:
    """Figure 2 (figure2.json): the mean curves along the interpolations, and their shape."""
    times = np.asarray(result["times"])
    figure, axis = plt.subplots(figsize=(6, 4))
    styles = {"marginal": ("marginal p(x)", "-", "tab:blue"),
              "label_a": ("p(x | y_A), y_A the label of x_A", "--", "tab:green"),
              "label_b": ("p(x | y_B), y_B the label of x_B", "--", "tab:orange")}
    for name, (label, line, colour) in styles.items():
        mean, std = (np.asarray(result["curves"][name][k]) for k in ("mean", "std"))
        axis.plot(times, mean, line, color=colour, label=label)
        axis.fill_between(times, mean - std, mean + std, color=colour, alpha=0.15)
    pairs, below = result["num_pairs"], 100 * result["shape"]["fraction_convex"]
    # Drawn in bits/dim, -log p scaled: a log p below its chord (convex) is drawn above it.
    axis.set(xlabel="t  (x = t x_A + (1 - t) x_B)", ylabel="-log p in bits/dim (lower: more likely)",
             title=f"{result['preset']}: {pairs} test pair{'s' * (pairs != 1)}, mean ± std of the marginal and "
                   f"conditionals\nin {below:.0f} % of pairs every interior x is less likely than the line "
                   "between the ends\n(log p convex, drawn above its chord in bits/dim)")
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    save_png(path, figure, dpi=120)


@drawing
def table3_examples(plt, out: Path, records: list[dict], examples: dict) -> None:
    """table3's examples.png from its records and examples.npz: each shown image clean and
    attacked, with its prediction, and each perturbation on a colour scale."""
    shown = [r for r in records if f"{r['index']}_clean" in examples]
    if not shown:
        return
    columns = [("clean", None)] + [(name.replace("_", " "), name) for name in shown[0]["attacks"]]
    figure, axes = plt.subplots(2 * len(shown), len(columns), squeeze=False,
                                figsize=(2 * len(columns), 4 * len(shown)))
    for row, r in enumerate(shown):
        clean = examples[f"{r['index']}_clean"]
        for column, (title, name) in enumerate(columns):
            image = clean if name is None else examples[f"{r['index']}_{name}"]
            prediction = r["clean"]["prediction"] if name is None else r["attacks"][name]["prediction"]
            show = lambda axis, picture, cmap="gray", **kw: (axis.imshow(
                np.moveaxis(picture, 0, -1).squeeze(), cmap=cmap, **kw), axis.set_axis_off())
            show(axes[2 * row, column], image, vmin=0, vmax=1)
            axes[2 * row, column].set_title(f"{title}: {prediction} (true {r['label']})", fontsize=7)
            if name is not None:
                delta, axis = image - clean, axes[2 * row + 1, column]
                bound = max(float(np.max(np.abs(delta))), 1e-6)
                show(axis, delta, cmap="coolwarm", vmin=-bound, vmax=bound)
                scale = figure.colorbar(axis.images[0], ax=axis, fraction=0.046, pad=0.04)
                scale.ax.tick_params(labelsize=6)
                axis.set_title("perturbation (intensity)", fontsize=7)
            else:
                axes[2 * row + 1, column].set_axis_off()
    figure.tight_layout()
    save_png(out / "examples.png", figure)
