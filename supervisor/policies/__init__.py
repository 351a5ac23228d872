"""The decisions of the supervision tree, as pure classes with no threads and no I/O.

The actors in :mod:`actors` only carry messages to these classes and act on
their answers, so each rule is unit-tested here on its own:

- :mod:`supervisor.policies.quota`: admission against a user's quota.
- :mod:`supervisor.policies.ledger`: who holds which slot (the ledger interface).
- :mod:`supervisor.policies.thresholds`: ok / warning / critical / emergency.
- :mod:`supervisor.policies.restart`: restart types and restart intensity.
- :mod:`supervisor.policies.reaping`: which connections are no longer live.
- :mod:`supervisor.policies.schedule`: the root's background sweep and empty supervisors.
- :mod:`supervisor.policies.pool`: when an idle manager may wait for reuse, and how long.
- :mod:`supervisor.policies.readiness`: ready or not (rollback triggers, draining).
- :mod:`supervisor.policies.keepalive`: when to ping, and when a peer is dead, on a grid.
"""

__all__: list[str] = []
