#!/usr/bin/env bash
# TLS interception benchmark, all in one run against one nginx HTTPS origin on loopback:
#  - handshake time through mailtap for a decrypted host seen for the first time (leaf minted)
#    and again (leaf cached), next to a blind CONNECT and a direct TLS handshake;
#  - bulk download throughput: direct TLS, through mailtap decrypted (TLS twice + HTTP/1.1
#    re-framing), and through a blind CONNECT tunnel — with interception on (the host is just
#    not listed) and with a second mailtap that has `[mitm] enabled = false` (the path as it was
#    before interception existed) — as ratios to direct.
#
#   benches/mitm.sh              # ~1 minute
#   BULK_MB=256 HOSTS=10 benches/mitm.sh
#
# Needs nginx, curl, openssl and python3 (installed with apt-get when missing). Everything
# listens on 127.0.0.1 only; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BULK_MB=${BULK_MB:-512}
HOSTS=${HOSTS:-20}

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --quiet
BIN=$PWD/target/release/mailtap
WORK=$(mktemp -d /tmp/mailtap-mitm-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run unprivileged
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=benches/ports.sh
. benches/ports.sh

# --- a private CA and the origin's certificate (ECDSA P-256, like mailtap's leaves) ---------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench origin CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench origin" \
  -keyout "$WORK/origin.key" -out "$WORK/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:mitm.bench.test,DNS:blind.bench.test,DNS:*.new.bench.test\nextendedKeyUsage=serverAuth\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/origin.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/origin.pem" 2>/dev/null

# --- origin: nginx over TLS --------------------------------------------------------------------
ORIGIN=$(free_port)
mkdir -p "$WORK/www" "$WORK/nginx"
truncate -s "${BULK_MB}M" "$WORK/www/bulk"
echo ok >"$WORK/www/small"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$ORIGIN ssl;
    ssl_certificate $WORK/origin.pem;
    ssl_certificate_key $WORK/origin.key;
    root $WORK/www;
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_port "$ORIGIN"

# --- mailtap: decrypts mitm.bench.test and *.new.bench.test, not blind.bench.test ------------
MT=$(free_port)
{
  echo "[paths]"
  echo "data = \"$WORK/data\""
  echo "logs = \"$WORK/logs\""
  echo "[builtin_smtp]"
  echo "listen = \"127.0.0.1:0\""
  echo "[resolve]"
  echo "\"mitm.bench.test\" = \"127.0.0.1\""
  echo "\"blind.bench.test\" = \"127.0.0.1\""
  for i in $(seq 1 "$HOSTS"); do echo "\"h$i.new.bench.test\" = \"127.0.0.1\""; done
  echo "[mitm]"
  echo "decrypt_hosts = [\"mitm.bench.test\", \"*.new.bench.test\"]"
  echo "extra_roots = [\"$WORK/ca.pem\"]"
} >"$WORK/mailtap.toml"
RUST_LOG=warn "$BIN" --config "$WORK/mailtap.toml" --listen "127.0.0.1:$MT" >"$WORK/mailtap.log" 2>&1 &
MT_PID=$!
PIDS+=("$MT_PID")
wait_port "$MT"
MT_OFF=$(free_port)
printf '[paths]\ndata = "%s"\nlogs = "%s"\n[builtin_smtp]\nlisten = "127.0.0.1:0"\n[resolve]\n"blind.bench.test" = "127.0.0.1"\n[mitm]\nenabled = false\n' \
  "$WORK/data-off" "$WORK/logs-off" >"$WORK/mailtap-off.toml"
RUST_LOG=warn "$BIN" --config "$WORK/mailtap-off.toml" --listen "127.0.0.1:$MT_OFF" >"$WORK/mailtap-off.log" 2>&1 &
PIDS+=($!)
wait_port "$MT_OFF"
MCA=$WORK/data/ca/mailtap-ca.pem
PROXY=(-x "http://127.0.0.1:$MT")
DIRECT_RESOLVE=(--resolve "mitm.bench.test:$ORIGIN:127.0.0.1")

# handshake URL TRUST [proxy...] → milliseconds from TCP connected to TLS established
# (through a proxy: the CONNECT exchange, mailtap's dial to the origin, and the TLS handshake).
handshake() {
  local url=$1 trust=$2
  shift 2
  curl -sf -o /dev/null --cacert "$trust" "$@" -w '%{time_connect} %{time_appconnect}\n' "$url" |
    awk '{printf "%.3f\n", ($2 - $1) * 1000}'
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

: >"$WORK/first"; : >"$WORK/cached"; : >"$WORK/blind"; : >"$WORK/direct"
for i in $(seq 1 "$HOSTS"); do
  handshake "https://h$i.new.bench.test:$ORIGIN/small" "$MCA" "${PROXY[@]}" >>"$WORK/first"
done
for i in $(seq 1 "$HOSTS"); do
  handshake "https://h$i.new.bench.test:$ORIGIN/small" "$MCA" "${PROXY[@]}" >>"$WORK/cached"
  handshake "https://blind.bench.test:$ORIGIN/small" "$WORK/ca.pem" "${PROXY[@]}" >>"$WORK/blind"
  handshake "https://mitm.bench.test:$ORIGIN/small" "$WORK/ca.pem" "${DIRECT_RESOLVE[@]}" >>"$WORK/direct"
done

# bulk MODE → MB/s (one download)
bulk() {
  case $1 in
    direct) curl -sf -o /dev/null -w '%{speed_download}' --cacert "$WORK/ca.pem" "${DIRECT_RESOLVE[@]}" "https://mitm.bench.test:$ORIGIN/bulk" ;;
    mitm) curl -sf -o /dev/null -w '%{speed_download}' --cacert "$MCA" "${PROXY[@]}" "https://mitm.bench.test:$ORIGIN/bulk" ;;
    blind) curl -sf -o /dev/null -w '%{speed_download}' --cacert "$WORK/ca.pem" "${PROXY[@]}" "https://blind.bench.test:$ORIGIN/bulk" ;;
    off) curl -sf -o /dev/null -w '%{speed_download}' --cacert "$WORK/ca.pem" -x "http://127.0.0.1:$MT_OFF" "https://blind.bench.test:$ORIGIN/bulk" ;;
  esac | awk '{printf "%.0f\n", $1 / 1e6}'
}
: >"$WORK/b_direct"; : >"$WORK/b_mitm"; : >"$WORK/b_blind"; : >"$WORK/b_off"
# Interleaved rounds in rotating order; the best of each mode counts (other work on the
# machine only ever slows a run down).
ROUNDS=${ROUNDS:-4}
ORDER=(direct mitm blind off)
for r in $(seq 0 $((ROUNDS - 1))); do
  for k in 0 1 2 3; do
    m=${ORDER[$(((k + r) % 4))]}
    bulk "$m" >>"$WORK/b_$m"
  done
