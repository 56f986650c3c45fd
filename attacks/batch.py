"""Every attack of a table on a batch of images, for any classifier.

The tables' attacks: untargeted PGD in each ball of `attacks`, in each mode of
the classifier's randomness (`modes_of`): "fixed" (the same dequantisation
noise and probes at every step and at evaluation) and "eot" (each step
averages fresh draws; the adversarial image is then judged on one fresh
draw, the same for every EOT attack on that image). A deterministic
classifier has one mode, "fixed": its EOT attack would be the same.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from attacks.gradient import Route, attack_gradient_fn, for_input_gradients
from attacks.pgd import PGD, pgd
from classify import Classifier

MODES = ("fixed", "eot")


def modes_of(classifier: Classifier) -> tuple[str, ...]:
    """The modes an attack on `classifier` can take."""
    return ("fixed",) if classifier.deterministic else MODES


def attack_name(attack: PGD, mode: str) -> str:
    """How tables name an attack: "linf_fixed", "l2_eot", ..."""
    return f"{attack.norm}_{mode}"


@eqx.filter_jit
def image_batch_scores(classifier: Classifier, images: Float[Array, "b c h w"], keys: PRNGKeyArray):
    """`classifier.image_scores` of each image with its key: scores [b, K] and function
    evaluations [b]."""
    return jax.vmap(classifier.image_scores)(images, keys)


def _fold_in(keys: PRNGKeyArray, data: int) -> PRNGKeyArray:
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)


def attack_batch(
    classifier: Classifier,
    images: Float[Array, "b c h w"],
    labels: Int[Array, " b"],
    keys: PRNGKeyArray,
    attacks: tuple[PGD, ...],
    *,
    eot_draws: int = 4,
    route: Route = "solver",
    gradient_classifier: Classifier | None = None,
) -> dict:
    """Clean and attacked scores of a batch of images (intensities in [0, 1]), the
    adversarial images and the costs, image i's draws and random starts from `keys[i]`.

    PGD follows the input gradients of `gradient_classifier` (default: `classifier`
    itself); another classifier's make it a transfer attack, whose images `classifier`
    then judges (an attack that is not the judge's own: its robust accuracy is an upper
    bound).

    Returns {"clean": (scores, nfe), name: {"scores", "images", "nfe", "gradients"}} with
    a name per attack and mode (`attack_name`); `nfe` sums the forward function
    evaluations of the gradient steps (0 for an ELBO's, which has no solver), `gradients` counts input gradients. Two compiled
    functions serve all of it (the scores and one draw's gradient), whatever the images,
    labels, ball or mode.
    """
    gradient_classifier = for_input_gradients(gradient_classifier or classifier, route)
    fixed_keys, start_keys, eot_keys, judge_keys = jnp.moveaxis(
        jax.vmap(lambda k: jax.random.split(k, 4))(keys), 1, 0)
    if classifier.deterministic:  # it draws nothing: its attacks start from the image's own key
        start_keys = keys
    result = {"clean": image_batch_scores(classifier, images, fixed_keys)}
    for number, attack in enumerate(attacks):
        for mode in modes_of(classifier):
            gradient_fn = attack_gradient_fn(gradient_classifier, labels, keys=fixed_keys, mode=mode,
                                             eot_draws=eot_draws, route=route)
            starts = _fold_in(start_keys if mode == "fixed" else eot_keys, number)
            adversarial, nfe = pgd(gradient_fn, images, keys=starts, attack=attack)
            scores, _ = image_batch_scores(classifier, adversarial, fixed_keys if mode == "fixed" else judge_keys)
            draws = eot_draws if mode == "eot" else 1
            result[attack_name(attack, mode)] = {
                "scores": scores, "images": adversarial, "nfe": nfe,
                "gradients": jnp.full(labels.shape, attack.steps * draws)}
    return result
