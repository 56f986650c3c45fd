"""Early elimination by another estimator: one classifier shortlists, the exact one decides (§4.8).

`LikelihoodClassifier(shortlist=k)` ranks the labels by its own loose solve;
`ShortlistClassifier` takes the ranking from any classifier, such as an
`ELBOClassifier`, whose forward passes cost no solve and no JVP.
"""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, Integer, PRNGKeyArray

from classify.classifiers import Kind, LikelihoodClassifier, Scores, check_keys, check_pixels, pixel_shape
from classify.elbo import ELBOClassifier
from classify.shortlist import solve_shortlist
from likelihood import channels_first


class ShortlistClassifier(eqx.Module):
    """`exact`'s log p(x | y) on the `keep` best labels of `first`, and its argmax among them.

    The scores hold the exact log p on each image's shortlist and `first`'s scores,
    moved by the image's mean exact-minus-first gap on the shortlist, elsewhere
    (`classify.Shortlisted`). `first` sees the same keys as `exact`, so an ELBO first pass
    dequantises an image with the same noise. `nfe` counts the exact solve's
    evaluations, `passes` both stages' network passes.
    """

    kind: ClassVar[Kind] = "likelihood"
    deterministic: ClassVar[bool] = False

    first: LikelihoodClassifier | ELBOClassifier
    exact: LikelihoodClassifier
    keep: int = eqx.field(static=True)

    def __check_init__(self):
        if self.exact.shortlist is not None:
            raise ValueError("the exact classifier of a ShortlistClassifier must have no shortlist of its own")
        if self.first.num_classes != self.exact.num_classes:
            raise ValueError(f"the first pass has {self.first.num_classes} labels and the exact one "
                             f"{self.exact.num_classes}")
        if not 1 <= self.keep <= self.exact.num_classes:
            raise ValueError(f"keep must lie in [1, {self.exact.num_classes}], got {self.keep}")

    @property
    def num_classes(self) -> int:
        return self.exact.num_classes

    def _decide(self, first: Scores, x: Array, keys: PRNGKeyArray, inputs: str) -> Scores:
        options = self.exact._options()
        result = solve_shortlist(self.exact.network, self.exact.sde, x, first.scores, keys=keys, keep=self.keep,
                                 inputs=inputs, **options)
        exact_nfe = jnp.max(result.exact_stats.num_function_evaluations, axis=1)
        passes = first.passes + exact_nfe * self.keep * self.exact._passes_per_evaluation(x)
        return Scores(result.log_probs, result.prediction, first.nfe + exact_nfe, passes, result.shortlisted)

    @eqx.filter_jit
    def scores(self, pixels: Integer[Array, "n h w c"], keys: PRNGKeyArray) -> Scores:
        """As `LikelihoodClassifier.scores`: n images of integer pixels, one key per image."""
        pixels = check_pixels(pixels, pixel_shape(self.exact.network), "ShortlistClassifier.scores")
        keys = check_keys(keys, len(pixels))
        return self._decide(self.first.scores(pixels, keys), channels_first(pixels), keys, "pixels")

    @eqx.filter_jit
    def model_scores(self, x: Float[Array, "n c h w"], keys: PRNGKeyArray) -> Scores:
        """As `LikelihoodClassifier.model_scores`: model-space inputs, used as given."""
        x, keys = jnp.asarray(x), check_keys(keys, len(x))
        return self._decide(self.first.model_scores(x, keys), x, keys, "model")

    def image_scores(self, image: Float[Array, "c h w"], key: PRNGKeyArray, **options
                     ) -> tuple[Float[Array, " k"], Int[Array, ""]]:
        """`exact`'s differentiable log p of every label of ONE image (a shortlist has no
        gradient; attacks go through the exact classifier, as with `LikelihoodClassifier`'s
        own shortlist)."""
        return self.exact.image_scores(image, key, **options)
