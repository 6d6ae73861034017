"""The ``tuf-mirror shard plan|copy|publish`` command line.

Each step takes every option ``sync`` takes (flags, ``TUF_MIRROR_*`` environment,
``--config FILE``), so one configuration serves every job, plus its own:

- ``plan --shards N [--run-id ID]``;
- ``copy --run-id ID [--index K --count N]``: ``--index`` defaults from
  ``AWS_BATCH_JOB_ARRAY_INDEX`` (an AWS Batch array child) or
  ``JOB_COMPLETION_INDEX`` (a Kubernetes Indexed Job), ``--count`` from
  ``AWS_BATCH_JOB_ARRAY_SIZE`` or the run's own shard count; with no index at
  all, every shard is copied;
- ``publish --run-id ID``.

``--run-id`` also reads ``TUF_MIRROR_RUN_ID``. This module only parses; the steps
are ``mirror.shard.steps`` (imported lazily, so ``--help`` stays cheap).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from mirror.config import ENV_PREFIX, Settings, add_options, resolve
from mirror.errors import UsageError
from mirror.shard.partition import MAX_SHARDS

HELP = "a first copy in shards, for many machines: plan, copy (one shard each), publish"
STEPS = {
    "plan": "verify the upstream and write the work manifest of a sharded copy into DEST",
    "copy": "copy one shard of a planned run (verified against the manifest), then mark it done",
    "publish": "check that every shard completed, then publish through the sync engine",
}
RUN_ID_ENV = ENV_PREFIX + "RUN_ID"
#: where an index comes from when --index is not given, in this order
INDEX_ENV = ("AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX")
COUNT_ENV = "AWS_BATCH_JOB_ARRAY_SIZE"


def add_shard_command(
    sub: argparse._SubParsersAction[Any],  # the subparsers object argparse hands out
    parser_class: type[argparse.ArgumentParser],
) -> None:
    """Add ``shard`` and its three steps to the subcommands ``sub``."""
    shard = sub.add_parser("shard", help=HELP, description=HELP)
    steps = shard.add_subparsers(
        dest="shard_step", metavar="STEP", parser_class=parser_class, required=True
    )
    for step, helptext in STEPS.items():
        cmd = steps.add_parser(step, help=helptext, description=helptext)
        add_options(cmd, "sync")
        required = step != "plan"
        cmd.add_argument(
            "--run-id",
            dest="shard_run_id",
            metavar="ID",
            default=None,
            help=(
                "the run (env "
                + RUN_ID_ENV
                + (")" if required else "; default: a new one from the time and 6 random hex)")
            ),
        )
        if step == "plan":
            cmd.add_argument(
                "--shards",
                dest="shard_shards",
                metavar="N",
                required=True,
                help=f"how many shards to partition the targets into (1..{MAX_SHARDS})",
            )
        if step == "copy":
            cmd.add_argument(
                "--index",
                dest="shard_index",
                metavar="K",
                default=None,
                help="the shard to copy, 0..N-1 (env "
                + " or ".join(INDEX_ENV)
                + "; default: every shard)",
            )
            cmd.add_argument(
                "--count",
                dest="shard_count",
                metavar="N",
                default=None,
                help=f"how many shards the run has (env {COUNT_ENV}; default: the run's)",
            )


def _number(text: str, what: str, *, minimum: int, maximum: int = MAX_SHARDS) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{what}: not a whole number: {text!r}") from None
    if not minimum <= value <= maximum:
        raise UsageError(f"{what}: {value} is not between {minimum} and {maximum}")
    return value


def shard_position(
    index: str | None, count: str | None, environ: Mapping[str, str]
) -> tuple[int | None, int | None]:
    """``(index, count)`` from the flags, else the schedulers' environment."""
    source = "--index"
    if index is None:
        for name in INDEX_ENV:
            if environ.get(name, "").strip():
                index, source = environ[name], name
                break
    count_source = "--count"
    if count is None and environ.get(COUNT_ENV, "").strip():
        count, count_source = environ[COUNT_ENV], COUNT_ENV
    k = None if index is None else _number(index, source, minimum=0, maximum=MAX_SHARDS - 1)
    n = None if count is None else _number(count, count_source, minimum=1)
    if n is not None and k is None:
        raise UsageError(f"{count_source} {n} without a shard index: give --index K as well")
    if k is not None and n is not None and k >= n:
        raise UsageError(f"{source} {k} is out of range for {count_source} {n}: use 0..{n - 1}")
    return k, n


def resolve_shard(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of a shard step: ``sync``'s, plus ``extra["shard"]``."""
    from mirror.shard.manifest import validate_run_id
    from mirror.shard.steps import ShardArgs

    env = os.environ if environ is None else environ
    step = str(args.shard_step)
    run_id = args.shard_run_id or env.get(RUN_ID_ENV) or None
    if run_id is not None:
        validate_run_id(run_id)
    elif step != "plan":
        raise UsageError(f"--run-id is required (or {RUN_ID_ENV})")
    shards = None
    index = count = None
    if step == "plan":
        shards = _number(str(args.shard_shards), "--shards", minimum=1)
    if step == "copy":
        index, count = shard_position(args.shard_index, args.shard_count, env)
    # The policy gate decides per target during the walk and before publishing; a
    # sharded copy would write held-back targets where clients could fetch them.
    no_policy = UsageError(
        "--policy is not supported by `shard` yet: mirror a curated repository with "
        "`tuf-mirror sync`"
    )
    if getattr(args, "policy", None) or env.get(ENV_PREFIX + "POLICY"):
        raise no_policy
    settings = resolve("sync", args, environ=env)
    if getattr(settings, "policy", None) is not None:
        raise no_policy
    extra = {
        **settings.extra,
        "shard": ShardArgs(step=step, run_id=run_id, shards=shards, index=index, count=count),
    }
    return dataclasses.replace(settings, command=f"shard-{step}", extra=extra)


__all__ = ["add_shard_command", "resolve_shard", "shard_position"]
