"""A soft-signal ophyd-async device for tests: a stage whose sensor follows its field.

``LeakyStage`` has a settable ``field`` (Oe, control limits 0..40) and a ``sensor`` with a ``value``
(V). A task (:meth:`LeakyStage.follow`, started by :func:`make_stage`) plays the
device: at each new field value ``u`` it advances a leaky integrator
``x <- (1 - leak) x + leak tanh((u - centre) / width) + noise n`` and publishes
``x`` plus readout noise on ``sensor.value``. :func:`reset_stage` puts the state
back to 0. Served through the ``ophyd`` backend (tests/test_ophyd_rig.py)::

    [rigs.stage]
    backend = "ophyd"
    device = "ophyd_leaky:make_stage"
    input = "field"
    outputs = ["sensor.value"]
    reset = "ophyd_leaky:reset_stage"
    settle_s = 0.001
"""
from __future__ import annotations

import asyncio
import math

import numpy as np
from ophyd_async.core import (SignalRW, SoftSignalBackend, StandardReadable, observe_value,
                              soft_signal_r_and_setter)


class Sensor(StandardReadable):
    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.value, self._publish = soft_signal_r_and_setter(float, 0.0, units="V")
        super().__init__(name=name)


class LeakyStage(StandardReadable):
    """Field in, sensor out; see the module docstring. Noise from ``seed`` (a device's own)."""

    def __init__(self, name: str = "", *, leak: float = 0.35, centre: float = 20.0, width: float = 6.0,
                 noise: float = 0.01, readout_noise: float = 0.005, seed: int = 0,
                 field_range: tuple[float, float] | None = (0.0, 40.0)) -> None:
        backend = SoftSignalBackend(float, 0.0, units="Oe")
        if field_range is not None:   # the field's control limits, in its DataKey (as EPICS states them)
            backend.metadata["limits"] = {"control": {"low": field_range[0], "high": field_range[1]}}
        self.field = SignalRW(backend)
        self.sensor = Sensor()
        super().__init__(name=name)
        self.leak, self.centre, self.width = leak, centre, width
        self.noise, self.readout_noise = noise, readout_noise
        self.rng = np.random.default_rng(seed)
        self.state = 0.0
        self.steps = 0
        self.task: asyncio.Task | None = None

    def publish(self) -> None:
        self.sensor._publish(self.state + self.readout_noise * float(self.rng.standard_normal()))

    async def follow(self) -> None:
        """The device: one leaky step per new field value (observe_value yields each update)."""
        first = True
        async for u in observe_value(self.field):
            if first:   # the value the field held when the task started, not a new step
                first = False
                continue
            drive = math.tanh((float(u) - self.centre) / self.width)
            self.state = ((1 - self.leak) * self.state + self.leak * drive
                          + self.noise * float(self.rng.standard_normal()))
            self.steps += 1
            self.publish()


async def make_stage(**kw) -> LeakyStage:
    """Factory for the ``ophyd`` backend: build the stage and start its task (on the rig's loop)."""
    stage = LeakyStage(**kw)
    stage.task = asyncio.get_running_loop().create_task(stage.follow())
    await asyncio.sleep(0)   # let the task subscribe before anything is set
    return stage


async def reset_stage(stage: LeakyStage) -> None:
    """The reset protocol: the state back to 0, published."""
    stage.state = 0.0
    stage.publish()


STATION = """
[rigs.stage]
backend = "ophyd"
device = "ophyd_leaky:make_stage"
input = "field"
outputs = ["sensor.value"]
reset = "ophyd_leaky:reset_stage"
settle_s = 0.001
limits = { max_field_oe = 40.0, max_coil_v = 5.0, max_slew_oe_per_s = 1.0e6 }
"""


def build(name: str = "stage"):
    """The rig of :data:`STATION` as the station builds it (guarded by its limits), named ``name``."""
    import tomllib

    from bridge.station import build_rig, parse_station
    return build_rig(parse_station(tomllib.loads(STATION.replace("[rigs.stage]", f"[rigs.{name}]"))), name)
