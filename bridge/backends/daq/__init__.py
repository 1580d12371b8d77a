"""Real rigs on National Instruments DAQ cards (``nidaqmx``).

- :mod:`bridge.backends.daq.nra`: ``DaqNRARig`` (backend ``nidaqmx.nra``), the nanoring rig.
- :mod:`bridge.backends.daq.waveforms`: coil waveforms (one field rotation per step).
- :mod:`bridge.backends.daq.hardware`: the NI-DAQmx task layer (task factory injection,
  shared start trigger, safe ramps, driver probe).
- :mod:`bridge.backends.daq.fake`: a fake task factory that plays a device back through
  the coil-and-carrier chain, for tests and dry runs without hardware.

Importing this package never needs NI-DAQmx; constructing a rig without an
injected task factory does.
"""
