"""Digital twins of devices: neural-ODE and neural-SDE models (paper eqs. 1-3), one batched
integrator, fitting (multiple shooting; WGAN-GP), and checkpoints. See the module docstrings of
:mod:`nado.twin.integrate` (equations, schemes), :mod:`nado.twin.model` (units, parameters),
:mod:`nado.twin.fit_ode`, :mod:`nado.twin.fit_sde` and :mod:`nado.twin.checkpoint`.
"""
from nado.twin.config import CONFIG_VERSION, TwinConfig
from nado.twin.model import Twin, config_from_dataset

__all__ = ["CONFIG_VERSION", "TwinConfig", "Twin", "config_from_dataset"]
