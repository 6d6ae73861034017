"""On a bucket: a publish whose PUT fails at any step, with a root rotating the
timestamp and snapshot keys, is completed by the next run; ``verify`` in between
writes nothing and says exit 0 (old state) or 3 (an interrupted publish)."""

from __future__ import annotations

from mirror.errors import ExitStatus
from tests.s3.conftest import S3Env
from tests.sync.conftest import tree


def test_a_failed_put_at_every_publish_step_is_completed(s3env: S3Env) -> None:
    """For every metadata object the second sync writes, a run whose PUTs of it all
    fail (HTTP 500) exits 3; verify then makes no write and exits 0 or, once the
    rotating root is published without its timestamp, 3; the rerun exits 0 and the
    bucket equals the upstream byte for byte."""
    assert s3env.run() == ExitStatus.OK
    baseline = s3env.objects()
    s3env.repo.rotate_keys("timestamp")
    s3env.repo.rotate_keys("snapshot")
    s3env.repo.add_target("files/new-after-v1.txt", b"new content\n" * 10)
    s3env.repo.mark_changed("targets")
    s3env.publish()
    upstream = tree(s3env.upstream)
    steps = sorted(
        name
        for name, data in upstream.items()
        if name.startswith("metadata/") and baseline.get(name) != data
    )
    assert "metadata/timestamp.json" in steps
    assert len(steps) >= 6, steps

    # Not metadata/root.json: the unversioned copy is published only with new roots
    # (as the upstream serves it), so a run that failed to write it leaves it stale
    # until the next root; a known gap, not covered here.
    for step in (name for name in steps if name != "metadata/root.json"):
        for key in set(s3env.objects()) - set(baseline):
            s3env.delete(key)
        for key, data in baseline.items():
            s3env.put(key, data)
        assert s3env.objects() == baseline
        fault = s3env.recorder.fail("PutObject", step, 500, "InternalError")
        assert s3env.run() == ExitStatus.TRANSIENT, step
        s3env.recorder.faults.remove(fault)

        root_published = "metadata/2.root.json" in s3env.objects()
        expected = (
            ExitStatus.TRANSIENT
            if root_published and step != "metadata/2.root.json"
            else ExitStatus.OK
        )
        assert s3env.run("verify") == expected, step
        assert s3env.recorder.puts(internal=True) == [], "verify wrote"
        assert not s3env.recorder.started("DeleteObject"), "verify deleted"

        assert s3env.run() == ExitStatus.OK, step
        assert s3env.objects() == upstream, step
        assert s3env.run("verify") == ExitStatus.OK, step
