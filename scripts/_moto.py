"""A ``moto_server`` process on 127.0.0.1 for ./scripts/demo --s3 and
./scripts/bench --s3: an S3-compatible endpoint with dummy credentials, its buckets
in memory. A separate process, so that moto's own CPU does not share the GIL with
the driver's upstream server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """Start ``moto_server`` on a free port of 127.0.0.1, point boto3 at it through
    the environment (dummy credentials, ``AWS_ENDPOINT_URL``: every ``tuf-mirror``
    subprocess inherits them) and yield its URL; stop it on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"moto_server did not start (is moto[server] installed in {exe.parent}?)")
            time.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(
            AWS_ACCESS_KEY_ID="moto",
            AWS_SECRET_ACCESS_KEY="moto",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
        )
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()
