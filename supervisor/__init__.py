"""ws-supervisor: an actor-model connection supervisor for WebSocket backends.

This package is kept import-light on purpose: ``actors`` imports the pure core
modules (``supervisor.context``, ``supervisor.config``, ``supervisor.clock``,
``supervisor.errors``, ``supervisor.observer`` and ``supervisor.policies``), so
nothing here may pull in asyncio servers or prometheus.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
