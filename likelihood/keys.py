"""PRNG keys in either style: typed (`jax.random.key`) or legacy raw (`jax.random.PRNGKey`)."""

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray


def typed_keys(keys) -> PRNGKeyArray:
    """`keys` as typed PRNG keys: typed keys unchanged, legacy raw keys (uint32 with a last
    axis of 2, as `jax.random.PRNGKey` makes) wrapped, so that shapes count keys, not words."""
    if jax.dtypes.issubdtype(getattr(keys, "dtype", None), jax.dtypes.prng_key):
        return keys
    keys = jnp.asarray(keys)
    if keys.dtype == jnp.uint32 and keys.ndim >= 1 and keys.shape[-1] == 2:
        return jax.random.wrap_key_data(keys)
    raise TypeError(f"expected PRNG keys (jax.random.key(seed), or the legacy jax.random.PRNGKey), "
                    f"got an array of dtype {keys.dtype} and shape {keys.shape}")
