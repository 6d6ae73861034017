"""The argument parsers of ``tuf-mirror ledger`` and ``tuf-mirror witness``.

Only argparse: the command line builds them on every run (``--version`` and a sync
included) without importing what the commands run (``mirror.ledger.commands``:
trio, the log, the witness).

What it does not do: run the commands, or resolve settings (``commands``).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["LEDGER_COMMANDS", "add_parsers"]

LEDGER_COMMANDS = frozenset({"ledger", "witness"})


def _location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dest", metavar="DEST", help="a mirror: its ledger is DEST/.tuf-mirror/ledger"
    )
    parser.add_argument("--ledger", metavar="LEDGER", help="the ledger: DIR or s3://bucket/prefix")
    parser.add_argument("--s3-endpoint-url", metavar="URL", help="S3-compatible endpoint")
    parser.add_argument("--s3-region", metavar="REGION", help="region of the ledger's bucket")


def add_parsers(sub: Any) -> None:
    """Add ``ledger`` and ``witness`` to the CLI's subparsers."""
    ledger = sub.add_parser(
        "ledger",
        help="read and verify the ledger of what the mirror published",
        description="read and verify the ledger of what the mirror published",
    )
    actions = ledger.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    lookup = actions.add_parser("lookup", help="every (length, hashes) a path has had")
    lookup.add_argument("path", metavar="PATH")
    actions.add_parser("export", help="every known hash as --expect JSON lines")
    actions.add_parser("checkpoint", help="print the latest checkpoint (signed note)")
    verify = actions.add_parser("verify", help="check the log against its checkpoint")
    verify.add_argument("--key", metavar="FILE", help="PEM public key or C2SP verifier key")
    verify.add_argument(
        "--since", metavar="CHECKPOINT_FILE", help="an older checkpoint the log must extend"
    )
    for each in (lookup, *actions.choices.values()):
        if not any(a.dest == "dest" for a in each._actions):
            _location_options(each)

    witness = sub.add_parser(
        "witness",
        help="audit the upstream (and peers) against the ledger; publish nothing",
        description="audit the upstream (and peers) against the ledger; publish nothing",
    )
    _location_options(witness)
    witness.add_argument("--root", metavar="FILE", required=True, help="pinned trusted root")
    witness.add_argument("--upstream", metavar="URL", required=True, help="upstream base URL")
    witness.add_argument(
        "--witness-peer", metavar="URL", action="append", default=[], help="another mirror; repeat"
    )
    witness.add_argument("--immutable", metavar="GLOB", action="append", default=[])
    witness.add_argument("--expect", metavar="FILE")
    witness.add_argument("--expect-key", metavar="FILE")
    witness.add_argument(
        "--sample",
        metavar="N",
        type=int,
        help="also fetch N randomly chosen recorded targets (default: none; 0: all) and"
        " compare their bytes with the ledger",
    )
    witness.add_argument("--json", action="store_true", help="print the report as JSON")
