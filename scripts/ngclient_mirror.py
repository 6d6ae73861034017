"""The benchmark's baseline: a mirror built the obvious way on python-tuf's ngclient.

``scripts/bench`` runs this beside ``tuf-mirror sync`` on the same upstream, in the
same run, to show what the project is measured against. It is not part of the
mirror (nothing in ``mirror/`` imports it) and uses only ngclient's public API:

1. ``Updater.refresh()`` (root chain, timestamp, snapshot, top-level targets), with
   ngclient's own metadata cache in ``<dest>/.ngclient/`` kept between runs;
2. every delegated role, breadth first from ``targets``: its bytes are fetched once
   with the Updater's fetcher (only when the cached copy is not the version the
   snapshot lists) and put into ngclient's cache, where ``get_targetinfo`` finds
   them, verifies them (signatures by the delegator, version and hashes from the
   snapshot) and keeps them, or fetches them again when they do not verify;
3. every target path every role lists: ``get_targetinfo(path)``, then
   ``find_cached_target`` (length and hashes of the file held) or
   ``download_target`` (which verifies length and hashes before writing);
4. the files go to a layout like tuf-mirror's: ``<dest>/targets/<dirs>/<hash>.<name>``
   for every listed hash with consistent snapshots (else ``<dest>/targets/<path>``),
   and ``<dest>/metadata/`` with versioned roles, roots, and ``timestamp.json`` last.

One thread, one connection pool (urllib3), ngclient's defaults otherwise. The last
line of output is JSON: targets downloaded and already present, roles, and the peak
RSS of this process (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import deque
from pathlib import Path
from urllib.parse import quote

from tuf.api.metadata import Metadata, Snapshot, Targets
from tuf.ngclient import Updater, Urllib3Fetcher


def peak_rss() -> int:
    """VmHWM of this process in bytes (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def target_names(path: str, hashes: dict[str, str], *, consistent: bool) -> list[str]:
    if not consistent:
        return [path]
    directory, sep, basename = path.rpartition("/")
    return sorted({f"{directory}{sep}{value}.{basename}" for value in hashes.values()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="trusted root.json")
    parser.add_argument("--upstream", required=True, help="base URL (metadata/, targets/)")
    parser.add_argument("--dest", type=Path, required=True)
    opts = parser.parse_args()

    dest: Path = opts.dest
    cache = dest / ".ngclient"
    cache.mkdir(parents=True, exist_ok=True)
    base = opts.upstream.rstrip("/")
    fetcher = Urllib3Fetcher()
    updater = Updater(
        metadata_dir=str(cache),
        metadata_base_url=f"{base}/metadata/",
        target_base_url=f"{base}/targets/",
        fetcher=fetcher,
        bootstrap=None if (cache / "root.json").exists() else opts.root.read_bytes(),
    )
    updater.refresh()

    snapshot = Metadata[Snapshot].from_file(str(cache / "snapshot.json")).signed
    top = Metadata[Targets].from_file(str(cache / "targets.json")).signed
    consistent = Metadata.from_file(str(cache / "root.json")).signed.consistent_snapshot
    meta_dir = dest / "metadata"
    meta_dir.mkdir(parents=True, exist_ok=True)
    downloaded = present = roles = 0
    queue: deque[tuple[str, Targets]] = deque([("targets", top)])
    while queue:
        role, signed = queue.popleft()
        roles += 1
        for path in signed.targets:
            info = updater.get_targetinfo(path)
            if info is None:
                continue
            names = target_names(info.path, info.hashes, consistent=consistent)
            first = dest / "targets" / names[0]
            if updater.find_cached_target(info, str(first)) is not None:
                present += 1
            else:
                updater.download_target(info, str(first))
                downloaded += 1
            for other in names[1:]:
                if not (dest / "targets" / other).exists():
                    shutil.copyfile(first, dest / "targets" / other)
        if role != "targets":
            version = snapshot.meta[f"{role}.json"].version
            published = meta_dir / f"{version}.{quote(role, safe='')}.json"
            if not published.exists():
                shutil.copyfile(cache / f"{quote(role, safe='')}.json", published)
        if signed.delegations is None:
            continue
        children = list(signed.delegations.roles or {})
        if signed.delegations.succinct_roles is not None:
            children = list(signed.delegations.succinct_roles.get_roles())
        for child in children:
            meta = snapshot.meta.get(f"{child}.json")
            if meta is None:
                continue
            cached = cache / f"{quote(child, safe='')}.json"
            loaded: Targets | None = None
            if cached.exists():
                loaded = Metadata[Targets].from_bytes(cached.read_bytes()).signed
                if loaded.version != meta.version:
                    loaded = None
            if loaded is None:
                name = f"{meta.version}.{quote(child, safe='')}" if consistent else quote(child)
                data = fetcher.download_bytes(f"{base}/metadata/{name}.json", 50_000_000)
                cached.write_bytes(data)
                loaded = Metadata[Targets].from_bytes(data).signed
            queue.append((child, loaded))

    # The verified top-level metadata, timestamp last.
    version = snapshot.version
    for name, target in (
        (f"{top.version}.targets.json", "targets.json"),
        (f"{version}.snapshot.json", "snapshot.json"),
    ):
        if not (meta_dir / name).exists():
            shutil.copyfile(cache / target, meta_dir / name)
    for root in sorted((cache / "root_history").glob("*.root.json")):
        if not (meta_dir / root.name).exists():
            shutil.copyfile(root, meta_dir / root.name)
    shutil.copyfile(cache / "root.json", meta_dir / "root.json")
    shutil.copyfile(cache / "timestamp.json", meta_dir / "timestamp.json")
    print(
        json.dumps(
            {
                "targets_downloaded": downloaded,
                "targets_present": present,
                "roles": roles,
                "peak_rss_bytes": peak_rss(),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
