#!/usr/bin/env bash
# Installs everything Mamori needs on a fresh Debian 12 machine. Idempotent: a second
# run changes nothing and takes about a second. Called by `make run` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (eBPF and containers need it): sudo make ..." >&2
    exit 1
fi

# Debian packages: bcc (python3-bpfcc) compiles and loads the probes; bpftool and bpftrace
# for inspection and the comparison benchmark; kernel headers for bcc's compile; runc and
# busybox-static for the real-container tests; iproute2 for network namespaces; gcc for the
# struct-layout check and static test helpers; sudo so the README's commands work as written.
PKGS=(python3-bpfcc bpfcc-tools bpftool bpftrace linux-headers-amd64 runc busybox-static
      iproute2 python3-venv gcc libc6-dev make sudo mmdebstrap)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# tracefs: bcc attaches tracepoints through it.
mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing

# bcc looks for the headers of the running kernel under /lib/modules/$(uname -r)/build.
# Debian's newest headers stand in for them; kernel structs are read through BTF offsets,
# never through these headers, so the version difference does no harm.
KREL=$(uname -r)
if [ ! -e "/lib/modules/$KREL/build/include" ]; then
    KH=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
    if [ -z "$KH" ]; then
        echo "setup: no kernel headers found under /usr/src" >&2
        exit 1
    fi
    mkdir -p "/lib/modules/$KREL"
    ln -sfn "$KH" "/lib/modules/$KREL/build"
    ln -sfn "${KH%-amd64}-common" "/lib/modules/$KREL/source"
fi

# The venv is made from Debian's python3 with system site packages, so bcc (a Debian
# package) is importable; the python3 first on PATH may be another build that cannot see it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
