"""The simulation backend: the same scenarios, run plan and node logic as the emulation,
played on a simulated clock over a flow-level model of the topology's links.

``testbed run|compare|sweep ... --backend sim`` selects it.  :func:`run_sim` plays one
run (:mod:`testbed.sim.run`); :class:`~testbed.sim.network.FlowNet` is the network
(how transfers share links, and what it leaves out); :mod:`testbed.sim.nodes` drives the
core's node logic; :class:`~testbed.sim.kernel.Kernel` is the clock and event queue.
"""

from testbed.sim.run import BACKEND, build_world, run_sim

__all__ = ["BACKEND", "build_world", "run_sim"]
