#!/usr/bin/env bash
# bench/proxy.sh — Tandem beside HAProxy and nginx, the same two backends behind each.
#
# Run as root (a network namespace, RLIMIT_NOFILE, apt-get for missing packages):
#
#   bench/proxy.sh                       # everything, BENCH_SECONDS=10 per case and proxy
#   BENCH_SECONDS=3 bench/proxy.sh       # a quick run
#   BENCH_CASES="http1 tcp" BENCH_PROXIES="tandem haproxy" bench/proxy.sh
#
# What it does, in a fresh network namespace (unique name, deleted on exit) so that it can use
# fixed loopback ports and collide with nothing on the host:
#   - two identical nginx backends (127.0.0.1:18081, :18082) serving /small (100 B),
#     /64k (65,536 B) and /big (BENCH_TCP_MIB MiB, for TCP mode);
#   - one proxy at a time on the same ports: HTTP 127.0.0.1:8080, HTTPS (TLS 1.3, ALPN h2 and
#     http/1.1, one ECDSA P-256 certificate made here) 127.0.0.1:8443, TCP 127.0.0.1:8081;
#   - per case and proxy: a warm-up, then the measured run; the proxy's CPU time is utime+stime
#     from /proc/PID/stat summed over the proxy's processes (all their threads), read before
#     and after the measured run.
#
# Fairness (docs/performance.md, "Proxy comparison", says why):
#   - the proxy runs on CPU BENCH_PROXY_CPU (default 1) with one worker: tandemd one runtime
#     worker (taskset; TOKIO_WORKER_THREADS=1), HAProxy `nbthread 1`, nginx
#     `worker_processes 1` (its master's CPU is counted too); clients and backends run on
#     BENCH_CLIENT_CPU (default 0);
#   - TLS 1.3 only, the same certificate and suites, X25519 then P-256; access logs off;
#     keep-alive to the backends (HAProxy's default reuse, nginx `proxy_http_version 1.1` +
#     upstream `keepalive`, Tandem's pool); X-Forwarded-For added by all three; no health
#     checks anywhere; TCP mode with splice in HAProxy (`option splice-request/response`)
#     and in Tandem (its default); nginx's stream module copies.
#
# Every process it starts is stopped by PID on exit (also on Ctrl-C); nothing is killed by
# name. The output is also written to build/bench/proxy-DATE.txt (with tandemd's profiles).
#
# Settings (environment):
#   BENCH_SECONDS=10       measured seconds per case and proxy
#   BENCH_WARMUP=2         warm-up seconds before each measurement
#   BENCH_REPEAT=1         runs per case and proxy, interleaved; the ratio uses the medians
#   BENCH_PROXIES="tandem haproxy nginx"
#   BENCH_CASES="http1 http1_64k h2 https tls_resume tls_handshake tcp idle"
#   BENCH_CONNS=64         wrk connections (HTTP/1.1 and HTTPS keep-alive)
#   BENCH_H2_CONNS=16 BENCH_H2_STREAMS=16   h2load connections and streams per connection
#   BENCH_TLS_CONNS=32     concurrent connections of the handshake client
#   BENCH_TCP_STREAMS=2 BENCH_TCP_MIB=256   parallel curl downloads through TCP mode, file size
#   BENCH_IDLE_CONNS=10000 idle keep-alive clients for the memory figure
#   BENCH_PROXY_CPU=1 BENCH_CLIENT_CPU=0    CPU placement (set BENCH_PROXY_CPU=all to unpin)
#   BENCH_PROFILE=auto     perf profile of tandemd for each case whose ratio is below 1.0
#                          (1: every case, 0: none)
#   BENCH_PERF_ARGS="-F 999 -g"   perf record options (e.g. "-F 499 --call-graph dwarf,16384"
#                          for callers in tandemd, which has no frame pointers)
#   BENCH_BUILD=1          build tandemd and the load clients in release first
#   BENCH_OUT=build/bench  where the output and the profiles are kept
#   BENCH_TANDEM_REV       the source revision to print for tandemd when it was not built
#                          from this tree (with CARGO_TARGET_DIR and BENCH_BUILD=0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/proxy.sh"
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_PROXIES=${BENCH_PROXIES:-"tandem haproxy nginx"}
BENCH_CASES=${BENCH_CASES:-"http1 http1_64k h2 https tls_resume tls_handshake tcp idle"}
BENCH_CONNS=${BENCH_CONNS:-64}
BENCH_H2_CONNS=${BENCH_H2_CONNS:-16}
BENCH_H2_STREAMS=${BENCH_H2_STREAMS:-16}
BENCH_TLS_CONNS=${BENCH_TLS_CONNS:-32}
BENCH_TCP_STREAMS=${BENCH_TCP_STREAMS:-2}
BENCH_TCP_MIB=${BENCH_TCP_MIB:-256}
BENCH_IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
BENCH_PROXY_CPU=${BENCH_PROXY_CPU:-1}
BENCH_CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
BENCH_PROFILE=${BENCH_PROFILE:-auto}
BENCH_REPEAT=${BENCH_REPEAT:-1}
BENCH_PERF_ARGS=${BENCH_PERF_ARGS:-"-F 999 -g"}
BENCH_BUILD=${BENCH_BUILD:-1}
BENCH_OUT=${BENCH_OUT:-$ROOT/build/bench}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
export BENCH_SECONDS BENCH_WARMUP BENCH_PROXIES BENCH_CASES BENCH_CONNS BENCH_H2_CONNS \
    BENCH_H2_STREAMS BENCH_TLS_CONNS BENCH_TCP_STREAMS BENCH_TCP_MIB BENCH_IDLE_CONNS \
    BENCH_PROXY_CPU BENCH_CLIENT_CPU BENCH_PROFILE BENCH_REPEAT BENCH_PERF_ARGS BENCH_OUT BIN

