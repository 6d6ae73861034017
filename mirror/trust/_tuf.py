"""The python-tuf and securesystemslib names the trust core uses, in one place.

``tuf.api.metadata`` and ``securesystemslib.signer`` re-export their classes without
``__all__``, which ``mypy --strict`` (no implicit re-export) reports at every import
site; importing them here once keeps that to a single, explained suppression. These
are the libraries' public import paths.
"""

from securesystemslib.signer import (  # type: ignore[attr-defined]  # public, no __all__
    Key,
    Signature,
)
from tuf.api.metadata import (  # type: ignore[attr-defined]  # public, no __all__
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Role,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

__all__ = [
    "DelegatedRole",
    "Delegations",
    "Key",
    "MetaFile",
    "Metadata",
    "Role",
    "Root",
    "Signature",
    "Snapshot",
    "SuccinctRoles",
    "TargetFile",
    "Targets",
    "Timestamp",
]
