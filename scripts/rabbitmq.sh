#!/usr/bin/env bash
# Install / start / stop / inspect a real RabbitMQ (Debian's rabbitmq-server, 3.10.x) on loopback, used as the
# oracle by the contract tests (tests/contract/).  Must run as root (CI runs as root, CI=true, no stdin).
#
#   scripts/rabbitmq.sh install   apt-get install rabbitmq-server (skipped when installed) + enable plugins
#   scripts/rabbitmq.sh start     write /etc/rabbitmq/rabbitmq.conf, boot the node, wait for every listener
#   scripts/rabbitmq.sh stop      rabbitmqctl shutdown (timeout, then kill the node's pid)
#   scripts/rabbitmq.sh restart   stop + start
#   scripts/rabbitmq.sh status    exit 0 when the node runs and every port accepts TCP, 3 otherwise
#
# Listeners (all 127.0.0.1): 5672 amqp, 1883 mqtt, 61613 stomp, 15672 management (guest/guest),
# 15674 web-stomp (/ws), 15675 web-mqtt (/ws).  mqtt.subscription_ttl is 5000 ms so that the contract suite can
# watch persistent MQTT session queues expire within seconds.  Override the wait with RABBITMQ_START_TIMEOUT (s).
set -euo pipefail

PLUGINS=(rabbitmq_mqtt rabbitmq_stomp rabbitmq_web_stomp rabbitmq_web_mqtt rabbitmq_management)
PORTS=(5672 1883 61613 15672 15674 15675)
CONF_DIR=/etc/rabbitmq
CONF=$CONF_DIR/rabbitmq.conf
# Copy of the config the running node was started with: `start` on a running node restarts it only when
# the wanted config differs from this one.
STARTED_CONF=/var/lib/rabbitmq/.fakebroker-started.conf
START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-180}
STOP_TIMEOUT=${RABBITMQ_STOP_TIMEOUT:-60}

export DEBIAN_FRONTEND=noninteractive

