"""A sharded first copy: ``plan`` writes a work manifest, N ``copy`` jobs each copy
one shard of it, ``publish`` checks every shard and publishes through the sync
engine. See ``mirror.shard.steps`` for the steps, ``mirror.shard.manifest`` for the
manifest and ``mirror.shard.partition`` for which shard a target belongs to.

Nothing here re-implements the engine: metadata verification, the delegation walk,
the copier's verify-then-write and the publish order are ``mirror.sync`` and
``mirror.copier``'s.
"""

from __future__ import annotations

from mirror.shard.partition import shard_of

__all__ = ["shard_of"]
