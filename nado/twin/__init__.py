"""Digital twins of devices: neural-ODE and neural-SDE models (paper eqs. 1-3), one batched
integrator, fitting (multiple shooting; WGAN-GP), and checkpoints. See the module docstrings of
:mod:`nado.twin.integrate` (equations, schemes), :mod:`nado.twin.model` (units, parameters),
:mod:`nado.twin.fit_ode`, :mod:`nado.twin.fit_sde` and :mod:`nado.twin.checkpoint`.
"""
from nado.twin.config import CONFIG_VERSION, TwinConfig
from nado.twin.model import Twin, config_from_dataset
from nado.twin.checkpoint import load_twin, save_twin
from nado.twin.fit_ode import fit_ode
from nado.twin.fit_sde import fit_sde
from nado.twin.metrics import mean_error, std_ratio, w1_marginal

__all__ = ["CONFIG_VERSION", "TwinConfig", "Twin", "config_from_dataset", "fit_ode", "fit_sde",
           "save_twin", "load_twin", "w1_marginal", "std_ratio", "mean_error"]
