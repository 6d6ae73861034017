"""Driver of scripts/bench: first, incremental and no-op sync of a generated
repository served by nginx on 127.0.0.1, by ``tuf-mirror sync`` and, in the same
run against the same nginx, by the baseline it is measured against: a mirror built
the obvious way on python-tuf's ngclient (``scripts/ngclient_mirror.py``).

For each run and both tools: wall time, CPU seconds (user + system of the process
and every child it waited for: tuf-mirror's worker processes included, from the
kernel's resource usage) and CPU milliseconds per file written, peak RSS, and the
ratios. CPU per file is the figure to compare on a shared or noisy machine: wall
times there depend on the neighbours. Also, for tuf-mirror: files/s, MB/s,
requests and bytes against the minimum. Then a small sync under ``--bwlimit``
(default 2M) with the rate achieved against the configured one (``--bwlimit off``
skips it). ``--profile`` writes a cProfile of every tuf-mirror run to the work
directory (``first.prof``, ``incremental.prof``, ``noop.prof``). After each
tuf-mirror run, the ledger's cost: entries appended and the wall time spent inside
its hooks (an upper bound: concurrent downloads run meanwhile).

``--s3`` syncs into a bucket on a ``moto_server`` process on 127.0.0.1 instead of a
directory and prints objects/s (targets and metadata uploaded) and MB/s; moto's own
CPU per request (milliseconds) dominates those figures, so they are a floor, not
what S3 itself sustains (no baseline then). ``--s3-endpoint URL`` uses another
S3-compatible server (credentials from the environment) and ``--s3-bucket`` names
its bucket. ``--no-baseline`` leaves the ngclient mirror out.

Without nginx (Debian: ``apt-get install nginx-light``) it refuses to run, unless
``--python-server`` accepts the project's test server, whose own CPU cost makes the
figures of both tools slower and closer together."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuf_mirror_testing.repo import Repository, generate_bins_repository
from tuf_mirror_testing.server import serve_directory

TOOL = str(Path(sys.executable).with_name("tuf-mirror"))
BASELINE = str(Path(__file__).with_name("ngclient_mirror.py"))

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


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


@contextlib.contextmanager
def serve(root: Path, *, python_server: bool = False) -> Iterator[tuple[str, str]]:
    nginx = find_nginx()
    if nginx is None:
        if not python_server:
            sys.exit(
                "scripts/bench needs nginx (Debian: apt-get install nginx-light); "
                "--python-server uses the project's test server instead"
            )
        with serve_directory(root) as server:
            yield server.url, "python test server (install nginx for realistic figures)"
        return
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


@dataclass(frozen=True, slots=True)
class Measured:
    """One run of one tool: its JSON output, wall seconds, CPU seconds (user +
    system, children included) and peak RSS in bytes."""

    output: dict[str, object]
    wall: float
    cpu: float
    rss: int


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], *, name: str) -> Measured:
    """Run ``argv`` to completion; its CPU time is what the kernel charged to the
    children this process waited for meanwhile (the run, and its own children).

    Every run starts with the page cache written back (``sync``): otherwise a run
    would pay for the writeback of what the run before it wrote (the other tool's
    50,000 files, the generator's republished repository), through the kernel's
    flusher threads taking the CPUs and, for tuf-mirror, through its own
    ``syncfs`` before publishing, and the order of the runs would decide who pays."""
    os.sync()
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode())
        sys.exit(f"{name} failed with exit status {proc.returncode}")
    try:
        output = json.loads(proc.stdout)
    except ValueError:  # the baseline: its last line
        output = json.loads(proc.stdout.splitlines()[-1])
    return Measured(output, wall, cpu, 0)


def run_mirror(args: list[str], *, profile: Path | None = None) -> Measured:
    """Run tuf-mirror. The peak RSS is the largest of the sync process and its
    worker processes as the run report gives them (VmHWM, measured since exec:
    the kernel's figure would carry over this generator process's memory through
    fork)."""
    prefix = (
        [TOOL] if profile is None else [sys.executable, "-m", "cProfile", "-o", str(profile), TOOL]
    )
    got = measure([*prefix, *args, "--json"], name="tuf-mirror")
    rss = max(int(got.output["peak_rss_bytes"]), int(got.output["worker_peak_rss_bytes"]))  # type: ignore[call-overload]
    return Measured(got.output, got.wall, got.cpu, rss)


def run_baseline(root: Path, upstream: str, dest: Path) -> Measured:
    """Run the ngclient baseline (one process, one thread)."""
    argv = [
        sys.executable,
        BASELINE,
        "--root",
        str(root),
        "--upstream",
        upstream,
        "--dest",
        str(dest),
    ]
    got = measure(argv, name="ngclient baseline")
    return Measured(got.output, got.wall, got.cpu, int(got.output["peak_rss_bytes"]))  # type: ignore[call-overload]


def figure(
    name: str,
    got: Measured,
    *,
    size: int,
    min_requests: int,
    s3: bool = False,
) -> None:
    report = got.output
    wall = got.wall
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
        f"CPU {got.cpu:.2f} s  peak RSS {got.rss / 2**20:.0f} MiB",
        flush=True,
    )
    ledger = report.get("ledger")
    if isinstance(ledger, dict) and ledger:
        seconds = float(ledger.get("seconds", 0.0))
        print(
            f"{'':<12} ledger: +{ledger.get('entries_appended', 0)} entries "
            f"(now {ledger.get('checkpoint_size')}), {seconds:.2f} s wall in its hooks "
            f"({100 * seconds / wall if wall else 0:.1f} % of the run)"
        )


def _per_file(cpu: float, files: int) -> str:
    return f"{1000 * cpu / files:8.3f}" if files else f"{'-':>8}"


def _ratio(ours: float, theirs: float) -> str:
    return f"{theirs / ours:6.2f}x" if ours else f"{'-':>7}"


def table(rows: list[tuple[str, Measured, Measured]]) -> None:
    """tuf-mirror against the baseline, run by run: wall time, the speed-up
    (baseline time / ours), CPU seconds, CPU ms per file written, and peak RSS."""
    print()
    print(
        f"{'':<12} {'files':>6} | {'tuf-mirror':^36} | {'ngclient baseline':^36} | "
        f"{'wall':>7} {'CPU':>7}"
    )
    print(
        f"{'run':<12} {'':>6} | {'wall s':>8} {'CPU s':>8} {'ms/file':>8} {'RSS MiB':>8} | "
        f"{'wall s':>8} {'CPU s':>8} {'ms/file':>8} {'RSS MiB':>8} | {'ratio':>7} {'ratio':>7}"
    )
    for name, ours, theirs in rows:
        files = int(ours.output["targets_fetched"])  # type: ignore[call-overload]
        their_files = int(theirs.output["targets_downloaded"])  # type: ignore[call-overload]
        if files != their_files:
            print(f"  note: tuf-mirror wrote {files} targets, the baseline {their_files}")
        print(
            f"{name:<12} {files:>6} | {ours.wall:8.2f} {ours.cpu:8.2f} "
            f"{_per_file(ours.cpu, files)} "
            f"{ours.rss / 2**20:8.0f} | {theirs.wall:8.2f} {theirs.cpu:8.2f} "
            f"{_per_file(theirs.cpu, their_files)} {theirs.rss / 2**20:8.0f} | "
            f"{_ratio(ours.wall, theirs.wall)} {_ratio(ours.cpu, theirs.cpu)}"
        )
    print("ratio: baseline / tuf-mirror (above 1: tuf-mirror is faster or cheaper)")


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


def byte_compile() -> None:
    """Byte-compile the ``mirror`` package, as installing a wheel does: from a source
    checkout (an editable install) under ``PYTHONDONTWRITEBYTECODE``, every run and
    every worker process would compile it again (0.17 s of CPU here), which an
    installed tool never does. The baseline's libraries are installed, compiled."""
    import mirror

    package = Path(mirror.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


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
    parser.add_argument(
        "--no-baseline", action="store_true", help="leave out the ngclient baseline"
    )
    parser.add_argument(
        "--python-server", action="store_true", help="without nginx: the project's test server"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each tuf-mirror run into the workdir"
    )
    parser.add_argument("sync_args", nargs="*", help="extra arguments for tuf-mirror sync")
    opts = parser.parse_args()
    s3 = opts.s3 or opts.s3_endpoint is not None
    baseline = not (opts.no_baseline or s3)
    if opts.bins is None:
        opts.bins = 64 if s3 else 1024
    if opts.targets is None:
        opts.targets = 5_000 if s3 else 50_000

    work = opts.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    byte_compile()
    upstream, dest, root = work / "upstream", work / "dest", work / "root.json"
    baseline_dest = work / "baseline-dest"
    t0 = time.perf_counter()
    repo: Repository = generate_bins_repository(
        upstream, bins=opts.bins, targets=opts.targets, size=opts.size
    )
    root.write_bytes(repo.root_bytes(1))
    print(
        f"generated {opts.bins} bins x {opts.targets} targets x {opts.size} B "
        f"in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )

    rows: list[tuple[str, Measured, Measured]] = []
    with contextlib.ExitStack() as stack:
        dest_flags: list[str] = ["--dest", str(dest)]
        if s3:
            url, flags = stack.enter_context(s3_destination(opts.s3_endpoint, opts.s3_bucket))
            dest_flags = ["--dest", url, *flags]
        upstream_url, server_kind = stack.enter_context(
            serve(upstream, python_server=opts.python_server)
        )
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

        def both(name: str, label: str, *, min_requests: int) -> None:
            profile = work / f"{label}.prof" if opts.profile else None
            ours = run_mirror(common, profile=profile)
            figure(name, ours, size=opts.size, min_requests=min_requests, s3=s3)
            if baseline:
                theirs = run_baseline(root, upstream_url, baseline_dest)
                rows.append((name, ours, theirs))

        both("first sync", "first", min_requests=opts.targets + opts.bins + 4)

        rng = random.Random(1)
        bins_touched = set()
        for index in range(opts.add):
            path = f"files/new/file-{index:07d}.bin"
            repo.add_target(path, rng.randbytes(opts.size))
            bins_touched.add(repo.role_for_target(path))
        repo.publish(upstream)
        both(
            "incremental",
            "incremental",
            # root probe, timestamp, snapshot, the changed bins (targets.json, their
            # delegator, is unchanged), the new targets
            min_requests=opts.add + len(bins_touched) + 3,
        )
        both("no-op", "noop", min_requests=2)

    if rows:
        table(rows)
    if opts.bwlimit.strip().lower() != "off":
        capped_sync(work, opts.bwlimit, opts.capped_mib, python_server=opts.python_server)


def capped_sync(work: Path, bwlimit: str, mib: int, *, python_server: bool) -> None:
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
    with serve(upstream, python_server=python_server) as (url, _):
        flags = ["--root", str(root), "--upstream", url]
        free = run_mirror(["sync", *flags, "--dest", str(work / "uncapped-dest")]).output
        capped = run_mirror(
            ["sync", *flags, "--dest", str(work / "capped-dest"), "--bwlimit", bwlimit]
        )
    report, wall = capped.output, capped.wall
    received = int(report["bytes_received"])  # type: ignore[call-overload]
    seconds = float(report["seconds"])  # type: ignore[arg-type]
    achieved = received / seconds if seconds else 0.0
    print(
        f"{'capped':<12} {wall:7.2f} s  --bwlimit {bwlimit} = {rate / 2**20:.2f} MiB/s: "
        f"{received / 2**20:.2f} MiB in {seconds:.2f} s, achieved {achieved / 2**20:.2f} MiB/s "
        f"({100 * achieved / rate:.1f} % of the cap; {received / rate:.2f} s at exactly the cap, "
        f"{float(free['seconds']):.2f} s without a cap)"  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
