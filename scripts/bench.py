"""Driver of scripts/bench: prints wall time, files/s, MB/s, requests and bytes
against the minimum, and peak RSS of each ``tuf-mirror sync`` run; then a small
sync under ``--bwlimit`` (default 2M) with the rate achieved against the configured
one (``--bwlimit off`` skips it). After each run, the ledger's cost: entries
appended and the wall time spent inside its hooks (an upper bound: concurrent
downloads run meanwhile).

``--s3`` syncs into a bucket on a ``moto_server`` process on 127.0.0.1 instead of a
directory and prints objects/s (targets and metadata uploaded) and MB/s; moto's own
CPU per request (milliseconds) dominates those figures, so they are a floor, not
what S3 itself sustains. ``--s3-endpoint URL`` uses another S3-compatible server
(credentials from the environment) and ``--s3-bucket`` names its bucket."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mirror.testing.repo import Repository, generate_bins_repository
from mirror.testing.server import serve_directory

TOOL = str(Path(sys.executable).with_name("tuf-mirror"))

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log {tmp}/access.log;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  sendfile on; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


@contextlib.contextmanager
def serve(root: Path) -> Iterator[tuple[str, str]]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        with serve_directory(root) as server:
            yield server.url, "python test server (install nginx for realistic figures)"
        return
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)])
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", "nginx"
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: list[str]) -> tuple[dict[str, object], float, int]:
    """Run tuf-mirror; return (report, wall seconds, peak RSS bytes).

    The peak RSS is the largest of the sync process and its worker processes as the
    run report gives them (VmHWM, measured since exec: wait4's figure would carry
    over this generator process's memory through fork)."""
    start = time.perf_counter()
    proc = subprocess.Popen([TOOL, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(err.decode())
        sys.exit(f"tuf-mirror failed with exit status {proc.returncode}")
    report = json.loads(out)
    return report, wall, max(report["peak_rss_bytes"], report["worker_peak_rss_bytes"])


def figure(
    name: str,
    report: dict[str, object],
    wall: float,
    rss: int,
    *,
    files: int,
    size: int,
    min_requests: int,
    s3: bool = False,
) -> None:
    fetched = int(report["targets_fetched"])  # type: ignore[call-overload]
    mb = fetched * size / 1e6
    if s3:  # every object uploaded: targets and metadata
        count = fetched + int(report["roles_published"])  # type: ignore[call-overload]
        unit = "objects/s"
    else:
        count, unit = fetched, "files/s"
    print(
        f"{name:<12} {wall:7.2f} s  {count / wall if wall else 0:8.0f} {unit}  "
        f"{mb / wall if wall else 0:7.1f} MB/s  "
        f"requests {report['requests']} (min {min_requests})  bytes {report['bytes_received']}  "
        f"peak RSS {rss / 2**20:.0f} MiB"
    )
    ledger = report.get("ledger")
    if isinstance(ledger, dict) and ledger:
        seconds = float(ledger.get("seconds", 0.0))
        print(
            f"{'':<12} ledger: +{ledger.get('entries_appended', 0)} entries "
            f"(now {ledger.get('checkpoint_size')}), {seconds:.2f} s wall in its hooks "
            f"({100 * seconds / wall if wall else 0:.1f} % of the run)"
        )
    del files


@contextlib.contextmanager
def s3_destination(endpoint: str | None, bucket: str) -> Iterator[tuple[str, list[str]]]:
    """A fresh bucket on ``endpoint``, or on a moto_server started here; yields the
    destination URL and the tuf-mirror flags that go with it."""
    from _moto import moto_endpoint

    from mirror.storage.s3 import make_client

    with contextlib.ExitStack() as stack:
        if endpoint is None:
            endpoint = stack.enter_context(moto_endpoint())
            print(f"destination: moto_server at {endpoint}")
        else:
            print(f"destination: S3-compatible server at {endpoint}")
        client = make_client(endpoint_url=endpoint, addressing_style="path")
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        flags = ["--s3-endpoint-url", endpoint, "--s3-addressing-style", "path"]
        yield f"s3://{bucket}/bench", flags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bins", type=int, help="default 1024 (--s3: 64)")
    parser.add_argument("--targets", type=int, help="default 50000 (--s3: 5000)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--add", type=int, default=500, help="targets added for the incremental run"
    )
    parser.add_argument("--workdir", type=Path, default=Path("build/bench"))
    parser.add_argument(
        "--s3", action="store_true", help="sync into a bucket on moto_server (127.0.0.1)"
    )
    parser.add_argument("--s3-endpoint", help="sync into this S3-compatible server instead")
    parser.add_argument("--s3-bucket", default="tuf-mirror-bench")
    parser.add_argument(
        "--bwlimit",
        default="2M",
        help="rate of the extra capped sync (bytes/s, K/M/G = 1024^n); 'off' skips it",
    )
    parser.add_argument(
        "--capped-mib", type=int, default=6, help="MiB of 1 MiB targets for the capped sync"
    )
    parser.add_argument("sync_args", nargs="*", help="extra arguments for tuf-mirror sync")
    opts = parser.parse_args()
    s3 = opts.s3 or opts.s3_endpoint is not None
    if opts.bins is None:
        opts.bins = 64 if s3 else 1024
    if opts.targets is None:
        opts.targets = 5_000 if s3 else 50_000

    work = opts.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    upstream, dest, root = work / "upstream", work / "dest", work / "root.json"
    t0 = time.perf_counter()
    repo: Repository = generate_bins_repository(
        upstream, bins=opts.bins, targets=opts.targets, size=opts.size
    )
    root.write_bytes(repo.root_bytes(1))
    print(
        f"generated {opts.bins} bins x {opts.targets} targets x {opts.size} B "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    with contextlib.ExitStack() as stack:
        dest_flags: list[str] = ["--dest", str(dest)]
        if s3:
            url, flags = stack.enter_context(s3_destination(opts.s3_endpoint, opts.s3_bucket))
            dest_flags = ["--dest", url, *flags]
        upstream_url, server_kind = stack.enter_context(serve(upstream))
        print(f"upstream: {server_kind} at {upstream_url}")
        common = [
            "sync",
            "--root",
            str(root),
            "--upstream",
            upstream_url,
            *dest_flags,
            *opts.sync_args,
        ]
        report, wall, rss = run(common)
        figure(
            "first sync",
            report,
            wall,
            rss,
            files=opts.targets,
            size=opts.size,
            min_requests=opts.targets + opts.bins + 4,
            s3=s3,
        )

        import random

        rng = random.Random(1)
        bins_touched = set()
        for index in range(opts.add):
            path = f"files/new/file-{index:07d}.bin"
            repo.add_target(path, rng.randbytes(opts.size))
            bins_touched.add(repo.role_for_target(path))
        repo.publish(upstream)
        report, wall, rss = run(common)
        figure(
            "incremental",
            report,
            wall,
            rss,
            files=opts.add,
            size=opts.size,
            min_requests=opts.add + len(bins_touched) + 4,
            s3=s3,
        )

        report, wall, rss = run(common)
        figure("no-op", report, wall, rss, files=0, size=opts.size, min_requests=2, s3=s3)

    if opts.bwlimit.strip().lower() != "off":
        capped_sync(work, opts.bwlimit, opts.capped_mib)


def capped_sync(work: Path, bwlimit: str, mib: int) -> None:
    """A first sync of a small repository of 1 MiB targets under ``--bwlimit``: the
    rate achieved (bytes received over the run's own duration, from its report)
    against the configured one, with the time the same sync takes without a cap
    (into another directory) for the fixed cost of a run. Always into a local
    directory: it measures the download side."""
    from mirror.config import parse_size

    rate = parse_size(bwlimit)
    upstream, root = work / "capped-upstream", work / "capped-root.json"
    repo = generate_bins_repository(upstream, bins=4, targets=mib, size=1 << 20, seed=2)
    root.write_bytes(repo.root_bytes(1))
    with serve(upstream) as (url, _):
        flags = ["--root", str(root), "--upstream", url]
        free, _, _ = run(["sync", *flags, "--dest", str(work / "uncapped-dest")])
        report, wall, _ = run(
            ["sync", *flags, "--dest", str(work / "capped-dest"), "--bwlimit", bwlimit]
        )
    received = int(report["bytes_received"])
    seconds = float(report["seconds"])
    achieved = received / seconds if seconds else 0.0
    print(
        f"{'capped':<12} {wall:7.2f} s  --bwlimit {bwlimit} = {rate / 2**20:.2f} MiB/s: "
        f"{received / 2**20:.2f} MiB in {seconds:.2f} s, achieved {achieved / 2**20:.2f} MiB/s "
        f"({100 * achieved / rate:.1f} % of the cap; {received / rate:.2f} s at exactly the cap, "
        f"{float(free['seconds']):.2f} s without a cap)"
    )


if __name__ == "__main__":
    main()
