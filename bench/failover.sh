#!/usr/bin/env bash
# bench/failover.sh — what a failover costs a client: Tandem's pair beside keepalived.
#
# Run as root:
#
#   bench/failover.sh                     # everything (about 20 minutes; builds in release first)
#   FAILOVER_TRIALS=5 bench/failover.sh   # a quick run
#   bench/failover.sh --soak              # 10 minutes of wrk through the VIP at 10 ms adverts:
#                                         # no failover allowed (FAILOVER_SOAK_SECONDS=600)
#
# The soak places the two boxes as two machines would have them (on a machine of 2 CPUs or
# more): lb-b (the passive box) runs on the last CPU; lb-a, wrk and the web servers on the
# others. Receive packet steering (RPS) puts the kernel's processing of every frame lb-a sends
# and every frame lb-b receives on lb-b's CPU too — the work a switch and the other box's NIC
# do. Without it the bridge forwards lb-a's adverts on the CPU that wrk and lb-a saturate,
# where the kernel defers packet processing to ksoftirqd behind the load, and an advert reaches
# the idle box more than Master_Down_Interval late: a lab artefact, not the heartbeat waiting
# on the dataplane (docs/performance.md).
#
# The lab, in network namespaces named after this script's PID (removed on exit, also on
# Ctrl-C; every process is stopped by its PID):
#
#   client 10.0.0.1 ─┐
#   lb-a   10.0.0.2 ─┼─ bridge (own namespace, multicast snooping off)    VIP 10.0.0.100
#   lb-b   10.0.0.3 ─┤
#   web    10.0.0.11 (echo "a"), 10.0.0.12 (echo "b") ─┘
#
# The client (bench/src/bin/failover_probe.rs) sends a UDP probe every 5 ms to VIP:7000 and
# records every answer. lb-a's Tandem balances VIP:7000 to echo "a", lb-b's to echo "b" (the
# one place where the two boxes' configs differ, so that an answer names the box it came
# through). With keepalived in place of Tandem, each box runs its own UDP echo (lab-backend on
# 0.0.0.0:7000, named "a" or "b") and keepalived moves the VIP. lb-a has priority 200, lb-b 100.
#
# Per trial, the probe runs from before the event until well after it. The outage is the time
# between the last answer from the old box and the first answer from the new one, as the client
# received them; lost probes are those never answered.
#
#   crash      SIGKILL of the whole daemon (tandemd; keepalived's parent and VRRP child) and
#              `ip link set eth0 down` on lb-a in the same instant: lb-b takes over after
#              Master_Down_Interval. FAILOVER_TRIALS (20) per advert interval.
#   failback   the crashed lb-a comes back (daemon started, then its link up) and preempts;
#              lost probes counted. One after every Tandem crash trial.
#   handover   `tandemctl failover` on the active box, alternately; lost probes counted.
#              FAILOVER_TRIALS at 10 ms and at 100 ms adverts.
#   stop       keepalived's graceful stop (SIGTERM) of the master, for comparison.
#
# The last line:
#   failover_ms adv10=… adv20=… adv100=… adv1000=… keepalived_adv10=… handover_lost=… failback_lost=…
# (crash outage medians in ms; lost probes summed over every handover and failback trial).
# A crash trial whose client never reaches the new box is listed as FAILED before that line
# and left out of the medians; the run goes on.
#
# Settings (environment):
#   FAILOVER_TRIALS=20
#   FAILOVER_INTERVALS="10ms 20ms 100ms 1s"              Tandem crash trials
#   FAILOVER_KEEPALIVED_INTERVALS="10ms 100ms 1s"        keepalived crash and stop trials
#   FAILOVER_HANDOVER_INTERVALS="10ms 100ms"
#   FAILOVER_PROBE_INTERVAL=5ms
#   FAILOVER_SOAK_SECONDS=600  FAILOVER_SOAK_CONNS=64   (--soak)
#   FAILOVER_BUILD=1           build tandemd, tandemctl, lab-backend and failover_probe (release)
#   FAILOVER_OUT=build/bench   where the output and every trial's record are kept
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIALS=${FAILOVER_TRIALS:-20}
INTERVALS=${FAILOVER_INTERVALS-"10ms 20ms 100ms 1s"}
KA_INTERVALS=${FAILOVER_KEEPALIVED_INTERVALS-"10ms 100ms 1s"}
HANDOVER_INTERVALS=${FAILOVER_HANDOVER_INTERVALS-"10ms 100ms"}
PROBE_INTERVAL=${FAILOVER_PROBE_INTERVAL:-5ms}
SOAK_SECONDS=${FAILOVER_SOAK_SECONDS:-600}
SOAK_CONNS=${FAILOVER_SOAK_CONNS:-64}
BUILD=${FAILOVER_BUILD:-1}
OUT=${FAILOVER_OUT:-$ROOT/build/bench}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
MODE=crash
[[ ${1:-} == --soak ]] && MODE=soak

