"""Driver of ./scripts/demo: a demo upstream on 127.0.0.1, two syncs, a verify.

Runs the real ``tuf-mirror`` command (a subprocess) against a repository generated
with ``tuf_mirror_testing.repo`` and served by ``tuf_mirror_testing.server``. With ``--s3``
the mirror is an S3 bucket on a ``moto_server`` process started on 127.0.0.1 (dummy
credentials; the bucket lives in memory and is gone when the demo ends) instead of
``./demo-mirror``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tuf_mirror_testing.repo import Repository
from tuf_mirror_testing.server import serve_directory

HERE = Path.cwd()
UPSTREAM = HERE / "demo-upstream"
MIRROR = HERE / "demo-mirror"
ROOT = HERE / "demo-upstream-root.json"
TOOL = str(Path(sys.executable).with_name("tuf-mirror"))
BUCKET = "tuf-mirror-demo"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def tuf_mirror(*args: str) -> dict[str, object]:
    cmd = [TOOL, *args]
    print("$ tuf-mirror " + " ".join(args[:1]) + " ...", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.exit(f"tuf-mirror {args[0]} failed with exit status {done.returncode}")
    report: dict[str, object] = json.loads(done.stdout) if done.stdout.strip() else {}
    return report


@contextlib.contextmanager
def moto_bucket() -> Iterator[str]:
    """A moto_server on 127.0.0.1 with an empty bucket; yields the destination URL.
    The environment gets dummy credentials and ``AWS_ENDPOINT_URL`` (read by boto3 in
    every ``tuf-mirror`` subprocess), as a user would set up an S3-compatible
    endpoint."""
    from _moto import moto_endpoint

    from mirror.storage.s3 import make_client

    with moto_endpoint() as endpoint:
        make_client(addressing_style="path").create_bucket(Bucket=BUCKET)
        print(f"moto_server at {endpoint}, bucket {BUCKET} (AWS_ENDPOINT_URL={endpoint})")
        yield f"s3://{BUCKET}/mirror"


def show_bucket(dest: str) -> None:
    """What a CDN in front of the bucket would serve: object count and headers."""
    from mirror.storage.s3 import make_client

    client = make_client(addressing_style="path")
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="mirror/"):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    print(f"{dest}: {len(keys)} objects")
    target = next(k for k in keys if k.startswith("mirror/targets/"))
    for key in ("mirror/metadata/timestamp.json", "mirror/metadata/2.root.json", target):
        head = client.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        print(
            f"  {key}\n    Content-Type: {head['ContentType']}\n"
            f"    Cache-Control: {head.get('CacheControl')}\n"
            f"    x-amz-checksum-sha256: {head.get('ChecksumSHA256')}"
        )


def demo(dest: str, s3_flags: list[str]) -> None:
    say("generating a demo upstream: 16 hash bins, 300 targets, ed25519 keys")
    repo = Repository()
    repo.add_hash_bins(16)
    for index in range(300):
        repo.add_target(f"packages/pkg-{index:03d}/pkg-{index:03d}.tar.gz", b"%d" % index * 512)
    repo.publish(UPSTREAM)
    ROOT.write_bytes(repo.root_bytes(1))

    with serve_directory(UPSTREAM) as server:
        print(f"upstream served at {server.url}")
        common = ["--root", str(ROOT), "--upstream", server.url, "--dest", dest, "--json"]
        common += s3_flags

        say(f"first sync into {dest}")
        first = tuf_mirror("sync", *common)
        say("upstream changes: 12 new targets and a new root version")
        for index in range(300, 312):
            repo.add_target(f"packages/pkg-{index:03d}/pkg-{index:03d}.tar.gz", b"%d" % index * 512)
        repo.rotate_keys("timestamp")
        repo.publish(UPSTREAM)

        say("plan: what would the next sync copy?")
        tuf_mirror("plan", *common)
        say("incremental sync: only the change is transferred")
        second = tuf_mirror("sync", *common)
        say("a run with nothing new")
        third = tuf_mirror("sync", *common)

    say("verify the published mirror from the pinned root")
    tuf_mirror("verify", "--root", str(ROOT), "--dest", dest, "--json")
    if s3_flags:
        say("the bucket, as a CDN in front of it would serve it")
        show_bucket(dest)

    where = (
        f"the mirror is in {MIRROR}; serve it with any static web server."
        if not s3_flags
        else "the bucket lived in moto_server's memory; point --dest at a real bucket next."
    )
    print(
        f"\nfirst sync: {first['targets_fetched']} targets, {first['requests']} requests, "
        f"{first['bytes_received']} bytes\n"
        f"incremental: {second['targets_fetched']} targets, {second['requests']} requests, "
        f"{second['bytes_received']} bytes (root v{second['versions_after']['root']})\n"  # type: ignore[index]
        f"nothing new: {third['requests']} requests, {third['bytes_received']} bytes\n"
        f"{where}"
    )
    if second["targets_fetched"] != 12:
        sys.exit("demo: the incremental sync did not transfer exactly the change")


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument(
        "--s3",
        action="store_true",
        help="mirror into an S3 bucket on a moto_server started on 127.0.0.1",
    )
    opts = parser.parse_args()
    for path in (UPSTREAM, MIRROR):
        shutil.rmtree(path, ignore_errors=True)
    if not opts.s3:
        demo(str(MIRROR), [])
        return
    with moto_bucket() as dest:
        demo(dest, ["--s3-addressing-style", "path"])


if __name__ == "__main__":
    main()
