#!/usr/bin/env bash
# The gateway figures in the README, reproducible: starts `hiegw serve` on a
# fresh data directory, sends N copies of a message over C connections with
# `hiegw send` (each waits for its ACK before the next), then waits until
# processing has drained and prints one line:
#
#   store=embedded conns=8 paused=0 msgs=20000 acks/s=… p50=… p99=… processed/s=… rss_idle_mb=… rss_peak_mb=…
#   cpu_us_per_msg_send=… cpu_us_per_msg_drain=…
#
# The last two are the gateway's own CPU time (user and system, from
# /proc) per message while sending and while draining what was left: with
# -p, receipt alone and processing alone. They depend less on what else the
# machine is doing than the rates do.
#
# usage: deployments/load.sh [-b BIN] [-n MESSAGES] [-c CONNECTIONS] [-p | -r] [-m FILE] [-d POSTGRES_DSN] [-P PATIENTS]
#   -p  pause processing while sending (receipt alone), resume and time the drain
#   -r  receipt alone, and stop there (no drain: processed/s and drain CPU are not measured)
#   -d  use PostgreSQL (a fresh schema named hiegw_load_<pid> is made and dropped)
#   -P  spread the copies over this many made-up patients (hiegw send --patients); without it every copy
#       is about the sample's one patient
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin/hiegw N=20000 C=8 PAUSE=0 MSG=testdata/hl7/adt_a01.hl7 DSN="" PATIENTS=0
RECEIPT=0
while getopts "b:n:c:prm:d:P:" o; do
  case $o in
    b) BIN=$OPTARG ;; n) N=$OPTARG ;; c) C=$OPTARG ;; p) PAUSE=1 ;; r) PAUSE=1 RECEIPT=1 ;; m) MSG=$OPTARG ;; d) DSN=$OPTARG ;; P) PATIENTS=$OPTARG ;;
    *) sed -n "2,$(( $(grep -n '^set -euo' "$0" | cut -d: -f1) - 1 ))p" "$0"; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 2; }

work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MLLP=127.0.0.1:$(port) HTTP=127.0.0.1:$(port) BROKER=127.0.0.1:$(port)
args=(serve --data-dir "$work/data" --mllp-addr "$MLLP" --http-addr "$HTTP" --broker-addr "$BROKER" --sftp-addr "")
store=embedded schema=""
if [ -n "$DSN" ]; then
  schema=hiegw_load_$$ store=postgres
  psql -q "$DSN" -c "CREATE SCHEMA $schema"
  sep='?'; [[ $DSN == *\?* ]] && sep='&'
  args+=(--postgres-dsn "${DSN}${sep}search_path=$schema")
fi
"$BIN" "${args[@]}" >"$work/log" 2>&1 &
gw=$!
cleanup() {
  kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null || true
  [ -n "$schema" ] && psql -q "$DSN" -c "SET client_min_messages = warning; DROP SCHEMA $schema CASCADE" || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$HTTP/readyz" >/dev/null || { cat "$work/log" >&2; exit 1; }
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$gw/status"; }
# cpu: the gateway's user+system time so far, in clock ticks.
cpu() { awk '{print $14+$15}' "/proc/$gw/stat"; }
ticks=$(getconf CLK_TCK)
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$gw/status"; }
sleep 2
idle=$(rss)
waiting() { curl -sf "http://$HTTP/api/v1/pipeline" | python3 -c 'import json,sys; print(json.load(sys.stdin)["waiting"])'; }
[ "$PAUSE" = 1 ] && curl -sf -XPOST "http://$HTTP/api/v1/pipeline/pause" >/dev/null
t0=$(date +%s.%N)
c0=$(cpu)
out=$("$BIN" send --addr "$MLLP" --repeat "$N" --connections "$C" --patients "$PATIENTS" --quiet "$MSG" 2>&1 | tail -1)
c1=$(cpu)
rate=$(sed -n 's/.* \([0-9]*\) messages\/s.*/\1/p' <<<"$out")
p50=$(sed -n 's/.*p50 \([^ ]*\) .*/\1/p' <<<"$out")
p99=$(sed -n 's/.*p99 \([^ ]*\) .*/\1/p' <<<"$out")
bad=$(sed -n 's/.*not accepted \([0-9]*\).*/\1/p' <<<"$out")
send_cpu=$(( (c1-c0)*1000000/ticks/N ))
if [ "$RECEIPT" = 1 ]; then
  echo "store=$store conns=$C receipt-only msgs=$N acks/s=$rate p50=$p50 p99=$p99 not_accepted=$bad" \
    "rss_idle_mb=$idle rss_peak_mb=$(hwm) cpu_us_per_msg_send=$send_cpu"
  exit 0
fi
[ "$PAUSE" = 1 ] && { t0=$(date +%s.%N); curl -sf -XPOST "http://$HTTP/api/v1/pipeline/resume" >/dev/null; }
while [ "$(waiting)" != 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
c2=$(cpu)
proc=$(python3 -c "print(int($N/($t1-$t0)))")
echo "store=$store conns=$C paused=$PAUSE msgs=$N patients=$PATIENTS acks/s=$rate p50=$p50 p99=$p99 not_accepted=$bad processed/s=$proc rss_idle_mb=$idle rss_peak_mb=$(hwm)" \
  "cpu_us_per_msg_send=$send_cpu cpu_us_per_msg_drain=$(( (c2-c1)*1000000/ticks/N ))"
