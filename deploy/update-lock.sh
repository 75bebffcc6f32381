#!/usr/bin/env bash
# Regenerates deploy/requirements.lock: every Python package the image installs (the
# install_requires of setup.cfg, which stays the source of the version ranges, and the build
# requirements of pyproject.toml), pinned, with the sha256 of every file PyPI has for it.
# The Dockerfile installs it with pip --require-hashes: a file that is not exactly one of
# these is refused. Run with Debian 12's python3 (the image's: Python 3.11) after a change to
# setup.cfg or to pick up new releases; tests/unit/test_manifests.py checks that it covers
# setup.cfg and that the Dockerfile installs it with --require-hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q pip-tools==7.6.2
# pip-compile builds the project's metadata: give it the sources in a scratch copy
cp setup.cfg pyproject.toml README.md "$work/"
cp -r agent "$work/agent"
(cd "$work" && "$work/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --strip-extras --all-build-deps --no-header --no-emit-index-url --no-emit-find-links \
    --output-file requirements.lock pyproject.toml)
{
    echo "# The Python packages of the agent's image, pinned and hash-checked: the install_requires"
    echo "# of setup.cfg (the source of the version ranges) and the build requirements of"
    echo "# pyproject.toml, with their dependencies. deploy/Dockerfile installs them with"
    echo "# pip --require-hashes. Made by deploy/update-lock.sh (pip-tools 7.6.2): do not edit."
    cat "$work/requirements.lock"
} > deploy/requirements.lock
echo "deploy/requirements.lock: $(grep -c '^[a-z]' deploy/requirements.lock) packages"
