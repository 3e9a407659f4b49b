#!/usr/bin/env bash
# Proxy pass-through benchmark: the same loads DIRECT and through mailtap in one run (and
# through squid and tinyproxy when they are installed), printed as ratios against DIRECT. The
# "splice-flr" row is a bare splice(2) CONNECT forwarder: the floor of what the extra hop costs.
#
#   benches/proxy.sh            # full run (~2 min)
#   DURATION=5 benches/proxy.sh # shorter wrk runs
#   BASE_BIN=/path/to/older/mailtap benches/proxy.sh  # also run an older build ("mt-base")
#   KEEP_LOGS=/tmp/logs benches/proxy.sh              # keep the proxies' logs
#
# Needs wrk, nginx and curl (installed with apt-get when missing) and python3. Everything
# listens on 127.0.0.1 only; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
# Two descriptors per tunnel in mailtap: by default stay under this machine's hard limit.
HARD_FDS=$(ulimit -Hn)
TUNNELS=${TUNNELS:-$(( (HARD_FDS - 200) / 2 < 10000 ? (HARD_FDS - 200) / 2 : 10000 ))}
BULK_MB=${BULK_MB:-512}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet
BIN=$PWD/target/release/mailtap
WORK=$(mktemp -d /tmp/mailtap-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run unprivileged
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/squid.pid" ] && kill "$(cat "$WORK/squid.pid")" 2>/dev/null || true
  sleep 0.5
  # KEEP_LOGS=DIR keeps the proxies' own logs (e.g. to see why one exited early).
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=benches/ports.sh
. benches/ports.sh

# --- origin: nginx serving 1 KiB and the bulk file -------------------------------------------
ORIGIN=$(free_port)
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 1024 /dev/urandom >"$WORK/www/1k"
truncate -s "${BULK_MB}M" "$WORK/www/bulk"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 30000; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$ORIGIN; root $WORK/www; }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_port "$ORIGIN"

# --- proxies ---------------------------------------------------------------------------------
MT=$(free_port)
# Data, transcripts and the built-in SMTP server's port stay out of the way of anything else.
cat >"$WORK/mailtap.toml" <<EOF
[paths]
data = "$WORK/mailtap/data"
logs = "$WORK/mailtap/logs"
[builtin_smtp]
listen = "127.0.0.1:0"
EOF
RUST_LOG=warn "$BIN" --config "$WORK/mailtap.toml" --listen "127.0.0.1:$MT" >"$WORK/mailtap.log" 2>&1 &
MT_PID=$!
PIDS+=("$MT_PID")
wait_port "$MT"

declare -A PROXY_PORT PROXY_PID
PROXIES=(mailtap)
PROXY_PORT[mailtap]=$MT
PROXY_PID[mailtap]=$MT_PID
if [ -n "${BASE_BIN:-}" ]; then
  MB=$(free_port)
  # Its own SMTP port and data directories, so that it does not collide with the build above.
  cat >"$WORK/mt-base.toml" <<EOF
[paths]
data = "$WORK/mt-base/data"
logs = "$WORK/mt-base/logs"
[builtin_smtp]
listen = "127.0.0.1:0"
EOF
  RUST_LOG=warn "$BASE_BIN" --config "$WORK/mt-base.toml" --listen "127.0.0.1:$MB" >"$WORK/mt-base.log" 2>&1 &
  PROXY_PID[mt-base]=$!
  PIDS+=("$!")
  wait_port "$MB"
  PROXIES+=(mt-base)
  PROXY_PORT[mt-base]=$MB
fi
if command -v squid >/dev/null; then
  SQ=$(free_port)
  mkdir -p "$WORK/squid"
  chmod 777 "$WORK/squid"
  cat >"$WORK/squid.conf" <<EOF
http_port 127.0.0.1:$SQ
http_access allow all
cache deny all
access_log none
cache_log $WORK/squid/cache.log
pid_filename $WORK/squid.pid
coredump_dir $WORK/squid
shutdown_lifetime 1 seconds
EOF
  squid -f "$WORK/squid.conf" -N >/dev/null 2>&1 &
  PIDS+=($!)
  if wait_port "$SQ"; then PROXIES+=(squid); PROXY_PORT[squid]=$SQ; fi
fi
if command -v tinyproxy >/dev/null; then
  TP=$(free_port)
  cat >"$WORK/tinyproxy.conf" <<EOF
Port $TP
Listen 127.0.0.1
Timeout 600
MaxClients 1000
LogLevel Critical
EOF
  tinyproxy -d -c "$WORK/tinyproxy.conf" >/dev/null 2>&1 &
  PIDS+=($!)
  if wait_port "$TP"; then PROXIES+=(tinyproxy); PROXY_PORT[tinyproxy]=$TP; fi
fi

