"""Keep cloud SDKs out of runs that do not use them.

``securesystemslib.signer`` (imported by python-tuf) imports boto3 for its AWS KMS
signer whenever boto3 is installed, which it is with ``tuf-mirror[s3]``: about a
quarter of a second on every run, a no-op run included. tuf-mirror verifies and
never signs, so the signer is imported here with boto3 and botocore hidden; they
stay importable afterwards, for the S3 backend, which imports them itself.
"""

from __future__ import annotations

import sys

_HIDDEN = ("boto3", "botocore")


def import_signer_without_cloud_sdks() -> None:
    """Import ``securesystemslib.signer`` with boto3/botocore hidden (once)."""
    if "securesystemslib.signer" in sys.modules:
        return
    hidden = [name for name in _HIDDEN if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import` raise ImportError
    try:
        import securesystemslib.signer  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
