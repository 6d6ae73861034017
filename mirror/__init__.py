"""tuf-mirror: a verifying mirror for TUF repositories."""

from mirror.errors import ExitStatus, MirrorError

__version__ = "0.1.0.dev0"

__all__ = ["ExitStatus", "MirrorError", "__version__"]
