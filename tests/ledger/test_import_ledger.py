"""The ledger in ``import``: a bundle's verified state is recorded like a sync's,
and the far side's ledger agrees with the near side's on every target."""

from __future__ import annotations

import json

import pytest

from mirror.cli import main
from mirror.errors import ExitStatus
from tests.airgap.conftest import Air, air

__all__ = ["air"]


def test_import_records_the_ledger(air: Air, capsys: pytest.CaptureFixture[str]) -> None:
    """After a --full import, ``ledger export`` of the far mirror lists exactly the
    targets ``ledger export`` of a directly synced mirror lists, and its ledger
    verifies."""
    assert air.export(air.tmp / "b0", "--full") == ExitStatus.OK
    assert air.import_(air.tmp / "b0") == ExitStatus.OK
    assert air.sync_near() == ExitStatus.OK
    exports = []
    for dest in (air.far, air.near):
        capsys.readouterr()
        assert main(["ledger", "export", "--dest", str(dest)]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        exports.append({(x["path"], x["length"], json.dumps(x["hashes"])) for x in lines})
        assert main(["ledger", "verify", "--dest", str(dest)]) == 0
    assert exports[0] == exports[1]
    listed = {
        (path, target.length, json.dumps(target.hashes))
        for role in air.repo.roles
        if role not in ("root", "timestamp", "snapshot")
        for path, target in air.repo.targets_role(role).signed.targets.items()
    }
    assert exports[0] == listed
