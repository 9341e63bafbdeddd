#!/bin/sh
# Make (or reuse) a private CA and a broker certificate signed by it, for the TLS listeners.
#   make-certs.sh OUT_DIR NAME [NAME ...]     NAME: the broker's DNS names and/or IP addresses
# Writes OUT_DIR/ca.crt ca.key server.crt server.key. An existing ca.key is reused, so every broker
# of one installation shares one CA (give ca.crt to clients and bridges). Private keys are made
# 0600 (server.key 0640, group mosquitto when that group exists) and never belong in git.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR NAME [NAME ...]" >&2; exit 2; }
out=$1; shift
cn=$1
san=""
for name in "$@"; do
  case $name in
    *:*) entry="IP:$name" ;;            # IPv6
    *[!0-9.]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;              # IPv4
  esac
  san="${san:+$san,}$entry"
done
mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
    -subj "/CN=cnap-kiosk monitoring CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
  "$san" > "$out/server.ext"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -sha256 \
  -days 825 -extfile "$out/server.ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$out/server.ext" "$out/ca.srl"
chmod 0644 "$out/ca.crt" "$out/server.crt"
chmod 0640 "$out/server.key"
if getent group mosquitto >/dev/null 2>&1; then chgrp mosquitto "$out/server.key"; fi
echo "$out/server.crt for $san, signed by $out/ca.crt"
