"""The decisions of the supervision tree, as pure classes with no threads and no I/O.

The actors in :mod:`actors` only carry messages to these classes and act on
their answers, so each rule is unit-tested here on its own:

- :mod:`actors.policies.quota`: admission against a user's quota.
- :mod:`actors.policies.ledger`: who holds which slot (the ledger interface).
- :mod:`actors.policies.thresholds`: ok / warning / critical / emergency.
- :mod:`actors.policies.restart`: restart types and restart intensity.
- :mod:`actors.policies.reaping`: which connections are no longer live.
- :mod:`actors.policies.schedule`: the root's background sweep and empty supervisors.
- :mod:`actors.policies.pool`: when an idle manager may wait for reuse, and how long.

The product's own pure policies live beside the code that uses them:
``supervisor.front.limits``, ``supervisor.front.keepalive`` (its grid),
``supervisor.admin.readiness`` and ``supervisor.cluster.lease``.
"""

__all__: list[str] = []
