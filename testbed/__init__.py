"""meshcast-testbed: a Mininet testbed for a dynamic multicast mesh with predictive prefetching."""

__version__ = "0.1.0"
