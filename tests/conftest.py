"""Shared test settings: hypothesis examples are few because each new shape recompiles."""

from hypothesis import settings

settings.register_profile("sbgc", max_examples=8, deadline=None, derandomize=True)
settings.load_profile("sbgc")
