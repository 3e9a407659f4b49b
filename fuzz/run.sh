#!/usr/bin/env bash
# Builds the fuzz targets (cargo fuzz, nightly) and runs each for SECONDS, seeded from
# fuzz/seeds/<target>. Usage: fuzz/run.sh SECONDS [TARGET...]   (default: every target)
#   CORPUS_ROOT=dir  where new corpus entries go (default: a temp dir, removed at the end;
#                    set it to fuzz/corpus to keep them between runs — not committed)
#   JOBS=n           targets run in parallel (default 1), each under `nice -n 19`
# Prints libFuzzer's last status line per target and fails if any target found a crash,
# timeout or out-of-memory input (saved under fuzz/artifacts/<target>/).
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
all=(form multipart json netease address rules smtp_reply smtp_command journal meta)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
jobs=${JOBS:-1}

dict_for() {
  case $1 in
    smtp_*) echo dict/smtp.dict ;;
    address) echo dict/address.dict ;;
    journal | meta) echo dict/json.dict ;;
    *) echo dict/http.dict ;;
  esac
}

# Release with debug assertions and overflow checks (cargo fuzz's default), AddressSanitizer.
nice -n 19 cargo +nightly fuzz build
bin=target/x86_64-unknown-linux-gnu/release

tmp=""
if [ -z "${CORPUS_ROOT:-}" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  CORPUS_ROOT=$tmp
fi
mkdir -p artifacts logs

run_one() {
  local t=$1 corpus="$CORPUS_ROOT/$1"
  mkdir -p "$corpus" "artifacts/$t"
  # -timeout: no input may take 10 s; -rss_limit_mb: a parser holding 2 GiB is a finding.
  nice -n 19 "$bin/$t" "$corpus" "seeds/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -dict="$(dict_for "$t")" -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1
}

status=0
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done

for t in "${targets[@]}"; do
  last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1 || true)
  execs=$(grep -E 'stat::number_of_executed_units' "logs/$t.log" | awk '{print $2}' || true)
  echo "fuzz $t: ${execs:-?} execs in ${secs}s; ${last:-no status line}"
  if grep -qE 'ERROR: libFuzzer|SUMMARY: libFuzzer|panicked' "logs/$t.log"; then
    echo "fuzz $t: FINDING — see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit "$status"
