"""Digital twins of devices: neural-ODE and neural-SDE models (paper eqs. 1-3), one batched
integrator, fitting (multiple shooting; WGAN-GP), and checkpoints. See the module docstrings of
:mod:`nado.twin.integrate` (equations, schemes), :mod:`nado.twin.model` (units, parameters),
:mod:`nado.twin.fit_ode`, :mod:`nado.twin.fit_sde`, :mod:`nado.twin.checkpoint`, :mod:`nado.twin.metrics`
(the one set of twin metrics), :mod:`nado.twin.report` / :mod:`nado.twin.figures` (the twin report)
and :mod:`nado.twin.rig` (a twin served as a rig, station backend ``sde``).
"""
from nado.twin.config import CONFIG_VERSION, TwinConfig
from nado.twin.model import Twin, config_from_dataset
from nado.twin.checkpoint import load_twin, save_twin
from nado.twin.fit_ode import fit_ode
from nado.twin.fit_sde import fit_sde
from nado.twin.metrics import autocov_error, mean_error, repeat_metrics, std_ratio, w1

__all__ = ["CONFIG_VERSION", "TwinConfig", "Twin", "config_from_dataset", "fit_ode", "fit_sde",
           "save_twin", "load_twin", "w1", "std_ratio", "mean_error", "autocov_error", "repeat_metrics"]
