"""The pure TUF verification core of tuf-mirror.

Bytes in, verified objects (with the exact bytes) out, or a
``mirror.errors.VerificationError``. No I/O and no clock reads: the caller fetches,
stores and passes the reference time. Built on python-tuf's public
``tuf.api.metadata``; the client workflow itself is implemented here.

* ``TrustedSet`` — the workflow state machine (root chain, timestamp, snapshot,
  targets, delegated targets).
* ``TargetSearch`` — one target lookup through delegations (client mode).
* ``DelegationWalk`` — every reachable delegated role, with target authority (mirror).
* ``names`` — safe metadata and target file names; ``targets`` — length/hash checks.
"""

from mirror.trust._tuf import MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from mirror.trust._verify import parse as parse_metadata
from mirror.trust.delegations import (
    Authority,
    DelegationMatcher,
    DelegationWalk,
    RoleGraph,
    RoleStep,
    TargetMatch,
    TargetSearch,
    WalkStep,
    authority,
    path_hash,
    path_matches_pattern,
    role_matches_path,
    search_order,
)
from mirror.trust.names import (
    encode_role_name,
    metadata_filename,
    target_filenames,
    validate_role_name,
    validate_target_path,
)
from mirror.trust.targets import (
    HASH_ALGORITHMS,
    check_length_and_hashes,
    check_meta,
    check_target,
    compute_digests,
    hash_algorithms_for,
    new_hasher,
)
from mirror.trust.trusted_set import EqualVersionError, TrustedSet
from mirror.trust.verified import Limits, Verified

__all__ = [
    "HASH_ALGORITHMS",
    "Authority",
    "DelegationMatcher",
    "DelegationWalk",
    "EqualVersionError",
    "Limits",
    "MetaFile",
    "RoleGraph",
    "RoleStep",
    "Root",
    "Snapshot",
    "TargetFile",
    "TargetMatch",
    "TargetSearch",
    "Targets",
    "Timestamp",
    "TrustedSet",
    "Verified",
    "WalkStep",
    "authority",
    "check_length_and_hashes",
    "check_meta",
    "check_target",
    "compute_digests",
    "encode_role_name",
    "hash_algorithms_for",
    "metadata_filename",
    "new_hasher",
    "parse_metadata",
    "path_hash",
    "path_matches_pattern",
    "role_matches_path",
    "search_order",
    "target_filenames",
    "validate_role_name",
    "validate_target_path",
]
