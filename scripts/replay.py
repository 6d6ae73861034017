"""Driver of scripts/replay: mirror historical states of public TUF repositories,
rebuilt from their git histories, incrementally into one destination.

Each state is laid out as the repository's web site served it at that commit, served
on 127.0.0.1, and synced with ``--reference-time`` at the commit's time. After each
sync the destination must hold only files the state serves, byte-identical, and
every file a client of that state needs. Two layouts are known:

* ``legacy``: sigstore/root-signing until 2024-09, ``repository/repository/``
  published as is (metadata at the site root, ``targets/<hash>.<name>``).
* ``tuf-on-ci``: tuf-on-ci's source layout (``metadata/root_history/N.root.json``,
  unversioned ``metadata/<role>.json``, ``targets/<path>``), published the way its
  build step does: ``N.root.json``, ``timestamp.json``, ``V.snapshot.json``,
  ``V.<role>.json`` for every role file the snapshot lists, and each target as
  ``targets/<dirs>/<hash>.<name>`` per listed hash. sigstore serves that metadata at
  the site root, tuf-on-ci's GitHub Pages sites under ``metadata/``.

``--write-fixture DIR`` writes the chosen states (trimmed to what a client
fetches) as directories, for the committed replay test. Not run in CI: it needs the
git histories (``git clone --bare`` of the repositories named in ``--help``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf_mirror_testing.replay import Replayed, State, check, published_tree, trim

LEGACY = "repository/repository"


def _git(gitdir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={gitdir}", *args], check=True, capture_output=True
    ).stdout


def _ls(gitdir: Path, commit: str, path: str) -> list[str]:
    out = _git(gitdir, "ls-tree", "-r", "--name-only", commit, "--", path + "/")
    return [line for line in out.decode().splitlines() if line]


def _show(gitdir: Path, commit: str, path: str) -> bytes:
    """The bytes a web server of the checkout serves at ``path``: committed
    symlinks (tuf-demo's hash-prefixed targets) are followed."""
    for _ in range(8):
        entry = _git(gitdir, "ls-tree", commit, "--", path).decode().split(None, 3)
        if not entry or entry[0] != "120000":
            break
        link = _git(gitdir, "cat-file", "-p", entry[2]).decode()
        parts = [*path.split("/")[:-1], *link.split("/")]
        resolved: list[str] = []
        for part in parts:
            if part == "..":
                resolved.pop()
            elif part not in ("", "."):
                resolved.append(part)
        path = "/".join(resolved)
    return _git(gitdir, "show", f"{commit}:{path}")


def _time(gitdir: Path, commit: str) -> datetime:
    text = _git(gitdir, "show", "-s", "--format=%cI", commit).decode().strip()
    return datetime.fromisoformat(text).astimezone(UTC)


def _signed(data: bytes) -> dict[str, Any]:
    signed = json.loads(data)["signed"]
    assert isinstance(signed, dict)
    return signed


def legacy_state(gitdir: Path, commit: str) -> State:
    """sigstore's published directory at ``commit``, served from the site root."""
    files = {
        path[len(LEGACY) + 1 :]: _show(gitdir, commit, path) for path in _ls(gitdir, commit, LEGACY)
    }
    return State(commit[:10], _time(gitdir, commit), files, "")


def tree_state(gitdir: Path, commit: str) -> State:
    """A repository whose git tree is the web site (GitHub Pages from the branch):
    ``metadata/`` and ``targets/`` served as committed (jku/tuf-demo until 2023-10)."""
    files = {
        path: _show(gitdir, commit, path)
        for top in ("metadata", "targets")
        for path in _ls(gitdir, commit, top)
    }
    return State(commit[:10], _time(gitdir, commit), files, "metadata")


def tuf_on_ci_state(gitdir: Path, commit: str, *, metadata_prefix: str) -> State:
    """tuf-on-ci's build output for the source tree at ``commit``."""
    source = {path: _show(gitdir, commit, path) for path in _ls(gitdir, commit, "metadata")}
    prefix = f"{metadata_prefix}/" if metadata_prefix else ""
    files: dict[str, bytes] = {}
    for path, data in source.items():
        if path.startswith("metadata/root_history/"):
            files[prefix + path.rsplit("/", 1)[1]] = data
    files[prefix + "timestamp.json"] = source["metadata/timestamp.json"]
    snapshot = source["metadata/snapshot.json"]
    files[prefix + f"{_signed(snapshot)['version']}.snapshot.json"] = snapshot
    meta = _signed(snapshot)["meta"]
    assert isinstance(meta, dict)
    for filename, info in meta.items():
        role_data = source.get(f"metadata/{filename}")
        if role_data is None or filename == "root.json":
            continue  # listed, but the source has no such role file: nothing to serve
        files[prefix + quote(f"{info['version']}.{filename}", safe="%")] = role_data
        for path, target in dict(_signed(role_data).get("targets") or {}).items():
            content = _show(gitdir, commit, f"targets/{path}")
            directory, _, base = path.rpartition("/")
            for digest in target["hashes"].values():
                name = f"{digest}.{base}"
                files["targets/" + (f"{directory}/{name}" if directory else name)] = content
    return State(commit[:10], _time(gitdir, commit), files, metadata_prefix)


def _commits(gitdir: Path, path: str, since: str | None, until: str | None) -> list[str]:
    args = ["log", "--first-parent", "--format=%H", "--reverse"]
    if since:
        args.append(f"--since={since}")
    if until:
        args.append(f"--until={until}")
    out = _git(gitdir, *args, "HEAD", "--", path)
    return [commit for commit in out.decode().split() if _exists(gitdir, commit, path)]


def _exists(gitdir: Path, commit: str, path: str) -> bool:
    done = subprocess.run(
        ["git", f"--git-dir={gitdir}", "cat-file", "-e", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _spread(commits: list[str], count: int) -> list[str]:
    if len(commits) <= count:
        return commits
    step = (len(commits) - 1) / (count - 1)
    return [commits[round(i * step)] for i in range(count)]


def sigstore_states(gitdir: Path, count: int) -> list[State]:
    """States of sigstore/root-signing across the move to tuf-on-ci (2024-09)."""
    legacy = _spread(
        _commits(gitdir, f"{LEGACY}/timestamp.json", "2023-06-01", "2024-09-01"), count
    )
    moved = _spread(_commits(gitdir, "metadata/timestamp.json", "2024-09-06", None), count)
    states = [legacy_state(gitdir, commit) for commit in legacy]
    states += [tuf_on_ci_state(gitdir, commit, metadata_prefix="") for commit in moved]
    return states


#: jku/tuf-demo was wiped and re-created with tuf-on-ci and new keys on this day,
#: while its old root (v8, expiring 2023-12-14) was still valid: an upstream reset
TUF_DEMO_RESET = "2023-10-04T10:00:00+03:00"


def tuf_demo_states(gitdir: Path, count: int) -> tuple[list[State], list[State]]:
    """States of jku/tuf-demo before its reset (its git tree was the site: succinct
    hash bins, ed25519 and ecdsa keys, a role ``demotest`` listed but not delegated)
    and after it (tuf-on-ci's GitHub Pages layout)."""
    before = _spread(
        _commits(gitdir, "metadata/timestamp.json", "2022-07-01", TUF_DEMO_RESET), count
    )
    after = _spread(_commits(gitdir, "metadata/snapshot.json", TUF_DEMO_RESET, None), count)
    return (
        [tree_state(gitdir, commit) for commit in before],
        [tuf_on_ci_state(gitdir, commit, metadata_prefix="metadata") for commit in after],
    )


def _argv(state: State, url: str, root: Path, dest: Path) -> list[str]:
    base = url + (f"/{state.metadata_prefix}" if state.metadata_prefix else "")
    return [
        "sync",
        "--root", str(root),
        "--upstream", url,
        "--metadata-url", base + "/",
        "--targets-url", url + "/targets/",
        "--dest", str(dest),
        "--reference-time", state.time.isoformat(),
    ]  # fmt: skip


def replay(
    states: list[State], pin: bytes, work: Path, *, label: str, reset: State | None = None
) -> int:
    """Sync every state in order into one destination; then, with ``reset``, the
    re-created upstream, which must be refused (exit 1, destination unchanged).
    Returns the number of failures."""
    from mirror.cli import main
    from tuf_mirror_testing.server import serve_directory

    serve = work / "served"
    dest = work / "dest"
    root = work / "root.json"
    root.write_bytes(pin)
    failures = 0
    replayed = Replayed()
    states[0].write(serve)
    with serve_directory(serve) as server:
        for state in states:
            state.write(serve)
            replayed.serve(state)
            status = main(_argv(state, server.url, root, dest))
            problems, notes = check(state, dest, replayed, pinned=_signed(pin)["version"])
            verdict = "ok" if status == 0 and not problems else "FAILED"
            print(f"{label} {state.time:%Y-%m-%d} {state.name}: exit {status}, {verdict}")
            for line in problems[:10] + notes:
                print(f"    {line}")
            failures += verdict != "ok"
        if reset is not None:
            before = published_tree(dest)
            reset.write(serve)
            status = main(_argv(reset, server.url, root, dest))
            unchanged = published_tree(dest) == before
            verdict = "ok" if status == 1 and unchanged else "FAILED"
            print(
                f"{label} reset {reset.time:%Y-%m-%d} {reset.name}: exit {status} "
                f"(expected 1), destination {'unchanged' if unchanged else 'CHANGED'}: {verdict}"
            )
            failures += verdict != "ok"
    return failures


def write_fixture(root: Path, states: list[State], reset: State | None) -> None:
    """The states, trimmed to what clients fetch, as directories ``NN-<commit>``, and
    ``states.json`` (directory, time, metadata prefix; the reset state last)."""
    index = []
    for number, state in enumerate([*states, *([reset] if reset else [])]):
        directory = f"{number:02d}-{state.name}"
        trim(state).write(root / directory)
        index.append(
            {
                "dir": directory,
                "commit": state.name,
                "time": state.time.isoformat(),
                "metadata_prefix": state.metadata_prefix,
                "reset": state is reset,
            }
        )
    (root / "states.json").write_text(json.dumps(index, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigstore", type=Path, help="bare clone of sigstore/root-signing")
    parser.add_argument("--tuf-demo", type=Path, help="bare clone of jku/tuf-demo")
    parser.add_argument("--states", type=int, default=8, help="states per layout and repository")
    parser.add_argument("--write-fixture", type=Path, help="write trimmed states here instead")
    args = parser.parse_args(argv)
    if not (args.sigstore or args.tuf_demo):
        parser.error("give --sigstore and/or --tuf-demo")
    failures = 0
    runs: list[tuple[str, list[State], bytes, State | None]] = []
    if args.sigstore:
        states = sigstore_states(args.sigstore, args.states)
        # The pin: root v5, the first version sigstore's clients shipped; 1-4 use
        # hex-encoded ecdsa keys no current TUF library reads (skipped, warned).
        pin = states[0].files[states[0].meta("5.root.json")]
        runs.append(("sigstore", states, pin, None))
    if args.tuf_demo:
        before, after = tuf_demo_states(args.tuf_demo, args.states)
        runs.append(("tuf-demo", before, before[0].files["metadata/1.root.json"], after[0]))
        runs.append(("tuf-demo-reset", after, after[0].files["metadata/1.root.json"], None))
    for label, states, pin, reset in runs:
        if args.write_fixture:
            write_fixture(args.write_fixture / label, states, reset)
            continue
        with tempfile.TemporaryDirectory(prefix=f"replay-{label}-") as tmp:
            failures += replay(states, pin, Path(tmp), label=label, reset=reset)
    print(f"{failures} state(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
