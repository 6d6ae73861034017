"""tuf-mirror: a verifying mirror for TUF repositories."""

from mirror._imports import import_signer_without_cloud_sdks

import_signer_without_cloud_sdks()

from mirror.errors import ExitStatus, MirrorError  # noqa: E402 - after the import guard

__version__ = "0.1.0.dev0"

__all__ = ["ExitStatus", "MirrorError", "__version__"]