cat >"$WORK/abs.lua" <<EOF
wrk.path = "http://127.0.0.1:$ORIGIN/1k"
wrk.headers["Host"] = "127.0.0.1:$ORIGIN"
EOF

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run_wrk URL [script] → "rps p99_us requests"
run_wrk() {
  local out
  out=$(wrk -t2 -c50 -d"${DURATION}s" --latency ${2:+-s "$2"} "$1")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "wrk saw errors for $1:" >&2
    echo "$out" >&2
    return 1
  fi
  local rps reqs p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}' <<<"$out")
  echo "$rps $p99 $reqs"
}

# bulk MODE PORT → MB/s (best of 3)
bulk() {
  local best=0 speed
  for _ in 1 2 3; do
    case $1 in
      direct) speed=$(curl -sf -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$ORIGIN/bulk") ;;
      plain) speed=$(curl -sf -o /dev/null -w '%{speed_download}' -x "http://127.0.0.1:$2" "http://127.0.0.1:$ORIGIN/bulk") ;;
      connect) speed=$(curl -sf -o /dev/null -w '%{speed_download}' -p -x "http://127.0.0.1:$2" "http://127.0.0.1:$ORIGIN/bulk") ;;
    esac
    best=$(python3 -c "print(max($best, $speed/1e6))")
  done
  printf '%.0f' "$best"
}

echo "mailtap proxy benchmark — $(nproc) cores, wrk -t2 -c50 -d${DURATION}s, 1 KiB file; ${BULK_MB} MiB bulk"
read -r D_RPS D_P99 _ < <(run_wrk "http://127.0.0.1:$ORIGIN/1k")
D_PLAIN=$(bulk direct)
printf '%-10s %10s %8s %10s %7s | %9s %6s | %9s %6s\n' proxy req/s ratio p99_us "" plainMB/s ratio conMB/s ratio
printf '%-10s %10.0f %8s %10.0f %7s | %9s %6s | %9s %6s\n' direct "$D_RPS" 1.00 "$D_P99" "" "$D_PLAIN" 1.00 "$D_PLAIN" 1.00

CPU_LINES=()
for p in "${PROXIES[@]}"; do
  port=${PROXY_PORT[$p]}
  pid=${PROXY_PID[$p]:-}
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  read -r RPS P99 REQS < <(run_wrk "http://127.0.0.1:$port/" "$WORK/abs.lua")
  if [ -n "$pid" ]; then
    c1=$(cpu_ticks "$pid")
    MT_CPU_US_REQ=$(python3 -c "print(round(($c1-$c0)*1e6/$TCK/$REQS, 1))")
    MT_RSS_SMALL=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
    c0=$(cpu_ticks "$pid")
  fi
  PLAIN=$(bulk plain "$port")
  CON=$(bulk connect "$port")
  if [ -n "$pid" ]; then
    c1=$(cpu_ticks "$pid")
    MT_CPU_S_GB=$(python3 -c "print(round(($c1-$c0)/$TCK/(6*$BULK_MB/1024), 2))")
    CPU_LINES+=("$p CPU: ${MT_CPU_US_REQ} µs per small request; ${MT_CPU_S_GB} CPU-s per GB bulk; peak RSS under the small-request load: ${MT_RSS_SMALL} MiB")
  fi
  printf '%-10s %10.0f %8.2f %10.0f %7s | %9s %6.2f | %9s %6.2f\n' "$p" "$RPS" \
    "$(python3 -c "print($RPS/$D_RPS)")" "$P99" "" "$PLAIN" "$(python3 -c "print($PLAIN/$D_PLAIN)")" \
    "$CON" "$(python3 -c "print($CON/$D_PLAIN)")"
done

# The floor for CONNECT: a bare splice(2) forwarder (benches/splice_floor.py) in the same run.
FLOOR=$(free_port)
python3 benches/splice_floor.py "$FLOOR" &
PIDS+=($!)
if wait_port "$FLOOR"; then
  FCON=$(bulk connect "$FLOOR")
  printf '%-10s %10s %8s %10s %7s | %9s %6s | %9s %6.2f\n' "splice-flr" - - - "" - - \
    "$FCON" "$(python3 -c "print($FCON/$D_PLAIN)")"
fi

echo
for line in "${CPU_LINES[@]}"; do echo "$line"; done

# --- idle CONNECT tunnels ----------------------------------------------------------------------
if ! kill -0 "$MT_PID" 2>/dev/null; then
  echo "mailtap (pid $MT_PID) exited before the idle-tunnel test; its log:" >&2
  tail -20 "$WORK/mailtap.log" >&2
  exit 1
fi
python3 benches/idle_tunnels.py serve >"$WORK/tunnel-port" &
PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$WORK/tunnel-port" ] && break; sleep 0.1; done
python3 benches/idle_tunnels.py clients "$MT" "$(cat "$WORK/tunnel-port")" "$MT_PID" "$TUNNELS"
echo "targets: small ≥ 0.45× direct, ≤ 40 µs CPU/request, p99 ≤ squid's; plain bulk ≥ 0.75×; CONNECT bulk ≥ 0.85×; RSS ≤ 30 MiB; 10,000 idle tunnels ≤ 150 MiB"
