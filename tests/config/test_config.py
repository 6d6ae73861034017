"""Settings come from flags, TUF_MIRROR_* environment variables and a TOML file, in
that order of precedence; bad values are usage errors (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mirror.config import add_options, parse_duration, parse_size, resolve
from mirror.errors import UsageError

EXAMPLE = Path(__file__).parents[2] / "deploy" / "example.toml"


def parse(argv: list[str], command: str = "sync") -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, command)
    return parser.parse_args(argv)


def test_shipped_example_config_is_valid() -> None:
    """deploy/example.toml resolves: the documented example stays true."""
    settings = resolve("sync", parse(["--config", str(EXAMPLE)]), environ={})
    assert settings.upstream == ("https://repo.example.org", "https://mirror2.example.org")
    assert settings.timeout == 120.0
    assert settings.expiry_warning == 12 * 3600


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    """A flag wins over TUF_MIRROR_*, which wins over the config file."""
    config = tmp_path / "c.toml"
    config.write_text(
        'root = "r.json"\ndest = "/file"\nupstream = ["http://file"]\ntransfers = 3\n'
    )
    env = {"TUF_MIRROR_DEST": "/env", "TUF_MIRROR_TRANSFERS": "5"}
    settings = resolve("sync", parse(["--config", str(config), "--transfers", "7"]), environ=env)
    assert settings.dest == "/env"
    assert settings.transfers == 7
    assert settings.upstream == ("http://file",)
    settings = resolve("sync", parse(["--config", str(config)]), environ=env)
    assert settings.transfers == 5


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    """A typo in the config file is reported, not ignored."""
    config = tmp_path / "c.toml"
    config.write_text('root = "r"\ndest = "d"\nupstream = ["u"]\ntransfer = 3\n')
    with pytest.raises(UsageError, match="unknown setting 'transfer'"):
        resolve("sync", parse(["--config", str(config)]), environ={})


def test_required_settings() -> None:
    """--root, --dest and (for sync) --upstream are required."""
    with pytest.raises(UsageError, match="--root is required"):
        resolve("sync", parse([]), environ={})
    with pytest.raises(UsageError, match="--upstream is required"):
        resolve("sync", parse(["--root", "r", "--dest", "d"]), environ={})


def test_sizes_and_durations() -> None:
    """Sizes are bytes with binary suffixes; durations take s/m/h/d."""
    assert parse_size("512K") == 512 * 1024
    assert parse_size("10M") == 10 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_duration("3d") == 3 * 86400
    assert parse_duration("90") == 90
    with pytest.raises(UsageError, match="bytes, not bits"):
        parse_size("10 Mbit")
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_bad_root_pin(tmp_path: Path) -> None:
    """A root file that does not match --root-sha256 is refused before any network."""
    root = tmp_path / "root.json"
    root.write_bytes(b"{}")
    settings = resolve(
        "sync",
        parse(["--root", str(root), "--root-sha256", "0" * 64, "--dest", "d", "--upstream", "u"]),
        environ={},
    )
    with pytest.raises(UsageError, match="not the pinned"):
        settings.root_bytes()


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown flags and missing required settings are exit 2 with one clear line."""
    from mirror.cli import main

    assert main(["sync"]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["sync", "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main([]) == 2
