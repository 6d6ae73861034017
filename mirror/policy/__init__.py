"""Curated trust (``--policy``): publish a target of the primary repository only
when the repositories a policy names agree on it (a superset of TUF's TAP 4).

``model`` holds the pure policy and consensus, ``source`` reads policy files,
``secondary`` refreshes the other repositories and ``gate`` joins them to a sync run.
"""

from __future__ import annotations

from mirror.policy.gate import PolicyGate, open_gate
from mirror.policy.model import (
    Decision,
    Listing,
    PolicyMapping,
    PolicyRepository,
    TrustPolicy,
    Verdict,
    decide,
    parse_map_json,
    parse_policy,
)
from mirror.policy.source import load_policy

__all__ = [
    "Decision",
    "Listing",
    "PolicyGate",
    "PolicyMapping",
    "PolicyRepository",
    "TrustPolicy",
    "Verdict",
    "decide",
    "load_policy",
    "open_gate",
    "parse_map_json",
    "parse_policy",
]