VIP=10.0.0.100
CLIENT=10.0.0.1
ADDR=([0]=10.0.0.2 [1]=10.0.0.3)
BOX=([0]=lb-a [1]=lb-b)
PRIO=([0]=200 [1]=100)
ECHO=([0]=10.0.0.11 [1]=10.0.0.12)
NAME=([0]=a [1]=b)

die() { echo "bench/failover.sh: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (network namespaces)"
need=()
for tool in ip keepalived; do command -v "$tool" >/dev/null || need+=("$tool"); done
[[ $MODE == soak ]] && ! command -v wrk >/dev/null && need+=(wrk)
((${#need[@]} == 0)) || die "missing ${need[*]} (apt-get install iproute2 keepalived wrk)"

if [[ $BUILD == 1 ]]; then
    echo "building tandemd, tandemctl, lab-backend and failover_probe (release)..." >&2
    (cd "$ROOT" && cargo build --release --quiet -p tandem -p tandem-lab -p tandem-bench --bins)
fi
for b in tandemd tandemctl lab-backend failover_probe; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b (FAILOVER_BUILD=1 builds it)"
done

mkdir -p "$OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
LOG="$OUT/failover-$STAMP.txt"
WORK=$(mktemp -d /tmp/tandem-failover.XXXXXX)
P="tfo$$"
NSS=()
PIDS=()                 # helpers (echo servers, wrk, monitors): stopped by PID on exit
DAEMON=([0]= [1]=)      # the daemon PID of each box (tandemd, or keepalived's parent)
KIND=                   # tandem | keepalived

exec > >(tee "$LOG") 2>&1

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_box 0 KILL || true
    stop_box 1 KILL || true
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    [[ -n ${FAILOVER_KEEP_WORK:-} ]] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$P-$1"; }
# Background processes are started with `ip netns exec` itself (it execs the program), so that
# `$!` is the program's PID; a shell function run with `&` would give its subshell's.
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

# ---------------------------------------------------------------------------------------------
# The lab.
# ---------------------------------------------------------------------------------------------
for n in sw client lb-a lb-b web; do
    ip netns add "$(ns "$n")"
    NSS+=("$(ns "$n")")
    ip -n "$(ns "$n")" link set lo up
done
ip -n "$(ns sw)" link add br0 type bridge mcast_snooping 0
ip -n "$(ns sw)" link set br0 up
plug() {  # plug HOST PORT ADDRESS
    ip -n "$(ns sw)" link add "$2" type veth peer name eth0 netns "$(ns "$1")"
    ip -n "$(ns sw)" link set "$2" master br0 up
    ip -n "$(ns "$1")" addr add "$3/24" dev eth0
    ip -n "$(ns "$1")" link set eth0 up
}
plug client pc "$CLIENT"
plug lb-a pa "${ADDR[0]}"
plug lb-b pb "${ADDR[1]}"
plug web pw "${ECHO[0]}"
ip -n "$(ns web)" addr add "${ECHO[1]}/24" dev eth0
for i in 0 1; do
    ip netns exec "$(ns web)" "$BIN/lab-backend" --name "${NAME[$i]}" --udp "${ECHO[$i]}:7000" \
        --http "${ECHO[$i]}:8080" >"$WORK/echo-$i.log" 2>&1 &
    PIDS+=($!)
    disown
done
mkdir -p "$OUT/failover-$STAMP"

# ---------------------------------------------------------------------------------------------
# The boxes: tandemd or keepalived, started and stopped by PID.
# ---------------------------------------------------------------------------------------------
tandem_config() {  # tandem_config BOX INTERVAL
    local i=$1
    cat <<YAML
schema: 1
node:
  name: ${BOX[$i]}
  management:
    listen: 127.0.0.1:9443
  vrrp:
    routers:
      - { router: front, interface: eth0, priority: ${PRIO[$i]} }
shared:
  services:
    - { name: echo, listen: '$VIP:7000', protocol: udp, pool: echo }
    - { name: web, listen: '$VIP:80', protocol: http, pool: web, access_log: false }
  pools:
    - name: echo
      servers: [{ id: ${NAME[$i]}, address: '${ECHO[$i]}:7000' }]
    - name: web
      servers: [{ id: ${NAME[$i]}, address: '${ECHO[$i]}:8080' }]
  vrrp:
    routers:
      - name: front
        vrid: 51
        vips: [$VIP/24]
        advert_interval: $2
YAML
}

keepalived_config() {  # keepalived_config BOX INTERVAL_SECONDS
    cat <<CONF
global_defs {
    router_id ${BOX[$1]}
    vrrp_version 3
    script_user root
    enable_script_security
}
vrrp_instance front {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority ${PRIO[$1]}
    advert_int $2
    virtual_ipaddress {
        $VIP/24
    }
}
CONF
}

seconds() {  # 10ms -> 0.01, 1s -> 1
    case $1 in
        *ms) awk -v v="${1%ms}" 'BEGIN { printf "%g", v / 1000 }' ;;
        *s) echo "${1%s}" ;;
    esac
}

INTERVAL=
# CPU placement (--soak only): `taskset -c LIST` per box; empty runs anywhere.
CPUS=([0]= [1]=)
start_box() {  # start_box BOX
    local i=$1 dir="$WORK/${BOX[$1]}"
    mkdir -p "$dir"
    if [[ $KIND == tandem ]]; then
        tandem_config "$i" "$INTERVAL" >"$dir/tandem.yaml"
        ${CPUS[$i]:+taskset -c "${CPUS[$i]}"} ip netns exec "$(ns "${BOX[$i]}")" "$BIN/tandemd" --config "$dir/tandem.yaml" --state-dir "$dir/state" \
            --control-socket "$dir/tandemd.sock" >>"$dir/tandemd.log" 2>&1 &
        DAEMON[$i]=$!
        disown  # killed on purpose: no "Killed" notice from bash
        for _ in $(seq 300); do
            "$BIN/tandemctl" --socket "$dir/tandemd.sock" status --json >/dev/null 2>&1 && return 0
            sleep 0.02
        done
        die "tandemd of ${BOX[$i]} did not start: $(tail -5 "$dir/tandemd.log")"
    else
        keepalived_config "$i" "$(seconds "$INTERVAL")" >"$dir/keepalived.conf"
        rm -f "$dir/keepalived.pid" "$dir/vrrp.pid"
        ip netns exec "$(ns "${BOX[$i]}")" keepalived --dont-fork --log-console --vrrp --no-syslog \
            --use-file="$dir/keepalived.conf" --pid="$dir/keepalived.pid" \
            --vrrp_pid="$dir/vrrp.pid" >>"$dir/keepalived.log" 2>&1 &
        DAEMON[$i]=$!
        disown
        for _ in $(seq 300); do
            [[ -s $dir/vrrp.pid ]] && return 0
            sleep 0.02
        done
        die "keepalived of ${BOX[$i]} did not start: $(tail -5 "$dir/keepalived.log")"
    fi
}

# The PIDs of box I's daemon: tandemd, or keepalived's parent and its VRRP child.
daemon_pids() {
    local i=$1 dir="$WORK/${BOX[$1]}"
    [[ -n ${DAEMON[$i]} ]] || return 0
    echo "${DAEMON[$i]}"
    if [[ $KIND == keepalived && -s $dir/vrrp.pid ]]; then cat "$dir/vrrp.pid"; fi
}

# Whether PID $1 runs (a zombie does not).
alive() { [[ -r /proc/$1/status ]] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status" && [[ -r /proc/$1/status ]]; }

stop_box() {  # stop_box BOX TERM|KILL: signals the daemon's processes, waits until they are gone
    local i=$1 pids pid
    pids=$(daemon_pids "$i")
    [[ -n $pids ]] || return 0
    kill -"$2" $pids 2>/dev/null || true
    for pid in $pids; do
        for _ in $(seq 1000); do alive "$pid" || break; sleep 0.02; done
    done
    DAEMON[$i]=
}

holds() { ip -n "$(ns "${BOX[$1]}")" -4 -o addr show dev eth0 | grep -q " $VIP/"; }

wait_holder() {  # wait_holder BOX SECONDS: BOX holds the VIP, the other box does not
    local i=$1 o=$((1 - $1))
    for _ in $(seq $(($2 * 50))); do
        holds "$i" && ! holds "$o" && return 0
        sleep 0.02
    done
    die "${BOX[$i]} did not become the only holder of the VIP within $2 s"
}

# Master_Down_Interval at priority 100, in seconds, plus margins: how long a probe runs.
probe_seconds() {
    awk -v i="$(seconds "$1")" 'BEGIN { printf "%.2f", 0.5 + 3.61 * i * 1.5 + 1.0 }'
}

# probe_run SECONDS RECORD: runs the probe in the background; `probe_wait` collects it.
PROBE_PID=
probe_start() {
    ip netns exec "$(ns client)" "$BIN/failover_probe" --target "$VIP:7000" --interval "$PROBE_INTERVAL" \
        --duration "${1}s" --record "$2.csv" >"$2.out" 2>&1 &
    PROBE_PID=$!
}
probe_wait() {  # in this shell (the probe is its child), not in a $(...) subshell
    wait "$PROBE_PID" || die "the probe failed: $(cat "$1.out")"
}

field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p"; }

results() { echo "$OUT/failover-$STAMP/$1.txt"; }

# ---------------------------------------------------------------------------------------------
# Trials.
# ---------------------------------------------------------------------------------------------
ECHO_PIDS=()
pair_up() {  # pair_up KIND INTERVAL: both boxes running, lb-a the holder
    KIND=$1 INTERVAL=$2
    if [[ $KIND == keepalived ]]; then
        # keepalived moves the VIP only: each box answers on it with an echo of its own.
        for i in 0 1; do
            ip netns exec "$(ns "${BOX[$i]}")" "$BIN/lab-backend" --name "${NAME[$i]}" \
                --udp 0.0.0.0:7000 >"$WORK/box-echo-$i.log" 2>&1 &
            ECHO_PIDS+=($!)
            PIDS+=($!)
            disown
        done
    fi
    start_box 0
    start_box 1
    wait_holder 0 15
    sleep 0.5
}

pair_down() {
    stop_box 0 TERM
    stop_box 1 TERM
    if ((${#ECHO_PIDS[@]})); then kill -KILL "${ECHO_PIDS[@]}" 2>/dev/null || true; fi
    ECHO_PIDS=()
}

crash_trials() {  # crash_trials KIND INTERVAL
    local kind=$1 interval=$2 n rec out d
    local tag="${kind}_crash_$interval"
    pair_up "$kind" "$interval"
    d=$(probe_seconds "$interval")
    for n in $(seq "$TRIALS"); do
        rec="$OUT/failover-$STAMP/$tag-$n"
        probe_start "$d" "$rec"
        sleep 0.5
        # The crash: the whole daemon and the link in the same instant.
        local pids
        pids=$(daemon_pids 0)
        kill -KILL $pids 2>/dev/null || true
        ip -n "$(ns lb-a)" link set eth0 down
        stop_box 0 KILL
        probe_wait "$rec"
        out=$(cat "$rec.out")
        if [[ $(field to <<<"$out") == b ]]; then
            echo "$(field outage_ms <<<"$out") $(field lost <<<"$out")" >>"$(results "$tag")"
            printf '%-24s trial %2d: outage %7s ms, %3s probes lost\n' "$tag" "$n" \
                "$(field outage_ms <<<"$out")" "$(field lost <<<"$out")"
        else
            # The client never reached lb-b within the probe's run: an outage longer than the
            # run. Recorded and reported (never folded into the medians), and the run goes on.
            echo "$tag trial $n: $out" >>"$(results failed)"
            printf '%-24s trial %2d: FAILED, lb-b never answered: %s\n' "$tag" "$n" "$out"
        fi
        # lb-a comes back: the daemon first (it removes the VIP the crash left on eth0; a
        # keepalived box gets it removed by hand), then the link.
        if [[ $kind == tandem ]]; then
            rec="$OUT/failover-$STAMP/tandem_failback_$interval-$n"
            probe_start "$d" "$rec"
            sleep 0.3
            start_box 0
            ip -n "$(ns lb-a)" link set eth0 up
            probe_wait "$rec"
            out=$(cat "$rec.out")
            echo "$(field lost <<<"$out")" >>"$(results "tandem_failback_$interval")"
            printf '%-24s trial %2d: %3s probes lost\n' "tandem_failback_$interval" "$n" \
                "$(field lost <<<"$out")"
        else
            ip -n "$(ns lb-a)" addr del "$VIP/24" dev eth0 2>/dev/null || true
            start_box 0
            ip -n "$(ns lb-a)" link set eth0 up
        fi
        wait_holder 0 15
        sleep 0.3
    done
    pair_down
}

handover_trials() {  # handover_trials INTERVAL: tandemctl failover, alternately
    local interval=$1 n rec out from=0 d
    pair_up tandem "$interval"
    d=$(probe_seconds "$interval")
    for n in $(seq "$TRIALS"); do
        rec="$OUT/failover-$STAMP/tandem_handover_$interval-$n"
        probe_start "$d" "$rec"
        sleep 0.5
        "$BIN/tandemctl" --socket "$WORK/${BOX[$from]}/tandemd.sock" failover >/dev/null ||
            die "tandemctl failover on ${BOX[$from]} failed"
        probe_wait "$rec"
        out=$(cat "$rec.out")
        echo "$(field lost <<<"$out") $(field outage_ms <<<"$out")" >>"$(results "tandem_handover_$interval")"
        printf '%-24s trial %2d: %3s probes lost (%s -> %s, silence %s ms)\n' \
            "tandem_handover_$interval" "$n" "$(field lost <<<"$out")" \
            "$(field from <<<"$out")" "$(field to <<<"$out")" "$(field outage_ms <<<"$out")"
        from=$((1 - from))
        wait_holder "$from" 15
        sleep 0.3
    done
    pair_down
}

stop_trials() {  # stop_trials INTERVAL: keepalived's graceful stop of the master
    local interval=$1 n rec out d
    pair_up keepalived "$interval"
    d=$(probe_seconds "$interval")
    for n in $(seq "$TRIALS"); do
        rec="$OUT/failover-$STAMP/keepalived_stop_$interval-$n"
        probe_start "$d" "$rec"
        sleep 0.5
        stop_box 0 TERM
        probe_wait "$rec"
        out=$(cat "$rec.out")
        echo "$(field lost <<<"$out") $(field outage_ms <<<"$out")" >>"$(results "keepalived_stop_$interval")"
        printf '%-24s trial %2d: %3s probes lost\n' "keepalived_stop_$interval" "$n" \
            "$(field lost <<<"$out")"
        start_box 0
        wait_holder 0 15
        sleep 0.3
    done
    pair_down
}

# Median, minimum, 90th percentile and maximum of column 1 of a results file.
stats() {
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - - -"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        p = v[int(NR * 0.9 + 0.999)]
        printf "%.1f %.1f %.1f %.1f\n", m, v[1], p, v[NR] }'
}
sum() { awk '{ s += $1 } END { print s + 0 }' "$1"; }
median() { stats "$1" | cut -d' ' -f1; }

# soak_placement: lb-b and the frames lb-a sends on the last CPU, the rest on the others.
soak_placement() {
    local last=$(($(nproc) - 1)) mask pid
    ((last >= 1)) || { echo "soak: 1 CPU: the boxes share it (no placement)"; return; }
    CPUS=([0]="0-$((last - 1))" [1]="$last")
    mask=$(printf '%x' $((1 << last)))
    ip netns exec "$(ns sw)" tee /sys/class/net/pa/queues/rx-0/rps_cpus <<<"$mask" >/dev/null
    ip netns exec "$(ns lb-b)" tee /sys/class/net/eth0/queues/rx-0/rps_cpus <<<"$mask" >/dev/null
    for pid in "${PIDS[@]}"; do taskset -a -p -c "${CPUS[0]}" "$pid" >/dev/null; done
    echo "soak: lb-b on CPU ${CPUS[1]} with the processing of lb-a's outgoing and lb-b's incoming" \
        "frames (RPS); lb-a, wrk and the web servers on CPUs ${CPUS[0]}"
}

# Busy and total jiffies of lb-a's CPUs (or all), from /proc/stat: "BUSY TOTAL".
cpu_busy() {
    local list=${CPUS[0]:-all}
    awk -v list="$list" '
        BEGIN { n = split(list, r, "-"); lo = r[1]; hi = (n > 1) ? r[2] : r[1] }
        list == "all" && $1 == "cpu" || list != "all" && $1 ~ /^cpu[0-9]+$/ &&
            substr($1, 4) + 0 >= lo && substr($1, 4) + 0 <= hi {
            t = 0; for (i = 2; i <= NF; i++) t += $i
            busy += t - $5 - $6; total += t }
        END { print busy, total }' /proc/stat
}
busy_percent() {  # busy_percent "B0 T0" "B1 T1"
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x); split(b, y); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
}

soak() {
    local n=$SOAK_CONNS before after cpu0 cpu1 busy0 busy1 pid
    soak_placement
    pair_up tandem 10ms
    echo "soak: ${SOAK_SECONDS} s of wrk (${n} connections) through http://$VIP/ at 10 ms adverts"
    for i in 0 1; do
        ip -n "$(ns "${BOX[$i]}")" monitor address >"$WORK/monitor-$i.txt" 2>&1 &
        PIDS+=($!)
    done
    before=$(for i in 0 1; do
        "$BIN/tandemctl" --socket "$WORK/${BOX[$i]}/tandemd.sock" status --json |
            grep -m1 '"role_changes"' | tr -dc 0-9
        echo
    done | paste -sd' ')
    pid=${DAEMON[0]}
    cpu0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    busy0=$(cpu_busy)
    ${CPUS[0]:+taskset -c "${CPUS[0]}"} ip netns exec "$(ns client)" wrk -t2 -c"$n" -d"${SOAK_SECONDS}s" "http://$VIP/" | tee "$WORK/wrk.txt"
    cpu1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    busy1=$(cpu_busy)
    after=$(for i in 0 1; do
        "$BIN/tandemctl" --socket "$WORK/${BOX[$i]}/tandemd.sock" status --json |
            grep -m1 '"role_changes"' | tr -dc 0-9
        echo
    done | paste -sd' ')
    local moves
    moves=$(cat "$WORK"/monitor-*.txt | grep -c "$VIP" || true)
    echo "soak: role changes before (lb-a lb-b) $before, after $after; VIP address events $moves;" \
        "lb-a's tandemd used $(awk -v t=$((cpu1 - cpu0)) -v s="$SOAK_SECONDS" 'BEGIN { printf "%.0f", t / s }') % of a core;" \
        "CPUs busy (${CPUS[0]:-all}): $(busy_percent "$busy0" "$busy1") %;" \
        "load $(cut -d' ' -f1-3 /proc/loadavg)"
    holds 0 && ! holds 1 || die "soak: lb-a no longer holds the VIP alone"
    [[ $before == "$after" && $moves == 0 ]] || die "soak: a failover happened under load"
    echo "soak_failovers=0 seconds=$SOAK_SECONDS"
    pair_down
}

echo "bench/failover.sh $MODE, $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  output kept in $LOG, every trial's probe record in $OUT/failover-$STAMP/"
echo "  $(keepalived --version 2>&1 | head -1)"
if [[ $MODE == soak ]]; then
    soak
    exit 0
fi

for i in $INTERVALS; do crash_trials tandem "$i"; done
for i in $HANDOVER_INTERVALS; do handover_trials "$i"; done
for i in $KA_INTERVALS; do crash_trials keepalived "$i"; done
for i in $KA_INTERVALS; do stop_trials "$i"; done

echo
echo "load after the trials: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %8s %8s %8s %8s %10s\n' "crash outage (ms)" median min p90 max "lost/trial"
for f in "$OUT/failover-$STAMP"/*_crash_*.txt; do
    read -r m lo p hi <<<"$(stats "$f")"
    lost=$(awk '{ s += $2 } END { printf "%.1f", s / NR }' "$f")
    printf '%-28s %8s %8s %8s %8s %10s\n' "$(basename "$f" .txt)" "$m" "$lo" "$p" "$hi" "$lost"
done
printf '%-28s %8s %8s\n' "lost probes" total trials
for f in "$OUT/failover-$STAMP"/*_handover_*.txt "$OUT/failover-$STAMP"/*_failback_*.txt \
    "$OUT/failover-$STAMP"/*_stop_*.txt; do
    [[ -f $f ]] || continue
    printf '%-28s %8s %8s\n' "$(basename "$f" .txt)" "$(sum "$f")" "$(wc -l <"$f")"
done

if [[ -f $(results failed) ]]; then
    echo "FAILED trials (the client never reached the new box; not in the medians):"
    sed 's/^/  /' "$(results failed)"
fi
r() { local f="$OUT/failover-$STAMP/$1.txt"; if [[ -f $f ]]; then median "$f"; else echo -; fi; }
total() {
    local s=0 f
    for f in "$OUT/failover-$STAMP"/tandem_"$1"_*.txt; do [[ -f $f ]] && s=$((s + $(sum "$f"))); done
    echo "$s"
}
echo "failover_ms adv10=$(r tandem_crash_10ms) adv20=$(r tandem_crash_20ms)" \
    "adv100=$(r tandem_crash_100ms) adv1000=$(r tandem_crash_1s)" \
    "keepalived_adv10=$(r keepalived_crash_10ms) handover_lost=$(total handover)" \
    "failback_lost=$(total failback)"
