"""The backends bridge ships: rigs found by name through the ``bridge.backends`` entry points.

- ``echo``, ``leaky``: :mod:`bridge.backends.testrigs` (``EchoRig``, ``LeakyRig``), simple rigs
  that honour the whole Rig contract, for tests and benchmarks;
- ``replay``: :mod:`bridge.backends.replay` (``ReplayRig``), a recorded dataset answered as a rig;
- ``nidaqmx.nra``: :mod:`bridge.backends.daq` (``DaqNRARig``), the nanoring rig on an NI DAQ card.

Nothing is imported here: a station loads only the backends it names. Backends depend on the
Rig contract (:mod:`bridge.rig`), never on the transport (server, client).
"""
