# shellcheck shell=bash
# LDAP for crates/ldap's tests: OpenLDAP's slapd (Debian package) run by hand
# from a slapd.conf under $root/ldap, on 127.0.0.1:3890 (ldap://, StartTLS)
# and 127.0.0.1:6360 (ldaps://), with a private CA and a leaf certificate for
# 127.0.0.1 (rustls refuses a self-signed CA:TRUE certificate as the server's),
# the memberof overlay, and the fixture data in crates/ldap/tests/fixtures.
#
# Sourced by scripts/start-services.sh (which set -euo pipefail and defines
# $root and $env_file), so: no `exit` on success, no stray variables set
# outside the ldap_ prefix. Idempotent: a slapd already answering with the
# current fixture is left running; a changed fixture restarts it fresh.

LDAP_PORT="${BERTH_TEST_LDAP_PORT:-3890}"
LDAPS_PORT="${BERTH_TEST_LDAPS_PORT:-6360}"
ldap_dir="$root/ldap"
ldap_suffix="dc=example,dc=org"
ldap_rootdn="cn=admin,$ldap_suffix"
ldap_rootpw="berth-ldap-admin"
ldap_fixture="$PWD/crates/ldap/tests/fixtures/data.ldif"
ldap_url="ldap://127.0.0.1:$LDAP_PORT"

if ! command -v slapd > /dev/null && [ ! -x /usr/sbin/slapd ] \
    || ! command -v ldapadd > /dev/null; then
    # The package's postinst does not start a daemon in a container
    # (policy-rc.d); its own database under /var/lib/ldap is not used.
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils
fi
ldap_slapd="$(command -v slapd || echo /usr/sbin/slapd)"

# Answers an authenticated request as our rootdn: not just an open port.
ldap_answering() {
    ldapwhoami -x -o nettimeout=2 -H "$ldap_url" -D "$ldap_rootdn" -w "$ldap_rootpw" > /dev/null 2>&1
}

ldap_fixture_sum="$(sha256sum "$ldap_fixture" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if ldap_answering && [ "$(cat "$ldap_dir/loaded.sha256" 2> /dev/null)" != "$ldap_fixture_sum" ]; then
    echo "start-services: LDAP fixture or script changed; restarting slapd"
    if [ -s "$ldap_dir/slapd.pid" ]; then
        kill "$(cat "$ldap_dir/slapd.pid")" 2> /dev/null || true
    fi
    for _ in $(seq 1 100); do
        ldap_answering || break
        sleep 0.1
    done
fi

if ! ldap_answering; then
    # Throw-away directory, like the other services: a fresh start is the
    # fixture and nothing else.
    rm -rf "$ldap_dir"
    mkdir -p "$ldap_dir/db"

    # Private CA, then a leaf (CA:FALSE, SAN IP:127.0.0.1) signed by it.
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -keyout "$ldap_dir/ca.key" -out "$ldap_dir/ca.crt" \
        -subj "/CN=Berth test LDAP CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2> /dev/null
    openssl req -newkey rsa:2048 -nodes \
        -keyout "$ldap_dir/tls.key" -out "$ldap_dir/tls.csr" \
        -subj "/CN=127.0.0.1" 2> /dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$ldap_dir/leaf.ext"
    openssl x509 -req -in "$ldap_dir/tls.csr" -days 825 \
        -CA "$ldap_dir/ca.crt" -CAkey "$ldap_dir/ca.key" -CAcreateserial \
        -extfile "$ldap_dir/leaf.ext" -out "$ldap_dir/tls.crt" 2> /dev/null
    chmod 600 "$ldap_dir/ca.key" "$ldap_dir/tls.key"

    cat > "$ldap_dir/slapd.conf" << EOF
include   /etc/ldap/schema/core.schema
include   /etc/ldap/schema/cosine.schema
include   /etc/ldap/schema/inetorgperson.schema
include   /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile   $ldap_dir/slapd.pid
argsfile  $ldap_dir/slapd.args
TLSCACertificateFile  $ldap_dir/ca.crt
TLSCertificateFile    $ldap_dir/tls.crt
TLSCertificateKeyFile $ldap_dir/tls.key
sizelimit 500

database  mdb
maxsize   104857600
suffix    "$ldap_suffix"
rootdn    "$ldap_rootdn"
rootpw    $(slappasswd -s "$ldap_rootpw")
directory $ldap_dir/db
index     objectClass,uid,cn,member eq
overlay   memberof
# Users bind (auth on userPassword); only bound users search and read.
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by anonymous auth by * none
EOF
    slaptest -Q -u -f "$ldap_dir/slapd.conf"
    # -d 256 (stats): stays in the foreground and logs each operation.
    # setsid: keep it running after this script and its caller's job end.
    setsid "$ldap_slapd" -d 256 -f "$ldap_dir/slapd.conf" \
        -h "ldap://127.0.0.1:$LDAP_PORT/ ldaps://127.0.0.1:$LDAPS_PORT/" \
        > "$ldap_dir/slapd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
        ldap_answering && break
        sleep 0.1
    done
    if ! ldap_answering; then
        echo "start-services: slapd did not start; see $ldap_dir/slapd.log" >&2
        exit 1
    fi
    ldapadd -x -H "$ldap_url" -D "$ldap_rootdn" -w "$ldap_rootpw" \
        -f "$ldap_fixture" > "$ldap_dir/ldapadd.log"
    echo "$ldap_fixture_sum" > "$ldap_dir/loaded.sha256"
fi

{
    echo "BERTH_TEST_LDAP_URL=$ldap_url"
    echo "BERTH_TEST_LDAPS_URL=ldaps://127.0.0.1:$LDAPS_PORT"
    echo "BERTH_TEST_LDAP_CA=$ldap_dir/ca.crt"
    echo "BERTH_TEST_LDAP_BIND_DN=cn=reader,$ldap_suffix"
    echo "BERTH_TEST_LDAP_BIND_PASSWORD=readerpass"
    echo "BERTH_TEST_LDAP_BASE_DN=$ldap_suffix"
} >> "$env_file"
echo "start-services: LDAP (slapd) on 127.0.0.1:$LDAP_PORT (ldap, StartTLS) and :$LDAPS_PORT (ldaps)"
unset -f ldap_answering
