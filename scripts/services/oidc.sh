# shellcheck shell=bash
# Sourced by scripts/start-services.sh (which sets -euo pipefail, $root and
# $env_file): a real OpenID provider for crates/oidc's tests.
#   IdentityPython's idpyoidc (PyPI, pinned) in a small Flask app,
#   scripts/services/oidc_provider.py, on 127.0.0.1:$BERTH_TEST_OIDC_PORT.
# Users, passwords and clients: scripts/services/oidc/*.json.
# Idempotent: a provider already answering is left running. Never `exit`s on
# success (it is sourced).

OIDC_PORT="${BERTH_TEST_OIDC_PORT:-9100}"
OIDC_ISSUER="http://127.0.0.1:$OIDC_PORT"
oidc_dir="$root/oidc"
oidc_src="$PWD/scripts/services"
mkdir -p "$oidc_dir"

# The provider library and the versions it was tested with. pyOpenSSL is
# pinned to a release that accepts the cryptography already installed here
# (a newer one would upgrade cryptography under other tools).
OIDC_PY_PACKAGES=(idpyoidc==5.0.0 cryptojwt==1.11.0 pyOpenSSL==26.2.0 filelock==4.3.1 Flask==3.1.3)

oidc_py_ok() {
    python3 - "${OIDC_PY_PACKAGES[@]}" << 'EOF' 2> /dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
import idpyoidc.server, flask  # noqa: E401,F401
EOF
}

if ! oidc_py_ok; then
    echo "start-services: installing ${OIDC_PY_PACKAGES[*]}"
    oidc_pip_args=(install --disable-pip-version-check --no-input "${OIDC_PY_PACKAGES[@]}")
    # Debian's system python refuses plain pip installs (PEP 668); a pyenv
    # or venv python does not know the flag.
    if python3 -m pip install --help 2> /dev/null | grep -q -- --break-system-packages; then
        oidc_pip_args+=(--break-system-packages)
    fi
    python3 -m pip "${oidc_pip_args[@]}"
    if ! oidc_py_ok; then
        echo "start-services: idpyoidc did not install; see the pip output above" >&2
        exit 1
    fi
fi

oidc_answers() {
    python3 - "$OIDC_ISSUER" << 'EOF' 2> /dev/null
import json, sys, urllib.request
issuer = sys.argv[1]
with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=2) as r:
    sys.exit(0 if json.load(r).get("issuer") == issuer else 1)
EOF
}

if ! oidc_answers; then
    if (exec 3<> "/dev/tcp/127.0.0.1/$OIDC_PORT") 2> /dev/null; then
        echo "start-services: 127.0.0.1:$OIDC_PORT is taken by something that is not the test OIDC provider" >&2
        exit 1
    fi
    # Keys are regenerated on each fresh start, like the other throw-away data.
    rm -rf "$oidc_dir/state"
    # setsid: keep it running after this script and its caller's job end.
    setsid python3 "$oidc_src/oidc_provider.py" --port "$OIDC_PORT" \
        --state-dir "$oidc_dir/state" > "$oidc_dir/provider.log" 2>&1 < /dev/null &
    echo $! > "$oidc_dir/provider.pid"
    for _ in $(seq 1 150); do
        if oidc_answers; then break; fi
        sleep 0.2
    done
    if ! oidc_answers; then
        echo "start-services: the OIDC provider did not start; see $oidc_dir/provider.log" >&2
        exit 1
    fi
fi
{
    echo "BERTH_TEST_OIDC_ISSUER=$OIDC_ISSUER"
    # The relying party for browser login (code flow + PKCE, refresh).
    echo "BERTH_TEST_OIDC_CLIENT_ID=berth"
    echo "BERTH_TEST_OIDC_CLIENT_SECRET=berth-test-secret"
    echo "BERTH_TEST_OIDC_REDIRECT_URL=http://127.0.0.1:5999/api/v1/auth/oidc/callback"
    # Users: dana is in registry-admins and team-a, erin only in team-a.
    echo "BERTH_TEST_OIDC_ADMIN_USER=dana"
    echo "BERTH_TEST_OIDC_ADMIN_PASSWORD=danapass"
    echo "BERTH_TEST_OIDC_USER=erin"
    echo "BERTH_TEST_OIDC_USER_PASSWORD=erinpass"
    # Workload identity: a CI client whose ID tokens (aud=ci-pipeline) carry
    # repository/ref/workflow claims; ci-main is team-a/app, ci-fork is
    # mallory/app. ci-expired issues ID tokens that expired an hour ago.
    echo "BERTH_TEST_OIDC_CI_CLIENT_ID=ci-pipeline"
    echo "BERTH_TEST_OIDC_CI_CLIENT_SECRET=ci-pipeline-secret"
    echo "BERTH_TEST_OIDC_CI_EXPIRED_CLIENT_ID=ci-expired"
    echo "BERTH_TEST_OIDC_CI_EXPIRED_CLIENT_SECRET=ci-expired-secret"
    echo "BERTH_TEST_OIDC_CI_REDIRECT_URL=http://127.0.0.1:5999/ci/callback"
    echo "BERTH_TEST_OIDC_CI_USER=ci-main"
    echo "BERTH_TEST_OIDC_CI_PASSWORD=ci-mainpass"
    echo "BERTH_TEST_OIDC_CI_FORK_USER=ci-fork"
    echo "BERTH_TEST_OIDC_CI_FORK_PASSWORD=ci-forkpass"
} >> "$env_file"
echo "start-services: OIDC provider (idpyoidc) on $OIDC_ISSUER"
