"""The trust policy in a sync run: refresh the other repositories, then decide, for
every target of the primary the sync would copy, whether the parties agree on it.

``open_gate`` (an async context manager, entered after the destination's lock)
refreshes every secondary repository with the full TUF workflow and yields a
``PolicyGate``, which the ``Synchronizer`` consults through three hooks:

* ``fingerprint()`` joins the target selection's fingerprint: when the policy file
  changes, the sync re-decides every target of the primary (presence checks keep
  the already published ones cheap);
* ``admit(role, target)``, for every target the sync would copy (new or changed in
  the primary): publish, hold back (absent, listed in the report with its score
  and missing votes) or conflict (not copied; the run fails);
* ``before_publish(context)`` (a ``hooks.PublishContext``): first re-decides the
  paths whose votes changed since the last run (a curator added, changed or
  withdrew one) and that the primary's walk did not already decide: each is looked
  up in the primary with the specification's target search (roles from the
  destination, re-verified), so a held-back target is published by the run in
  which its score is reached, even when the primary did not change, and the cost
  follows the change. Then a conflict
  is ``PolicyConflictError`` (exit 1) before anything new is published; otherwise the
  previously held-back targets now agreed on are copied (their copy publishes them
  at once: the primary's published metadata already lists them, which is why it
  waits for this point), and the secondaries' verified metadata is published under
  ``DEST/repositories/<name>/``, before the primary's.

After a successful run the gate records, in ``DEST/.tuf-mirror/policy.json``, the
held-back targets and each repository's votes: a repository that stops vouching for
a target it vouched for (and that the mirror serves) is an alarm in the report,
never a deletion. The state is bookkeeping only: a lost or altered file costs
report detail, never admits a target (every decision is made from verified
metadata).

What this module does not do: the consensus rule itself (``model.decide``), the
TUF workflow (``trust``, ``refresh``, ``walk``), copying targets (the engine's
``PublishContext.copy_target``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from mirror.errors import PolicyConflictError, one_error
from mirror.layout import POLICY_STATE_KEY
from mirror.log import log
from mirror.plan import target_copy
from mirror.policy.model import Decision, Listing, TrustPolicy, Verdict, decide
from mirror.policy.secondary import SecondaryRepository
from mirror.policy.source import load_policy_digest, repository_root
from mirror.report import RunReport
from mirror.storage import INTERNAL_PREFIX, NotFoundInStoreError, PutOptions, Store
from mirror.storage.headers import put_options_for
from mirror.storage.prefixed import PrefixedStore
from mirror.trust import TargetSearch

if TYPE_CHECKING:
    from mirror.config import Settings
    from mirror.hooks import PublishContext
    from mirror.trust import TargetFile

__all__ = ["POLICY_STATE_KEY", "PolicyGate", "open_gate"]

_MAX_STATE = 256 * 1024 * 1024
#: conflicts and alarms listed in full in the report; the rest are counted
_REPORT_LIMIT = 1000
#: roles kept in memory while touched paths are looked up in the primary
_ROLES_KEPT = 8


@dataclasses.dataclass(slots=True)
class _PreviousState:
    fingerprint: str | None = None
    held_back: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    votes: dict[str, dict[str, Listing]] = dataclasses.field(default_factory=dict)


def _parse_state(raw: bytes) -> _PreviousState:
    try:
        data = json.loads(raw)
        return _PreviousState(
            fingerprint=str(data["fingerprint"]),
            held_back={str(k): dict(v) for k, v in dict(data["held_back"]).items()},
            votes={
                str(repo): {
                    str(path): Listing.from_json(item) for path, item in dict(paths).items()
                }
                for repo, paths in dict(data["votes"]).items()
            },
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s", POLICY_STATE_KEY)
        return _PreviousState()


class PolicyGate:
    """The policy's decisions for one run; see the module docstring."""

    def __init__(
        self,
        *,
        policy: TrustPolicy,
        policy_digest: str,
        secondaries: list[SecondaryRepository],
        votes: dict[str, dict[str, Listing]],
        previous: _PreviousState,
        store: Store,
        report: RunReport,
        dry_run: bool,
    ) -> None:
        self.policy = policy
        self.secondaries = secondaries
        self.votes = votes
        self.previous = previous
        self.store = store
        self.report = report
        self.dry_run = dry_run
        self._fingerprint = policy_digest[:16]
        self.decisions: dict[str, Decision] = {}
        self.alarms: dict[str, dict[str, Any]] = {}
        #: targets whose copy waits until no conflict is possible: a previously
        #: held-back target is listed by published metadata, so its copy publishes it
        self._deferred: dict[str, tuple[str, TargetFile]] = {}
        #: paths whose votes changed since the last recorded run
        self.touched: set[str] = set()
        for repo, paths in votes.items():
            before = previous.votes.get(repo, {})
            self.touched.update(path for path, item in paths.items() if before.get(path) != item)
            self.touched.update(path for path in before if path not in paths)

    # -- hooks -----------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Changes when the policy file changes (then every target is re-decided)."""
        return self._fingerprint

    def admit(self, role: str, target: TargetFile) -> bool:
        """Whether the primary's ``target`` (listed by ``role``) is copied."""
        listing = Listing.of(target.length, target.hashes)
        decision = decide(self.policy, target.path, listing, self.votes)
        self.decisions[target.path] = decision
        withdrawn = [
            repo
            for repo, paths in self.previous.votes.items()
            if target.path in paths
            and self.votes.get(repo, {}).get(target.path) not in (paths[target.path], listing)
        ]
        if withdrawn and target.path not in self.previous.held_back:
            message = (
                f"{', '.join(withdrawn)} no longer vouch{'es' if len(withdrawn) == 1 else ''} "
                f"for {target.path!r}; a published copy is kept, never deleted"
            )
            log.warning("trust policy alarm: %s (now %s)", message, decision.verdict.value)
            self.alarms[target.path] = {
                "path": target.path,
                "repositories": withdrawn,
                "verdict": decision.verdict.value,
                "message": message,
            }
        if decision.verdict is Verdict.HOLD:
            log.debug("holding back %s (%s)", target.path, decision.reason)
        if decision.verdict is Verdict.PUBLISH and target.path in self.previous.held_back:
            self._deferred[target.path] = (role, target)
            return False
        self._deferred.pop(target.path, None)
        return decision.verdict is Verdict.PUBLISH

    async def before_publish(self, context: PublishContext) -> None:
        """Re-decide the touched paths; refuse to publish anything when parties
        conflict; else copy the targets whose copy publishes them at once, and
        publish the secondaries' metadata (not in a dry run)."""
        await self._revisit(context)
        conflicts = {p: d for p, d in self.decisions.items() if d.verdict is Verdict.CONFLICT}
        self._fill_report()
        if conflicts:
            path, decision = sorted(conflicts.items())[0]
            raise PolicyConflictError(
                f"{len(conflicts)} target(s) in conflict, nothing new published; "
                f"first: {path!r}: {decision.reason}"
            )
        await self._copy_deferred(context)
        if not self.dry_run:
            for secondary in self.secondaries:
                await secondary.publish()

    async def _copy_deferred(self, context: PublishContext) -> None:
        consistent = context.trusted.consistent_snapshot
        for _, (role, target) in sorted(self._deferred.items()):
            await context.copy_target(
                target_copy(target, role=role, consistent_snapshot=consistent)
            )

    async def _revisit(self, context: PublishContext) -> None:
        """Look up in the primary every touched path this run has not decided yet
        and decide it (a target now published is copied by ``_copy_deferred``)."""
        paths = sorted(self.touched - self.decisions.keys())
        new, published = context.trusted, context.published
        if not paths or (new.snapshot is None and published.snapshot is None):
            return
        consistent = new.consistent_snapshot
        changed = context.changed_roles
        if new.snapshot is None:
            assert published.snapshot is not None
            new.update_snapshot(published.snapshot.raw, trusted=True)
        snapshot = new.snapshot
        assert snapshot is not None

        # The last few roles read are kept (the top-level targets and the delegators
        # every search passes through): memory stays bounded by a few roles.
        loaded: dict[str, tuple[bytes, bool]] = {}

        async def role_bytes(role: str) -> tuple[bytes, bool]:
            if role in loaded:
                loaded[role] = loaded.pop(role)
                return loaded[role]
            meta = snapshot.signed.meta[f"{role}.json"]
            fresh = role in changed
            data, _ = await context.roles.role_bytes(
                role, meta.version, changed=fresh, consistent=consistent
            )
            loaded[role] = (data, not fresh)
            if len(loaded) > _ROLES_KEPT:
                del loaded[next(iter(loaded))]
            return loaded[role]

        if new.targets is None:
            data, trusted = await role_bytes("targets")
            new.update_targets(data, trusted=trusted)
        for path in paths:
            search = TargetSearch(new, path)
            while (step := search.next_role()) is not None:
                data, trusted = await role_bytes(step.role)
                search.feed(data, trusted=trusted)
            match = search.result
            if match is None or not context.target_filter.selects(path, match.role):
                continue
            if self.admit(match.role, match.target):
                self._deferred[path] = (match.role, match.target)

    # -- bookkeeping -------------------------------------------------------------------

    def _held_back(self) -> dict[str, dict[str, Any]]:
        """Held-back targets after this run: a full re-decision (the selection
        changed) replaces the previous list; an incremental one updates it."""
        full = self.previous.fingerprint != self._fingerprint
        held = {} if full else dict(self.previous.held_back)
        for path, decision in self.decisions.items():
            if decision.verdict is Verdict.HOLD and path not in self.alarms:
                held[path] = decision.to_json(path)
            else:
                held.pop(path, None)
        return held

    def _fill_report(self) -> None:
        names = {Verdict.PUBLISH: "published", Verdict.HOLD: "held_back"}
        tallies = [
            dict.fromkeys(("published", "held_back", "conflicts"), 0)
            for _ in range(len(self.policy.mappings) + 1)
        ]
        for decision in self.decisions.values():
            index = decision.mapping if decision.mapping is not None else -1
            tallies[index][names.get(decision.verdict, "conflicts")] += 1
        counts: list[dict[str, Any]] = [
            {"paths": list(mapping.paths), **tally}
            for mapping, tally in zip(self.policy.mappings, tallies, strict=False)
        ]
        unmatched = tallies[-1]
        held = self._held_back()
        conflicts = [
            d.to_json(p) for p, d in sorted(self.decisions.items()) if d.verdict is Verdict.CONFLICT
        ]
        self.report.targets_held_back = len(held)
        self.report.policy = {
            "primary": self.policy.primary,
            "repositories": {
                sec.name: {
                    "versions": sec.versions_after,
                    "targets": len(self.votes.get(sec.name, {})),
                    "requests": sec.fetcher.stats.requests,
                    "bytes_received": sec.fetcher.stats.bytes_received,
                    "warnings": list(sec.report.warnings),
                }
                for sec in self.secondaries
            },
            "mappings": counts,
            "unmatched": unmatched,
            "held_back": [held[path] for path in sorted(held)][:_REPORT_LIMIT],
            "conflicts": conflicts[:_REPORT_LIMIT],
            "alarms": [self.alarms[path] for path in sorted(self.alarms)][:_REPORT_LIMIT],
        }
        for alarm in sorted(self.alarms):
            warning = f"trust policy alarm: {self.alarms[alarm]['message']}"
            if warning not in self.report.warnings:
                self.report.warnings.append(warning)

    async def finish(self) -> None:
        """After a successful run: the report (the run's requests and bytes include
        the other repositories'), and (not in a dry run) the state."""
        self._fill_report()
        for secondary in self.secondaries:
            self.report.requests += secondary.fetcher.stats.requests
            self.report.bytes_received += secondary.fetcher.stats.bytes_received
            self.report.retries += secondary.fetcher.stats.retries
        for index, mapping in enumerate(self.report.policy["mappings"]):
            log.info(
                "policy mapping %d (%s): %d published, %d held back",
                index,
                ", ".join(mapping["paths"]),
                mapping["published"],
                mapping["held_back"],
            )
        if self.dry_run:
            return
        state = {
            "fingerprint": self._fingerprint,
            "held_back": self._held_back(),
            "votes": {
                repo: {path: listing.to_json() for path, listing in sorted(paths.items())}
                for repo, paths in sorted(self.votes.items())
            },
        }
        options: PutOptions = put_options_for(POLICY_STATE_KEY, consistent_snapshot=False)
        await self.store.put_bytes(
            POLICY_STATE_KEY, json.dumps(state, sort_keys=True).encode(), options
        )