log() { printf '[rabbitmq.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wanted_conf() {
    cat <<'EOF'
# Written by fakebroker's scripts/rabbitmq.sh: loopback-only RabbitMQ used as a test oracle.
loopback_users.guest = true
listeners.tcp.default = 127.0.0.1:5672
mqtt.listeners.tcp.default = 127.0.0.1:1883
stomp.listeners.tcp.default = 127.0.0.1:61613
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = 15674
web_mqtt.tcp.ip = 127.0.0.1
web_mqtt.tcp.port = 15675
# Persistent (clean=0) MQTT session queues get x-expires 5000 ms (default 86400000).
mqtt.subscription_ttl = 5000
# Fresher management stats.  Queue message/consumer counts in /api/queues lag by the metrics collector's
# interval, which is the smallest sample_retention_policies interval (default 5 s; 1 s is the minimum),
# plus the emitting process's collect_statistics_interval (default 5000 ms).
collect_statistics_interval = 500
management.rates_mode = none
management.sample_retention_policies.global.minute = 1
management.sample_retention_policies.basic.minute = 1
management.sample_retention_policies.detailed.10 = 1
EOF
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

is_installed() { command -v rabbitmq-server >/dev/null 2>&1 && command -v rabbitmqctl >/dev/null 2>&1; }

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

all_ports_open() {
    local p
    for p in "${PORTS[@]}"; do port_open "$p" || return 1; done
}

# The node answers to the CLI (fast check, ~1 s).
node_running() { timeout 20 rabbitmqctl -q ping </dev/null >/dev/null 2>&1; }

# Our node name resolves only if the short hostname does; add it to /etc/hosts when it does not.
ensure_hostname_resolves() {
    local h
    h=$(hostname -s 2>/dev/null || hostname)
    if ! getent hosts "$h" >/dev/null 2>&1; then
        log "hostname '$h' does not resolve; adding it to /etc/hosts"
        printf '127.0.0.1 %s\n' "$h" >>/etc/hosts
    fi
}

cmd_install() {
    need_root
    local t0=$SECONDS
    if is_installed; then
        log "rabbitmq-server already installed ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'))"
    else
        log "apt-get update + install rabbitmq-server"
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            rabbitmq-server </dev/null
        is_installed || die "rabbitmq-server still missing after apt-get install"
    fi
    local want="[${PLUGINS[*]}]" have=''
    [[ -f $CONF_DIR/enabled_plugins ]] && have=$(tr -d ' \n' <"$CONF_DIR/enabled_plugins")
    local missing=0 p
    for p in "${PLUGINS[@]}"; do [[ $have == *"$p"* ]] || missing=1; done
    if ((missing)); then
        log "enabling plugins ${PLUGINS[*]} (offline)"
        rabbitmq-plugins enable --offline "${PLUGINS[@]}" </dev/null >/dev/null
    else
        log "plugins already enabled: $want"
    fi
    log "install done in $((SECONDS - t0)) s"
}

wait_ports() {
    local deadline=$1 p
    for p in "${PORTS[@]}"; do
        until port_open "$p"; do
            ((SECONDS < deadline)) || die "port $p not accepting connections after ${START_TIMEOUT} s (log: /var/log/rabbitmq/)"
            sleep 0.2
        done
    done
}

cmd_start() {
    need_root
    is_installed || die "rabbitmq-server is not installed: run '$0 install' first"
    local t0=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
    mkdir -p "$CONF_DIR"
    local tmp
    tmp=$(mktemp)
    wanted_conf >"$tmp"
    if node_running; then
        if [[ -f $STARTED_CONF ]] && cmp -s "$tmp" "$STARTED_CONF"; then
            wait_ports "$deadline"
            rm -f "$tmp"
            log "already running with the wanted config; all ports up"
            return 0
        fi
        log "running with another config: restarting"
        cmd_stop
    fi
    install -m 0644 "$tmp" "$CONF"
    rm -f "$tmp"
    ensure_hostname_resolves
    log "rabbitmq-server -detached"
    rabbitmq-server -detached </dev/null >/dev/null
    # await_startup fails at once while the node is not yet reachable by the CLI (the first ~1 s after
    # -detached), so retry it until the deadline.  Its --timeout is in seconds; the outer `timeout` guards
    # against a CLI that hangs.
    local left err
    while :; do
        left=$((deadline - SECONDS))
        if ((left <= 0)); then
            log "last rabbitmqctl error: ${err:-}"
            tail -n 30 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
            die "node did not boot within ${START_TIMEOUT} s"
        fi
        if err=$(timeout "$((left + 5))" rabbitmqctl -q await_startup --timeout "$left" </dev/null 2>&1); then
            break
        fi
        sleep 0.5
    done
    wait_ports "$deadline"
    cp "$CONF" "$STARTED_CONF"
    log "started in $((SECONDS - t0)) s; ports ${PORTS[*]} accept connections on 127.0.0.1"
}

node_pids() {
    # The node's own pid file first, then any beam.smp of the rabbitmq user.
    local f
    for f in /var/lib/rabbitmq/mnesia/*.pid; do
        [[ -f $f ]] && printf '%s\n' "$(<"$f")"
    done
    pgrep -u rabbitmq beam.smp 2>/dev/null || true
}

cmd_stop() {
    need_root
    local t0=$SECONDS
    if ! is_installed; then
        log "not installed: nothing to stop"
        return 0
    fi
    local pids
    pids=$(node_pids | sort -u | tr '\n' ' ')
    if node_running; then
        log "rabbitmqctl shutdown"
        timeout "$STOP_TIMEOUT" rabbitmqctl -q shutdown </dev/null >/dev/null 2>&1 ||
            log "rabbitmqctl shutdown failed or timed out after ${STOP_TIMEOUT} s"
    fi
    local pid alive=()
    for pid in $pids; do
        kill -0 "$pid" 2>/dev/null && alive+=("$pid")
    done
    if ((${#alive[@]})); then
        log "killing leftover node process(es) ${alive[*]}"
        kill -TERM "${alive[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            local any=0
            for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && any=1; done
            ((any)) || break
            sleep 0.2
        done
        kill -KILL "${alive[@]}" 2>/dev/null || true
    fi
    rm -f "$STARTED_CONF"
    log "stopped in $((SECONDS - t0)) s"
}

cmd_status() {
    if ! is_installed; then
        echo "rabbitmq-server: not installed"
        return 3
    fi
    local running=no p states=()
    node_running && running=yes
    for p in "${PORTS[@]}"; do
        if port_open "$p"; then states+=("$p:up"); else states+=("$p:down"); fi
    done
    echo "rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'): node running=$running; ports ${states[*]}"
    if [[ $running == yes ]] && all_ports_open; then return 0; fi
    return 3
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|restart|status" >&2
        exit 2
        ;;
esac
