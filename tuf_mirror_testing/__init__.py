"""Test, demo and benchmark support for tuf-mirror (not used by the mirror itself).

* ``tuf_mirror_testing.server``: a loopback HTTP/1.1 server that serves a directory
  tree, logs every request and injects faults (``serve_directory``).
* ``tuf_mirror_testing.repo``: a TUF repository generator that signs with real keys and
  writes the published layout (``Repository``, ``generate_bins_repository``).

This package imports nothing on purpose, so that ``python -m tuf_mirror_testing.server``
runs without the module being imported twice; import the submodules directly.
"""
