"""The class-conditional noise-prediction network and its training objective."""
