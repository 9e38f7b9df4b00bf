#!/usr/bin/env bash
# A development PKI for mutual TLS between marketplace and recommendations,
# made with openssl as in the tutorial's "Securing Channels":
#   ca.pem, ca.key                        the development CA
#   recommendations.pem, .key             server certificate for "recommendations",
#                                         "localhost" and 127.0.0.1 (serverAuth only:
#                                         it is no client identity)
#   marketplace.pem, .key                 client certificate for marketplace (clientAuth)
# Usage: scripts/gen-certs.sh [DIR]   (default: certs/, which .gitignore keeps out of git)
#
# Run again on the same DIR, it renews the two certificates with the CA
# already there (a new CA only when DIR has none), each file replaced whole
# by a rename: running services take them without a restart (docs/tls.md).
#
# For development only: the keys are not encrypted, and are made readable by
# the containers' non-root user. Real deployments get their certificates
# from their own CA (see docs/tls.md).
set -euo pipefail

dir=${1:-certs}
days=${CERT_DAYS:-365}
mkdir -p "$dir"
cd "$dir"
work=$(mktemp -d .gen-certs.XXXXXX)
trap 'rm -rf "$work"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ -f ca.pem && -f ca.key ]]; then
    echo "renewing with the CA in $(pwd)"
else
    key "$work/ca.key"
    openssl req -x509 -new -key "$work/ca.key" -out "$work/ca.pem" -days "$days" \
        -subj "/O=Online Books For You/CN=Online Books For You development CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    chmod 0600 "$work/ca.key"
    mv "$work/ca.key" ca.key
    chmod 0644 "$work/ca.pem"
    mv "$work/ca.pem" ca.pem
fi

issue() { # name, extensions
    key "$work/$1.key"
    openssl req -new -key "$work/$1.key" -out "$work/$1.csr" -subj "/O=Online Books For You/CN=$1"
    openssl x509 -req -in "$work/$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -CAserial "$work/ca.srl" -out "$work/$1.pem" -days "$days" \
        -extfile <(printf '%s\n' "$2" "basicConstraints=CA:FALSE") 2>/dev/null
    # The containers run as uid 65532 and read these through a bind mount.
    chmod 0644 "$work/$1.pem" "$work/$1.key"
    # Whole files, by renames, the key and its certificate one right after
    # the other: a reader sees the old pair or the new one.
    mv "$work/$1.key" "$1.key"
    mv "$work/$1.pem" "$1.pem"
}
issue recommendations "subjectAltName=DNS:recommendations,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue marketplace "subjectAltName=DNS:marketplace
extendedKeyUsage=clientAuth"

echo "certificates in $(pwd): ca.pem, recommendations.{pem,key}, marketplace.{pem,key}"