async def _previous_state(store: Store) -> _PreviousState:
    try:
        raw = await store.get(POLICY_STATE_KEY, max_length=_MAX_STATE)
    except NotFoundInStoreError:
        return _PreviousState()
    return _parse_state(raw)


@asynccontextmanager
async def open_gate(
    settings: Settings,
    store: Store,
    *,
    now: datetime,
    report: RunReport,
    dry_run: bool,
) -> AsyncIterator[PolicyGate]:
    """Load the policy, refresh every secondary repository, yield the gate; on a
    successful exit, record the policy state."""
    from mirror.endpoints import open_upstream

    assert settings.policy is not None
    policy_file = Path(settings.policy)
    policy, digest = load_policy_digest(policy_file, primary_upstreams=settings.upstream)
    async with AsyncExitStack() as stack:
        secondaries: list[SecondaryRepository] = []
        votes: dict[str, dict[str, Listing]] = {}
        for repo in policy.secondaries:
            repo_settings = dataclasses.replace(
                settings,
                root=repository_root(policy_file, repo),
                root_sha256=repo.root_sha256,
                upstream=repo.upstream,
                metadata_url=None,
                targets_url=None,
                include=(),
                exclude=(),
                role=(),
                processes=0,
                max_transfer=None,
                policy=None,
            )
            # The primary's retry, deadline, connection and --bwlimit rules (one cap).
            fetcher = open_upstream(repo_settings)
            stack.push_async_callback(fetcher.aclose)
            secondary = SecondaryRepository(
                name=repo.name,
                settings=repo_settings,
                store=PrefixedStore(
                    store,
                    f"repositories/{repo.name}",
                    bookkeeping=f"{INTERNAL_PREFIX}repositories/{repo.name}",
                ),
                fetcher=fetcher,
                now=now,
                dry_run=dry_run,
                report=RunReport(command=report.command),
            )
            secondaries.append(secondary)

        async def refresh(secondary: SecondaryRepository) -> None:
            votes[secondary.name] = await secondary.refresh()
            log.info(
                "policy repository %s: snapshot %s, %d targets vouched for",
                secondary.name,
                secondary.snapshot_digest,
                len(votes[secondary.name]),
            )

        # Concurrently (round trips overlap); a verification failure wins over a
        # transient one, as in the sync.
        with one_error():
            async with trio.open_nursery() as nursery:
                for secondary in secondaries:
                    nursery.start_soon(refresh, secondary)
        gate = PolicyGate(
            policy=policy,
            policy_digest=digest,
            secondaries=secondaries,
            votes=votes,
            previous=await _previous_state(store),
            store=store,
            report=report,
            dry_run=dry_run,
        )
        yield gate
        await gate.finish()
