"""The nodes' decisions as pure state machines (sans I/O).

Each node's logic is driven by ``handle(event, now)`` and answers with a list of effects
(:mod:`testbed.core.node.effects`); it never awaits, sleeps, reads a clock, opens a socket
or signs.  The daemons in :mod:`testbed.nodes` turn HTTP, UDP and multicast into events and
effects into I/O (signing and verifying at that edge); a simulation drives the same logic
from its own clock.
"""
