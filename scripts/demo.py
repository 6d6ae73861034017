"""Driver of ./scripts/demo: a demo upstream on 127.0.0.1, two syncs, a verify.

Runs the real ``tuf-mirror`` command (a subprocess) against a repository generated
with ``mirror.testing.repo`` and served by ``mirror.testing.server``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from mirror.testing.repo import Repository
from mirror.testing.server import serve_directory

HERE = Path.cwd()
UPSTREAM = HERE / "demo-upstream"
MIRROR = HERE / "demo-mirror"
ROOT = HERE / "demo-upstream-root.json"
TOOL = str(Path(sys.executable).with_name("tuf-mirror"))


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


def main() -> None:
    for path in (UPSTREAM, MIRROR):
        shutil.rmtree(path, ignore_errors=True)
    say("generating a demo upstream: 16 hash bins, 300 targets, ed25519 keys")
    repo = Repository()
    repo.add_hash_bins(16)
    for index in range(300):
        repo.add_target(f"packages/pkg-{index:03d}/pkg-{index:03d}.tar.gz", b"%d" % index * 512)
    repo.publish(UPSTREAM)
    ROOT.write_bytes(repo.root_bytes(1))

    with serve_directory(UPSTREAM) as server:
        print(f"upstream served at {server.url}")
        common = ["--root", str(ROOT), "--upstream", server.url, "--dest", str(MIRROR), "--json"]

        say("first sync into ./demo-mirror")
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
    tuf_mirror("verify", "--root", str(ROOT), "--dest", str(MIRROR), "--json")

    print(
        f"\nfirst sync: {first['targets_fetched']} targets, {first['requests']} requests, "
        f"{first['bytes_received']} bytes\n"
        f"incremental: {second['targets_fetched']} targets, {second['requests']} requests, "
        f"{second['bytes_received']} bytes (root v{second['versions_after']['root']})\n"  # type: ignore[index]
        f"nothing new: {third['requests']} requests, {third['bytes_received']} bytes\n"
        f"the mirror is in {MIRROR}; serve it with any static web server."
    )
    if second["targets_fetched"] != 12:
        sys.exit("demo: the incremental sync did not transfer exactly the change")


if __name__ == "__main__":
    main()