done
best() { sort -n "$1" | tail -1; }
D=$(best "$WORK/b_direct"); M=$(best "$WORK/b_mitm"); B=$(best "$WORK/b_blind"); O=$(best "$WORK/b_off")

echo "mailtap TLS interception benchmark — $(nproc) cores, nginx TLS origin on loopback"
echo
echo "handshake, ms from TCP connected to TLS established (median of $HOSTS):"
printf '  %-44s %8s\n' "direct TLS to the origin" "$(median <"$WORK/direct")"
printf '  %-44s %8s\n' "blind CONNECT + TLS to the origin" "$(median <"$WORK/blind")"
printf '  %-44s %8s\n' "decrypted, new host (leaf minted)" "$(median <"$WORK/first")"
printf '  %-44s %8s\n' "decrypted, same host again (leaf cached)" "$(median <"$WORK/cached")"
echo
echo "bulk ${BULK_MB} MiB download over TLS, MB/s (best of $ROUNDS, interleaved):"
printf '  %-20s %8s %6s\n' direct "$D" 1.00
printf '  %-20s %8s %6s\n' "mailtap decrypted" "$M" "$(python3 -c "print(f'{$M/$D:.2f}')")"
printf '  %-20s %8s %6s\n' "mailtap blind" "$B" "$(python3 -c "print(f'{$B/$D:.2f}')")"
printf '  %-20s %8s %6s\n' "blind, mitm off" "$O" "$(python3 -c "print(f'{$O/$D:.2f}')")"
