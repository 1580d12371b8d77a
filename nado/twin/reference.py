"""The same neural SDE written for ``torchsde.sdeint``: the reference for tests and ``nado bench``.

The state is the paper's full vector ``Y = (y, a)`` (B, D + N_a). The delayed entries get the
drift ``(z(t-k+1) - z(t-k)) / 1 step``; with one Euler step per input sample this is exactly the
shift that :mod:`nado.twin.integrate` performs. Inputs are held over each sample: the drift at time
``t`` uses sample ``floor(t)``; for Heun, whose corrector is evaluated at the end of the step
``t1 = k + 1``, an evaluation one step after the previous one uses ``t - 1`` (``hold="heun"``). Heun agrees with our
integrator for ``n_delay = 0`` only: Heun applied to the shift drift is not a shift.
:class:`FixedIncrements` feeds ``torchsde`` the very increments given to our integrator.
"""
from __future__ import annotations

import math

import torch
import torchsde
from torch import Tensor, nn

from nado.twin.integrate import Packed, diffusion, drift_a, drift_z, heads, input_preactivation


class TwinSDEPlain(nn.Module):
    """``torchsde`` SDE (diagonal noise) equal to a packed twin driven by ``u`` (B, T, n_in),
    written the usual torchsde way: only ``f`` and ``g`` methods, so torchsde calls them
    separately and each evaluates both networks."""

    noise_type = "diagonal"

    def __init__(self, p: Packed, u: Tensor, *, sde_type: str = "ito", hold: str = "left"):
        super().__init__()
        self.p, self.sde_type, self.hold, self._last_t = p, sde_type, hold, None
        self.pre = input_preactivation(p, u)
        self.d = p.n_obs * (p.n_delay + 1)

    def _index(self, t: Tensor) -> int:
        t = float(t)
        k = math.floor(t + 1e-9)
        if self.hold == "heun":
            # Heun evaluates at t0 = k (predictor), then t1 = k + 1 (corrector, still sample k):
            # a call one step after the previous one is a corrector.
            if self._last_t is not None and abs(t - self._last_t - 1.0) < 1e-9:
                k -= 1
            self._last_t = t
        return min(max(k, 0), len(self.pre) - 1)

    def _split(self, y: Tensor):
        return y[:, :self.d], y[:, self.d:]

    def _f_and_g(self, t: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        p, n = self.p, self.p.n_obs
        yy, a = self._split(y)
        f, v = heads(p, yy, self.pre[self._index(t)])
        g = diffusion(v)
        parts = [drift_z(p, f[:, :n], a)]
        if p.n_delay:
            shift = yy[:, :-n] - yy[:, n:]
            parts.append(shift + f[:, n:] if p.learned_delays else shift)
        parts.append(drift_a(p, a))
        zeros = y.new_zeros(y.shape[0], self.d - n)
        return torch.cat(parts, 1), torch.cat([g[:, :n], zeros, g[:, n:]], 1)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self._f_and_g(t, y)[0]

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self._f_and_g(t, y)[1]



class TwinSDE(TwinSDEPlain):
    """As :class:`TwinSDEPlain`, plus ``f_and_g_prod``: one network pass per step (fair
    baseline)."""

    def f_and_g_prod(self, t: Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        f, g = self._f_and_g(t, y)
        return f, g * v


class FixedIncrements(torchsde.BaseBrownian):
    """A Brownian motion whose increment over ``[k, k+1)`` is ``dw_full[k]`` (given up front)."""

    __slots__ = ("_dw",)

    def __init__(self, dw_full: Tensor):
        self._dw = dw_full      # (T, B, D + N_a)

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None:
            raise ValueError("FixedIncrements only answers increments over [ta, tb]")
        k = int(round(float(ta)))
        if abs(float(tb) - float(ta) - 1.0) > 1e-9:
            raise ValueError("FixedIncrements holds unit-step increments only; use dt=1.0")
        return self._dw[k]

    def __repr__(self) -> str:
        return f"FixedIncrements(shape={tuple(self._dw.shape)})"

    @property
    def dtype(self):
        return self._dw.dtype

    @property
    def device(self):
        return self._dw.device

    @property
    def shape(self):
        return self._dw.shape[1:]

    @property
    def levy_area_approximation(self):
        return "none"


def full_increments(p: Packed, dw: Tensor) -> Tensor:
    """Our increments (T, B, N_w) placed on the full state (T, B, D + N_a); zero on delays."""
    n, d = p.n_obs, p.n_obs * (p.n_delay + 1)
    zeros = dw.new_zeros(dw.shape[0], dw.shape[1], d - n)
    return torch.cat([dw[..., :n], zeros, dw[..., n:]], -1)


def sdeint_reference(p: Packed, u: Tensor, y0: Tensor, *, method: str = "euler",
                     dw: Tensor | None = None, fused: bool = True) -> Tensor:
    """Integrate with ``torchsde.sdeint`` (dt = 1 step); returns z (B, T, n_obs) like ``integrate``.

    ``dw`` (T, B, N_w): the increments to use; None = torchsde's default Brownian motion.
    ``fused=False``: the plain f/g formulation (:class:`TwinSDEPlain`).
    """
    if not fused and method != "euler":
        raise ValueError("the plain f/g formulation is only wired for method='euler'")
    steps = u.shape[1]
    sde = (TwinSDE if fused else TwinSDEPlain)(p, u, sde_type="ito" if method == "euler" else "stratonovich",
                  hold="left" if method == "euler" else "heun")
    state0 = torch.cat([y0, y0.new_zeros(y0.shape[0], p.tau_inv.shape[0])], 1)
    ts = torch.arange(steps + 1, dtype=u.dtype)
    bm = None if dw is None else FixedIncrements(full_increments(p, dw))
    ys = torchsde.sdeint(sde, state0, ts, method=method, dt=1.0, bm=bm)
    return ys[1:, :, :p.n_obs].transpose(0, 1)
