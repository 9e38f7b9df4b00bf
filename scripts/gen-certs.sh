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
# For development only: the keys are not encrypted, and are made readable by
# the containers' non-root user. Real deployments get their certificates
# from their own CA (see docs/tls.md).
set -euo pipefail

dir=${1:-certs}
days=${CERT_DAYS:-365}
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days "$days" \
    -subj "/O=Online Books For You/CN=Online Books For You development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"

issue() { # name, extensions
    key "$1.key"
    openssl req -new -key "$1.key" -out "$1.csr" -subj "/O=Online Books For You/CN=$1"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out "$1.pem" -days "$days" -extfile <(printf '%s\n' "$2" "basicConstraints=CA:FALSE") 2>/dev/null
    rm -f "$1.csr"
}
issue recommendations "subjectAltName=DNS:recommendations,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue marketplace "subjectAltName=DNS:marketplace
extendedKeyUsage=clientAuth"
rm -f ca.srl

# The containers run as uid 65532 and read these through a bind mount.
chmod 0644 ./*.pem ./*.key
chmod 0600 ca.key
echo "certificates in $(pwd): ca.pem, recommendations.{pem,key}, marketplace.{pem,key}"