# ---------------------------------------------------------------------------------------------
# Outside the namespace: packages, build, namespace, then this script again inside it.
# ---------------------------------------------------------------------------------------------
if [[ -z "${TANDEM_BENCH_NETNS:-}" ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "bench/proxy.sh: run as root (network namespace, RLIMIT_NOFILE, apt-get)" >&2
        exit 1
    fi
    need=()
    command -v haproxy >/dev/null || need+=(haproxy)
    command -v nginx >/dev/null || need+=(nginx-light)
    if [[ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]] &&
        ! { command -v nginx >/dev/null && nginx -V 2>&1 | grep -q -- '--with-stream '; }; then
        need+=(libnginx-mod-stream)
    fi
    command -v wrk >/dev/null || need+=(wrk)
    command -v h2load >/dev/null || need+=(nghttp2-client)
    command -v curl >/dev/null || need+=(curl)
    command -v openssl >/dev/null || need+=(openssl)
    command -v ip >/dev/null || need+=(iproute2)
    command -v taskset >/dev/null || need+=(util-linux)
    if [[ $BENCH_PROFILE != 0 ]] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
    if ((${#need[@]})); then
        echo "installing: ${need[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    fi
    if [[ $BENCH_BUILD == 1 ]]; then
        echo "building tandemd and the load clients (release)..." >&2
        (cd "$ROOT" && cargo build --release --quiet -p tandem -p tandem-bench --bins)
    fi
    for b in tandemd tls-handshakes idle-clients; do
        [[ -x $BIN/$b ]] || { echo "missing $BIN/$b (BENCH_BUILD=1 builds it)" >&2; exit 1; }
    done
    mkdir -p "$BENCH_OUT"
    LOG="$BENCH_OUT/proxy-$(date +%Y%m%d-%H%M%S).txt"
    NS="tandem-bench-$$-$RANDOM"
    ip netns add "$NS"
    trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
    trap 'exit 130' INT TERM
    set +e
    ip netns exec "$NS" env TANDEM_BENCH_NETNS="$NS" TANDEM_BENCH_LOG="$LOG" "$SELF" "$@" |
        tee "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    echo "(output kept in $LOG)" >&2
    exit "$rc"
fi

# ---------------------------------------------------------------------------------------------
# Inside the namespace.
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/tandem-bench.XXXXXX)
PIDS=()        # every process started here, stopped by PID on exit
PROXY_PID=     # the proxy running now

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n ${BENCH_KEEP_WORK:-} ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK"; }
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$*" >&2; }

# start NAME CPU CMD... — runs CMD in the background on CPU (or "all"), output to a log file;
# the PID is in LAST_PID and in PIDS.
cpus() { if [[ $1 == all ]]; then echo "0-$(($(nproc) - 1))"; else echo "$1"; fi; }
start() {
    local name=$1 cpu=$2
    shift 2
    # taskset execs the command: $! is the command's own PID.
    taskset -c "$(cpus "$cpu")" "$@" >"$WORK/logs/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# stop PID — SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

wait_port() {
    local port=$1 i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    log "nothing listens on 127.0.0.1:$port"
    return 1
}

# The PID and all its descendants (ps, not a glob over /proc: processes come and go while it
# runs, e.g. the curl loops of the tcp case).
tree_pids() {
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            out[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (p in parent) if (!(p in out) && (parent[p] in out)) { out[p] = 1; changed = 1 }
            }
            for (p in out) print p
        }'
}

# CPU seconds (utime + stime of all threads, from /proc/PID/stat) of a process tree.
cpu_seconds() {
    local p line f ticks=0
    for p in $(tree_pids "$1"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -r -a f <<<"${line##*) }"   # f[0] = state, f[11] = utime, f[12] = stime
        ticks=$((ticks + f[11] + f[12]))
    done
    calc "$ticks / $(getconf CLK_TCK)" 3
}

# Open file descriptors of a process tree.
fd_count() {
    local p fds n=0
    for p in $(tree_pids "$1"); do
        fds=(/proc/"$p"/fd/*)
        [[ -e ${fds[0]} ]] && n=$((n + ${#fds[@]}))
    done
    echo "$n"
}

# RSS in KiB of a process tree.
rss_kb() {
    local p kb n=0
    for p in $(tree_pids "$1"); do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
        n=$((n + ${kb:-0}))
    done
    echo "$n"
}

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Setup: namespace, files, certificate, backends.
# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/logs" "$WORK/www" "$WORK/nginx-proxy" "$WORK/backend1" "$WORK/backend2"
ip link set lo up
sysctl -q -w net.ipv4.ip_local_port_range="10000 65000"
sysctl -q -w net.ipv4.tcp_tw_reuse=1
sysctl -q -w net.core.somaxconn=65535
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)   # every process started here inherits it (20,000 on the build machines)
if ((NOFILE < BENCH_IDLE_CONNS + 1000)); then
    echo "RLIMIT_NOFILE is $NOFILE: too low for BENCH_IDLE_CONNS=$BENCH_IDLE_CONNS" >&2
    exit 1
fi
# HAProxy sizes its FD needs as 2 × maxconn; its maxconn must hold the idle clients.
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2 > BENCH_IDLE_CONNS + 500 ? (NOFILE - 200) / 2 : BENCH_IDLE_CONNS + 500))

head -c 99 /dev/zero | tr '\0' 'x' >"$WORK/www/small"
echo >>"$WORK/www/small"                                   # 100 bytes
head -c 65536 /dev/urandom >"$WORK/www/64k"
head -c $((BENCH_TCP_MIB * 1024 * 1024)) /dev/urandom >"$WORK/www/big"
echo ok >"$WORK/www/index.html"

openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -out "$WORK/key.pem"
openssl req -x509 -new -key "$WORK/key.pem" -subj "/CN=bench.local" -days 30 \
    -addext "subjectAltName=DNS:bench.local,DNS:localhost,IP:127.0.0.1" \
    -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

TLS13_SUITES="TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
STREAM_MODULE=
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] &&
    STREAM_MODULE="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"

for n in 1 2; do
    cat >"$WORK/backend$n/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $WORK/backend$n/nginx.pid;
error_log $WORK/backend$n/error.log warn;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $WORK/backend$n/body;
    server {
        listen 127.0.0.1:1808$n backlog=65535;
        root $WORK/www;
    }
}
EOF
    start "backend$n" "$BENCH_CLIENT_CPU" nginx -c "$WORK/backend$n/nginx.conf" -p "$WORK/backend$n/" \
        -e "$WORK/backend$n/error.log"
done
wait_port 18081
wait_port 18082

# --- Tandem -------------------------------------------------------------------------------
cat >"$WORK/tandem.yaml" <<EOF
schema: 1
node:
  name: bench
  management:
    listen: 127.0.0.1:9443
shared:
  certificates:
    - { name: bench, cert_file: $WORK/cert.pem, key_file: $WORK/key.pem }
  services:
    - { name: http, listen: 127.0.0.1:8080, protocol: http, pool: web, access_log: false }
    - name: https
      listen: 127.0.0.1:8443
      protocol: https
      pool: web
      access_log: false
      tls: { certificates: [bench], min_version: "1.3", http2: true }
    - { name: tcp, listen: 127.0.0.1:8081, protocol: tcp, pool: web-tcp, access_log: false }
  pools:
    - name: web
      algorithm: round_robin
      servers:
        - { id: b1, address: 127.0.0.1:18081 }
        - { id: b2, address: 127.0.0.1:18082 }
    - name: web-tcp
      algorithm: round_robin
      servers:
        - { id: b1, address: 127.0.0.1:18081 }
        - { id: b2, address: 127.0.0.1:18082 }
EOF

# --- HAProxy --------------------------------------------------------------------------------
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
    ulimit-n $NOFILE
    no strict-limits
    ssl-default-bind-ciphersuites $TLS13_SUITES
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-curves X25519:P-256
defaults
    mode http
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    maxconn $HAPROXY_MAXCONN
frontend http
    bind 127.0.0.1:8080
    default_backend web
frontend https
    bind 127.0.0.1:8443 ssl crt $WORK/haproxy.pem alpn h2,http/1.1
    default_backend web
backend web
    option forwardfor
    balance roundrobin
    server b1 127.0.0.1:18081
    server b2 127.0.0.1:18082
frontend tcp
    mode tcp
    bind 127.0.0.1:8081
    option splice-request
    option splice-response
    default_backend web-tcp
backend web-tcp
    mode tcp
    balance roundrobin
    option splice-request
    option splice-response
    server b1 127.0.0.1:18081
    server b2 127.0.0.1:18082
EOF

# --- nginx as a reverse proxy ---------------------------------------------------------------
cat >"$WORK/nginx-proxy/nginx.conf" <<EOF
$STREAM_MODULE
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx-proxy/nginx.pid;
error_log $WORK/nginx-proxy/error.log warn;
events { worker_connections $NOFILE; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path $WORK/nginx-proxy/body;
    proxy_temp_path $WORK/nginx-proxy/proxy;
    proxy_buffer_size 16k;
    proxy_buffers 8 16k;
    upstream web {
        server 127.0.0.1:18081;
        server 127.0.0.1:18082;
        keepalive 256;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites $TLS13_SUITES;
    ssl_ecdh_curve X25519:prime256v1;
    ssl_session_tickets on;
    server {
        listen 127.0.0.1:8080 backlog=65535;
        listen 127.0.0.1:8443 ssl http2 backlog=65535;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
stream {
    upstream web-tcp {
        server 127.0.0.1:18081;
        server 127.0.0.1:18082;
    }
    server {
        listen 127.0.0.1:8081 backlog=65535;
        proxy_pass web-tcp;
    }
}
EOF

start_proxy() {
    local name=$1 cpu=$BENCH_PROXY_CPU
    case $name in
    tandem)
        rm -rf "$WORK/tandem-state"
        mkdir -p "$WORK/tandem-state"
        local threads=()
        [[ $cpu != all ]] && threads=(env TOKIO_WORKER_THREADS=1)
        start tandem "$cpu" "${threads[@]}" "$BIN/tandemd" --config "$WORK/tandem.yaml" \
            --state-dir "$WORK/tandem-state" --control-socket "$WORK/tandem-state/tandemd.sock" \
            --shutdown-grace 1s
        ;;
    haproxy)
        local cfg=$WORK/haproxy.cfg
        if [[ $cpu == all ]]; then
            sed "s/nbthread 1/nbthread $(nproc)/" "$WORK/haproxy.cfg" >"$WORK/haproxy-all.cfg"
            cfg=$WORK/haproxy-all.cfg
        fi
        start haproxy "$cpu" haproxy -db -f "$cfg"
        ;;
    nginx)
        local cfg=$WORK/nginx-proxy/nginx.conf
        if [[ $cpu == all ]]; then
            sed "s/worker_processes 1/worker_processes $(nproc)/" "$cfg" >"$WORK/nginx-proxy/all.conf"
            cfg=$WORK/nginx-proxy/all.conf
        fi
        start nginx "$cpu" nginx -c "$cfg" -p "$WORK/nginx-proxy/" -e "$WORK/nginx-proxy/error.log"
        ;;
    esac
    PROXY_PID=$LAST_PID
    if ! { wait_port 8080 && wait_port 8443 && wait_port 8081; }; then
        log "$name did not start:"
        tail -20 "$WORK/logs/$name.log" >&2
        return 1
    fi
    sleep 0.3
}

stop_proxy() {
    [[ -n $PROXY_PID ]] && stop "$PROXY_PID"
    PROXY_PID=
}

# client CMD... — a load client on the client CPU. Started in the background and waited for:
# `wait` returns at once on Ctrl-C (a foreground child would delay the trap until it ends),
# and the client is then stopped by PID with everything else.
client() {
    local pid rc=0
    taskset -c "$(cpus "$BENCH_CLIENT_CPU")" "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Clients. Each run_* sets REQS (requests, or bytes for tcp), RATE, P99 (ms), ERRS, NOTE.
# ---------------------------------------------------------------------------------------------
to_ms() { # wrk's "3.21ms" / "812.00us" / "1.02s" / "2.00m"
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else printf "nan" }'
}

run_wrk() { # URL SECONDS
    local out=$WORK/wrk.out
    client wrk -t1 -c"$BENCH_CONNS" -d"$2"s --latency "$1" >"$out" 2>&1 || true
    REQS=$(awk '/requests in/ { print $1 }' "$out")
    RATE=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    local non2xx sock
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    sock=$(awk '/Socket errors:/ { gsub(/[^0-9 ]/, " "); n = split($0, a, " ")
        for (i = 1; i <= n; i++) t += a[i]; print t }' "$out")
    ERRS=$((${non2xx:-0} + ${sock:-0}))
    NOTE=
    [[ -n $REQS ]] || { REQS=0; RATE=0; NOTE="wrk: $(tail -1 "$out")"; }
}

run_h2load() { # URL SECONDS
    local out=$WORK/h2load.out logf=$WORK/h2load.log
    rm -f "$logf"
    client h2load -t1 -c"$BENCH_H2_CONNS" -m"$BENCH_H2_STREAMS" -D"$2" --log-file="$logf" "$1" \
        >"$out" 2>&1 || true
    REQS=$(awk '/^requests:/ { print $8 }' "$out")       # succeeded
    RATE=$(awk '/^finished in/ { gsub(",", ""); print $4 }' "$out")
    local failed non2xx proto
    failed=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$out")
    non2xx=$(awk '/^status codes:/ { gsub(",", ""); print $5 + $7 + $9 }' "$out")
    proto=$(awk -F': ' '/^Application protocol/ { print $2 }' "$out")
    ERRS=$((${failed:-0} + ${non2xx:-0}))
    NOTE=
    [[ $proto == h2 ]] || NOTE="protocol '${proto:-none}', not h2"
    if [[ -s $logf ]]; then
        P99=$(cut -f3 "$logf" | sort -n | awk '{ v[NR] = $1 } END {
            r = int(NR * 0.99); if (r < NR * 0.99) r++; if (r < 1) r = 1; printf "%.3f", v[r] / 1000 }')
    else
        P99=nan
    fi
    [[ -n $REQS ]] || { REQS=0; RATE=0; }
    # req/s over succeeded requests only
    RATE=$(awk -v r="$REQS" -v s="$2" 'BEGIN { printf "%.2f", r / s }')
}

run_tls() { # full|resume SECONDS
    local out=$WORK/tls.out
    client "$BIN/tls-handshakes" --mode "$1" -c "$BENCH_TLS_CONNS" -d "$2s" >"$out" 2>&1 || true
    local line
    line=$(grep '^handshakes=' "$out" || true)
    kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    REQS=$(kv handshakes)
    RATE=$(kv rate)
    P99=$(kv p99_ms)
    local e n
    e=$(kv errors)
    n=$(kv non_200)
    ERRS=$((${e:-0} + ${n:-0}))
    NOTE="full=$(kv full) resumed=$(kv resumed)"
    if [[ -z $REQS ]]; then REQS=0; RATE=0; P99=nan; ERRS=1; NOTE="$(tail -1 "$out")"; fi
}

run_tcp() { # SECONDS — parallel curl loops downloading /big through TCP mode
    local out=$WORK/tcp.out i pids=()
    : >"$out"
    for ((i = 0; i < BENCH_TCP_STREAMS; i++)); do
        # taskset execs bash: $! is the loop itself, which stops its curl when stopped.
        # shellcheck disable=SC2016 # expanded by the inner bash
        taskset -c "$(cpus "$BENCH_CLIENT_CPU")" bash -c '
            trap "kill \$c 2>/dev/null; exit 1" TERM INT
            end=$(( $(date +%s%N) + $1 * 1000000000 ))
            while (( $(date +%s%N) < end )); do
                curl -s -o /dev/null -w "%{size_download} %{time_total} %{http_code}\n" \
                    http://127.0.0.1:8081/big & c=$!
                wait $c || echo "0 0 000"
            done' tcp-loop "$1" >>"$out" &
        pids+=($!)
        PIDS+=($!)
    done
    local q
    for q in "${pids[@]}"; do wait "$q" || true; forget_pid "$q"; done
    local size=$((BENCH_TCP_MIB * 1024 * 1024))
    REQS=$(awk '{ t += $1 } END { print t + 0 }' "$out")
    ERRS=$(awk -v s="$size" '$1 != s || $3 != 200 { n++ } END { print n + 0 }' "$out")
    P99=$(awk '{ print $2 * 1000 }' "$out" | sort -n | awk '{ v[NR] = $1 } END {
        r = int(NR * 0.99); if (r < NR * 0.99) r++; if (r < 1) r = 1; printf "%.1f", v[r] }')
    NOTE="$(wc -l <"$out") downloads of $BENCH_TCP_MIB MiB"
}

# run_case CASE SECONDS — the client of a case, for SECONDS
run_case() {
    case $1 in
    http1) run_wrk http://127.0.0.1:8080/small "$2" ;;
    http1_64k) run_wrk http://127.0.0.1:8080/64k "$2" ;;
    https) run_wrk https://127.0.0.1:8443/small "$2" ;;
    h2) run_h2load https://127.0.0.1:8443/small "$2" ;;
    tls_handshake) run_tls full "$2" ;;
    tls_resume) run_tls resume "$2" ;;
    tcp) run_tcp "$2" ;;
    esac
}

describe() {
    case $1 in
    http1) echo "HTTP/1.1 keep-alive, 100 B body (wrk -t1 -c$BENCH_CONNS)" ;;
    http1_64k) echo "HTTP/1.1 keep-alive, 64 KiB body (wrk -t1 -c$BENCH_CONNS)" ;;
    https) echo "HTTPS keep-alive (TLS 1.3, HTTP/1.1), 100 B body (wrk -t1 -c$BENCH_CONNS)" ;;
    h2) echo "HTTP/2 over TLS 1.3 (ALPN h2), 100 B body (h2load -t1 -c$BENCH_H2_CONNS -m$BENCH_H2_STREAMS)" ;;
    tls_handshake) echo "new TLS 1.3 connections, full handshake, ECDSA P-256; one 100 B request each (tls-handshakes -c$BENCH_TLS_CONNS)" ;;
    tls_resume) echo "new TLS 1.3 connections resuming with a session ticket; one 100 B request each (tls-handshakes --mode resume -c$BENCH_TLS_CONNS)" ;;
    tcp) echo "TCP mode bulk transfer: $BENCH_TCP_STREAMS parallel curl downloads of $BENCH_TCP_MIB MiB" ;;
    idle) echo "RSS with $BENCH_IDLE_CONNS idle HTTP/1.1 keep-alive clients (one request each, then idle; read 7 s after the last is idle)" ;;
    esac
}

declare -A EFF RESULT V_EFF V_RATE V_P99

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# measure CASE PROXY [LABEL] — start the proxy, warm up, measure, stop; appends the run's
# figures to V_EFF/V_RATE/V_P99[case,proxy] when it is valid.
measure() {
    local c=$1 p=$2 label=${3:-$2} t0 t1 c0 c1 cpu wall eff util unit
    if ! start_proxy "$p"; then
        printf '  %-8s  did not start\n' "$p"
        stop_proxy
        return
    fi
    run_case "$c" "$BENCH_WARMUP" >/dev/null 2>&1 || true
    c0=$(cpu_seconds "$PROXY_PID")
    t0=$(now)
    run_case "$c" "$BENCH_SECONDS"
    t1=$(now)
    c1=$(cpu_seconds "$PROXY_PID")
    stop_proxy
    cpu=$(calc "$c1 - $c0" 3)
    wall=$(calc "$t1 - $t0" 3)
    util=$(calc "100 * $cpu / $wall" 0)
    local valid=1
    if [[ ${REQS:-0} == 0 ]] || awk -v e="${ERRS:-0}" -v r="$REQS" -v c="$c" \
        'BEGIN { exit !((c == "tcp") ? (e > 0) : (e > r / 100)) }'; then
        valid=0
    fi
    if [[ $c == tcp ]]; then
        RATE=$(calc "$REQS / $wall / 1048576" 1)   # MiB/s
        eff=$(calc "$REQS / ($cpu > 0 ? $cpu : 0.001) / 1048576" 1)
        unit="MiB/s"
    else
        eff=$(calc "$REQS / ($cpu > 0 ? $cpu : 0.001)" 0)
        unit=""
    fi
    local status=""
    if ((valid)); then
        V_EFF[$c,$p]+=" $eff"
        V_RATE[$c,$p]+=" $RATE"
        V_P99[$c,$p]+=" $P99"
    else
        status="INVALID: ${ERRS:-?} errors of ${REQS:-0}"
    fi
    printf '  %-8s %12s %10s %9s %6s%% %14s  %s\n' "$label" "$RATE$unit" "${P99}" "$cpu" "$util" \
        "$eff" "${status:+$status; }$NOTE"
}

measure_idle() { # PROXY
    local p=$1 r0 r1 i log=$WORK/logs/idle-$1.log
    if ! start_proxy "$p"; then
        printf '  %-8s  did not start\n' "$p"
        stop_proxy
        return
    fi
    for ((i = 0; i < 20; i++)); do curl -s -o /dev/null http://127.0.0.1:8080/small || true; done
    sleep 1
    r0=$(rss_kb "$PROXY_PID")
    rm -f "$log"   # (a log left by an earlier run would be read before the new one replaces it)
    start "idle-$p" "$BENCH_CLIENT_CPU" "$BIN/idle-clients" -n "$BENCH_IDLE_CONNS" --hold 10s
    local idle_pid=$LAST_PID
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready' "$log" 2>/dev/null && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    # Idle is a steady state: read 2 s after the last client is idle (shown in the notes) and
    # again at 7 s (the figure). A proxy that gives memory back once its clients idle (Tandem
    # parks them after a second of quiet) reaches it within a few seconds; one that keeps
    # what it holds shows the same figure twice.
    sleep 2
    local early
    early=$(rss_kb "$PROXY_PID")
    sleep 5
    r1=$(rss_kb "$PROXY_PID")
    local fds
    fds=$(fd_count "$PROXY_PID")
    wait "$idle_pid" 2>/dev/null || true
    forget_pid "$idle_pid"
    stop_proxy
    local ready still note=""
    ready=$(sed -n 's/^ready open=\([0-9]*\).*/\1/p' "$log")
    still=$(sed -n 's/^still_open=\([0-9]*\).*/\1/p' "$log")
    if ((${ready:-0} < BENCH_IDLE_CONNS * 9 / 10)); then
        printf '  %-8s %10s %10s %8s  INVALID: only %s connections opened; %s\n' "$p" "$r0" "$r1" "-" \
            "${ready:-0}" "$(grep -m1 'error' "$log" || true)"
        RESULT[idle,$p]=
        return
    fi
    if ((ready < BENCH_IDLE_CONNS || ${still:-0} < ready)); then
        note="$((BENCH_IDLE_CONNS - ready)) refused ($(sed -n 's/^first error: //p' "$log")), $((ready - ${still:-0})) closed by the proxy while held"
    fi
    local per
    per=$(calc "($r1 - $r0) / $ready" 1)   # per connection held
    note="${note:+$note; }$(calc "($early - $r0) / $ready" 1) KiB/conn at 2 s"
    RESULT[idle,$p]=$per
    printf '  %-8s %10s %10s %8s %8s %8s  %s\n' "$p" "$r0" "$r1" "$ready" "$fds" "$per" "$note"
}

# Syscalls counted in the kernel (perf stat on the syscall tracepoints) during a profile.
SYSCALLS="read write readv writev recvfrom sendto recvmsg sendmsg splice epoll_wait epoll_pwait
    epoll_ctl futex accept4 connect close shutdown setsockopt getsockopt ioctl sched_yield mmap
    munmap madvise brk getrandom"
syscall_events() {
    local s ev=raw_syscalls:sys_enter
    # `ip netns exec` gave us a fresh /sys: mount tracefs in it if needed (this mount namespace only)
    [[ -d /sys/kernel/tracing/events ]] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    for s in $SYSCALLS; do
        [[ -d /sys/kernel/tracing/events/syscalls/sys_enter_$s ||
            -d /sys/kernel/debug/tracing/events/syscalls/sys_enter_$s ]] &&
            ev+=",syscalls:sys_enter_$s"
    done
    echo "$ev"
}

# profile_case CASE — tandemd and HAProxy under the case's load again: where each spends its
# CPU (perf record, by shared object), syscalls per request (perf stat), and tandemd's top
# symbols. Reports and perf data are kept in BENCH_OUT.
profile_case() {
    local c=$1 p secs=$((BENCH_SECONDS > 4 ? BENCH_SECONDS - 2 : 2)) unit=request
    [[ $c == tcp ]] && unit=MiB
    local -A reqs
    for p in tandem haproxy; do
        [[ " $BENCH_PROXIES " == *" $p "* ]] || continue
        local data=$BENCH_OUT/perf-$c-$p.data
        start_proxy "$p" || continue
        run_case "$c" 1 >/dev/null 2>&1 || true
        # shellcheck disable=SC2086 # BENCH_PERF_ARGS is a list of options
        start "perf-record-$p" "$BENCH_CLIENT_CPU" perf record -q $BENCH_PERF_ARGS -e cpu-clock \
            -p "$PROXY_PID" -o "$data" -- sleep "$((secs + 2))"
        local rec=$LAST_PID
        start "perf-stat-$p" "$BENCH_CLIENT_CPU" perf stat -x, -o "$data.syscalls" \
            -e "$(syscall_events)" -p "$PROXY_PID" -- sleep "$((secs + 2))"
        local st=$LAST_PID
        sleep 0.3
        run_case "$c" "$secs" >/dev/null 2>&1 || true
        reqs[$p]=$REQS
        [[ $c == tcp ]] && reqs[$p]=$(calc "$REQS / 1048576" 3)
        wait "$rec" 2>/dev/null || true
        wait "$st" 2>/dev/null || true
        forget_pid "$rec"
        forget_pid "$st"
        stop_proxy
    done
    local report=$BENCH_OUT/profile-$c.txt
    {
        echo "--- profile, case $c (${secs}s of load; perf record $BENCH_PERF_ARGS -e cpu-clock, perf stat on syscall tracepoints)"
        for p in tandem haproxy; do
            [[ -e $BENCH_OUT/perf-$c-$p.data ]] || continue
            printf '  %-8s CPU by object: %s\n' "$p" "$(perf report -i "$BENCH_OUT/perf-$c-$p.data" --stdio \
                --no-children --sort dso -g none 2>/dev/null |
                awk '!/^#/ && NF && n++ < 6 { printf "%s %s  ", $2, $1 }' || true)"
        done
        printf '  syscalls per %s:\n  %-14s %10s %10s\n' "$unit" syscall tandem haproxy
        local -A count
        for p in tandem haproxy; do
            [[ -e $BENCH_OUT/perf-$c-$p.data.syscalls ]] || continue
            while IFS=, read -r n _ ev _; do
                [[ $ev == *sys_enter* ]] || continue
                ev=${ev#syscalls:sys_enter_}
                [[ $ev == raw_syscalls:sys_enter ]] && ev=all
                count[$ev,$p]=$n
            done <"$BENCH_OUT/perf-$c-$p.data.syscalls"
        done
        local ev
        for ev in all $SYSCALLS; do
            local t=${count[$ev,tandem]:-} h=${count[$ev,haproxy]:-}
            [[ $t =~ ^[0-9]+$ ]] || t=0
            [[ $h =~ ^[0-9]+$ ]] || h=0
            ((t + h > 0)) || continue
            printf '  %-14s %10s %10s\n' "$ev" \
                "$(calc "$t / (${reqs[tandem]:-0} > 0 ? ${reqs[tandem]:-1} : 1)" 2)" \
                "$(calc "$h / (${reqs[haproxy]:-0} > 0 ? ${reqs[haproxy]:-1} : 1)" 2)"
        done | sort -k2 -n -r
        if [[ -e $BENCH_OUT/perf-$c-tandem.data ]]; then
            echo "  tandemd top symbols (self time):"
            perf report -i "$BENCH_OUT/perf-$c-tandem.data" --stdio --no-children --sort dso,symbol \
                -g none 2>/dev/null | awk '!/^#/ && NF && n++ < 30 { sub(/ +- +- *$/, ""); print "  " $0 }' || true
        fi
    } >"$report"
    cat "$report"
}

# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
echo "# bench/proxy.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
echo "# Linux $(uname -r); $(haproxy -v | sed -n '1s/ - .*//p'); $(nginx -v 2>&1 | sed 's/nginx version: //'); $(wrk -v 2>&1 | sed -n '1s/ \[.*//p'); $(h2load --version | sed -n 1p)"
echo "# tandemd: $BIN/tandemd, built $(date -r "$BIN/tandemd" '+%Y-%m-%d %H:%M'), source ${BENCH_TANDEM_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')}"
echo "# proxy on CPU $BENCH_PROXY_CPU (1 worker each), clients and backends on CPU $BENCH_CLIENT_CPU; ${BENCH_SECONDS}s per case and proxy after a ${BENCH_WARMUP}s warm-up"
echo "# load at start: $(loadavg)"
for p in $BENCH_PROXIES; do
    if start_proxy "$p" 2>/dev/null; then
        neg=$(openssl s_client -connect 127.0.0.1:8443 -servername bench.local -alpn h2,http/1.1 \
            </dev/null 2>&1 | awk -F': ' '
            /^New, / { sub(/^New, /, ""); v = $0 }
            /^Server Temp Key/ { k = $2 } /^ALPN protocol/ { a = $2 }
            /^Peer signature type/ { s = $2 }
            END { print v ", key exchange " k ", signature " s ", ALPN " a }')
        echo "# $p TLS: $neg"
        stop_proxy
    fi
done

for c in $BENCH_CASES; do
    echo
    echo "== $c: $(describe "$c")"
    echo "   load: $(loadavg)"
    if [[ $c == idle ]]; then
        printf '  %-8s %10s %10s %8s %8s %8s  %s\n' proxy "RSS0 KiB" "RSS1 KiB" "held" "fds" "KiB/conn" "notes"
        for p in $BENCH_PROXIES; do measure_idle "$p"; done
        continue
    fi
    if [[ $c == tcp ]]; then
        printf '  %-8s %12s %10s %9s %7s %14s  %s\n' proxy "throughput" "p99 ms" "CPU s" "CPU" "MiB/CPU-s" "notes"
    else
        printf '  %-8s %12s %10s %9s %7s %14s  %s\n' proxy "req/s" "p99 ms" "CPU s" "CPU" "req/CPU-s" "notes"
    fi
    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        for p in $BENCH_PROXIES; do
            if ((BENCH_REPEAT > 1)); then measure "$c" "$p" "$p#$r"; else measure "$c" "$p"; fi
        done
    done
    for p in $BENCH_PROXIES; do
        EFF[$c,$p]=$(median <<<"${V_EFF[$c,$p]:-}")
        if ((BENCH_REPEAT > 1)) && [[ -n ${EFF[$c,$p]} ]]; then
            d=0
            [[ $c == tcp ]] && d=1
            EFF[$c,$p]=$(calc "${EFF[$c,$p]}" "$d")
            printf '  %-8s %12s %10s %9s %7s %14s  %s\n' "$p" "$(calc "$(median <<<"${V_RATE[$c,$p]}")" "$((d ? 1 : 2))")" \
                "$(calc "$(median <<<"${V_P99[$c,$p]}")" 3)" "" "" "${EFF[$c,$p]}" "median of $(wc -w <<<"${V_EFF[$c,$p]}") runs"
        fi
    done
done

ratio() { # CASE
    local t=${EFF[$1,tandem]:-} h=${EFF[$1,haproxy]:-}
    if [[ -n $t && -n $h ]] && awk -v h="$h" 'BEGIN { exit !(h > 0) }'; then
        calc "$t / $h" 2
    else
        echo n/a
    fi
}

declare -A RATIO
for c in http1 http1_64k h2 https tls_resume tls_handshake tcp; do RATIO[$c]=$(ratio "$c"); done

if [[ " $BENCH_CASES " == *" idle "* ]]; then
    echo
    echo "idle_kib_per_conn tandem=${RESULT[idle,tandem]:-n/a} haproxy=${RESULT[idle,haproxy]:-n/a} nginx=${RESULT[idle,nginx]:-n/a}"
fi
echo "https_ratio_vs_haproxy=${RATIO[https]}"
echo "load at end: $(loadavg)"

if [[ $BENCH_PROFILE != 0 && " $BENCH_PROXIES " == *" tandem "* ]] && command -v perf >/dev/null; then
    for c in $BENCH_CASES; do
        [[ $c == idle ]] && continue
        r=${RATIO[$c]:-n/a}
        if [[ $BENCH_PROFILE == 1 ]] || { [[ $r != n/a ]] && awk -v r="$r" 'BEGIN { exit !(r < 1.0) }'; }; then
            echo
            profile_case "$c"
        fi
    done
fi

echo
echo "ratio_vs_haproxy http1=${RATIO[http1]} http1_64k=${RATIO[http1_64k]} h2=${RATIO[h2]} tls_resume=${RATIO[tls_resume]} tls_handshake=${RATIO[tls_handshake]} tcp=${RATIO[tcp]}"
