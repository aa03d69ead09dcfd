#!/usr/bin/env bash
# Installs the real client tools that the integration tests in
# crates/server/tests/ drive against the `berth` binary: skopeo, podman,
# buildah (Debian packages), tar, and the Python `oras` client (PyPI).
# Docker itself is provided by the machine (the daemon must be running).
#
# Idempotent and non-interactive: what is already present is skipped, so a
# rerun is fast. Runs as root (CI does) or through sudo.
set -euo pipefail

ORAS_PY_VERSION="0.2.43"

export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-test-deps: must run as root (or with sudo)" >&2
        exit 1
    fi
fi

# Debian packages: command name -> package name.
declare -A APT_FOR_CMD=(
    [skopeo]=skopeo
    [podman]=podman
    [buildah]=buildah
    [tar]=tar
    [gzip]=gzip
    [newuidmap]=uidmap
    [python3]=python3
)

missing=()
for cmd in "${!APT_FOR_CMD[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("${APT_FOR_CMD[$cmd]}")
    fi
done

# pip for the python3 that is first on PATH (the one the tests run).
if command -v python3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi

# podman and buildah need a containers policy and registries configuration
# (/etc/containers/policy.json), shipped by golang-github-containers-common
# on Debian 12 and containers-common elsewhere; podman usually pulls it in.
need_policy=false
if [ ! -f /etc/containers/policy.json ]; then
    need_policy=true
fi

if [ "${#missing[@]}" -gt 0 ] || $need_policy; then
    echo "install-test-deps: installing ${missing[*]:-} (containers policy: $need_policy)"
    $SUDO apt-get update
    if [ "${#missing[@]}" -gt 0 ]; then
        $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    if [ ! -f /etc/containers/policy.json ]; then
        for pkg in golang-github-containers-common containers-common; do
            if apt-cache show "$pkg" > /dev/null 2>&1; then
                $SUDO apt-get install -y --no-install-recommends "$pkg"
                break
            fi
        done
    fi
else
    echo "install-test-deps: skopeo, podman, buildah, tar already installed"
fi

for cmd in skopeo podman buildah tar python3; do
    command -v "$cmd" >/dev/null 2>&1 || {
        echo "install-test-deps: $cmd still missing after install" >&2
        exit 1
    }
done

# The Python ORAS client, pinned.
installed="$(python3 -m pip show oras 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" = "$ORAS_PY_VERSION" ]; then
    echo "install-test-deps: python oras $ORAS_PY_VERSION already installed"
else
    echo "install-test-deps: installing python oras==$ORAS_PY_VERSION"
    # Debian's system python refuses plain pip installs (PEP 668); a pyenv or
    # venv python does not know the flag's meaning but accepts it.
    pip_args=(install --disable-pip-version-check --no-input "oras==$ORAS_PY_VERSION")
    if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
        pip_args+=(--break-system-packages)
    fi
    python3 -m pip "${pip_args[@]}"
fi
# PyYAML, for the test that parses deploy/kubernetes/*.yaml.
if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "install-test-deps: installing python PyYAML"
    yaml_args=(install --disable-pip-version-check --no-input "PyYAML>=6")
    if python3 -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
        yaml_args+=(--break-system-packages)
    fi
    python3 -m pip "${yaml_args[@]}"
fi

python3 -c 'import oras.client, oras.oci' || {
    echo "install-test-deps: python oras does not import" >&2
    exit 1
}

if ! command -v docker >/dev/null 2>&1; then
    echo "install-test-deps: warning: docker is not installed; client_docker tests will fail" >&2
elif ! docker info >/dev/null 2>&1; then
    echo "install-test-deps: warning: the docker daemon is not reachable; client_docker tests will fail" >&2
fi

echo "install-test-deps: done"
