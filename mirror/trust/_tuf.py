"""The python-tuf and securesystemslib names the trust core uses, in one place.

``tuf.api.metadata`` and ``securesystemslib.signer`` re-export their classes without
``__all__``, which ``mypy --strict`` (no implicit re-export) reports at every import
site; importing them here once keeps that to a single, explained suppression. These
are the libraries' public import paths.

The first import of ``securesystemslib.signer`` goes through the guard that keeps
cloud SDKs out (``mirror._imports``): every python-tuf import of the package comes
after this module's.
"""

from mirror._imports import import_signer_without_cloud_sdks

import_signer_without_cloud_sdks()

from securesystemslib.signer import (  # type: ignore[attr-defined]  # noqa: E402 - after the guard; public, no __all__
    KEY_FOR_TYPE_AND_SCHEME,
    Key,
    Signature,
    SigstoreKey,
)
from tuf.api.metadata import (  # type: ignore[attr-defined]  # noqa: E402 - after the guard; public, no __all__
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

# tuf-on-ci repositories may list ``sigstore-oidc`` (Fulcio identity) keys, which
# securesystemslib does not register by default: without this, metadata that merely
# lists one would not parse at all. Registered, such keys parse; their signatures
# verify only where the ``sigstore`` library is installed, and count as invalid
# otherwise, so a role whose threshold needs them fails closed.
KEY_FOR_TYPE_AND_SCHEME.setdefault(("sigstore-oidc", "Fulcio"), SigstoreKey)

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
