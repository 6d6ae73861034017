# Shared by scripts/*: create or reuse .venv and install the project into it.
# Re-installs only when pyproject.toml changed since the last install.
VENV="${TUF_MIRROR_VENV:-$PWD/.venv}"
ensure_venv() {
  local extra="$1" stamp
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  stamp="$VENV/.tuf-mirror-$extra-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q -e ".[$extra]"
    touch "$stamp"
  fi
}
# The scripts import tuf_mirror_testing (test server, repository generator) from the
# checkout: it is deliberately not installed with the package.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
