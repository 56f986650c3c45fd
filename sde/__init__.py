"""Forward SDEs of score-based diffusion (docs/method.md §1, §3)."""

from sde.sdes import AbstractSDE, SubVPSDE, VPSDE

__all__ = ["AbstractSDE", "SubVPSDE", "VPSDE"]
