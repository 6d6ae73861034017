"""deploy/sigstore.toml, the README's way to mirror sigstore's public repository."""

from __future__ import annotations

import argparse
from pathlib import Path

import trio

from mirror.config import add_options, resolve
from mirror.fetch import open_fetcher

CONFIG = Path(__file__).parents[2] / "deploy" / "sigstore.toml"


def test_sigstore_example_config_points_at_the_public_good_layout() -> None:
    """The shipped config resolves, and its fetcher asks for metadata at the site
    root and targets under targets/, as tuf-repo-cdn.sigstore.dev serves them."""
    parser = argparse.ArgumentParser()
    add_options(parser, "sync")
    settings = resolve("sync", parser.parse_args(["--config", str(CONFIG)]), environ={})
    assert settings.upstream == ("https://tuf-repo-cdn.sigstore.dev",)
    fetcher = open_fetcher(
        settings.upstream[0],
        metadata_url=settings.metadata_url,
        targets_url=settings.targets_url,
    )
    url_for = fetcher.url_for  # type: ignore[attr-defined]  # HttpFetcher
    assert url_for("metadata", "14.root.json") == "https://tuf-repo-cdn.sigstore.dev/14.root.json"
    assert url_for("targets", "abc.trusted_root.json") == (
        "https://tuf-repo-cdn.sigstore.dev/targets/abc.trusted_root.json"
    )
    trio.run(fetcher.aclose)
