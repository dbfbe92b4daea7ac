#!/bin/sh
# orch installer, offline: installs a local orch binary as a service (k3s's install.sh, read
# the same way). Run as root:
#
#   INSTALL_ORCH_BIN=./orch sh install.sh                       # a server
#   INSTALL_ORCH_BIN=./orch ORCH_URL=https://SERVER:6443 ORCH_TOKEN=K10... sh install.sh  # an agent
#
# Environment (all optional):
#   INSTALL_ORCH_BIN          the orch binary to install (default: ./orch, then orch in PATH)
#   INSTALL_ORCH_EXEC         the command and flags the service runs, e.g. "server --disable-agent"
#                             or "agent --join https://SERVER:6443 --token T" (default: server, or
#                             agent when ORCH_URL is set)
#   ORCH_URL, ORCH_TOKEN      join an existing cluster as an agent (k3s's K3S_URL, K3S_TOKEN)
#   INSTALL_ORCH_NAME         the service name (default: orch, or orch-agent for an agent)
#   INSTALL_ORCH_BIN_DIR      where the binary and scripts go (default: /usr/local/bin)
#   INSTALL_ORCH_SYMLINK      skip: no kubectl/ctr/crictl symlinks; force: replace existing ones
#                             (default: create them where the name is free)
#   INSTALL_ORCH_SKIP_ENABLE  true: do not enable or start the service
#   INSTALL_ORCH_SKIP_START   true: enable but do not start the service
#   INSTALL_ORCH_INIT         systemd or openrc (default: whichever this machine has)
#   INSTALL_ORCH_ROOT         install below this directory instead of / (tests, image builds);
#                             nothing is enabled or started then
set -eu

info() { echo "[INFO]  $*"; }
fatal() { echo "[ERROR] $*" >&2; exit 1; }

ROOT="${INSTALL_ORCH_ROOT:-}"
BIN_DIR="${INSTALL_ORCH_BIN_DIR:-/usr/local/bin}"
SYMLINK="${INSTALL_ORCH_SYMLINK:-}"

# --- what to install -------------------------------------------------------------------------
find_binary() {
    if [ -n "${INSTALL_ORCH_BIN:-}" ]; then
        [ -x "$INSTALL_ORCH_BIN" ] || fatal "INSTALL_ORCH_BIN=$INSTALL_ORCH_BIN is not an executable file"
        SOURCE_BIN="$INSTALL_ORCH_BIN"
    elif [ -x ./orch ]; then
        SOURCE_BIN=./orch
    elif command -v orch >/dev/null 2>&1; then
        SOURCE_BIN="$(command -v orch)"
    else
        fatal "no orch binary: set INSTALL_ORCH_BIN=/path/to/orch (this installer works offline and downloads nothing)"
    fi
    "$SOURCE_BIN" version >/dev/null 2>&1 || fatal "$SOURCE_BIN does not run on this machine (wrong architecture? it is $(uname -m))"
}

choose_command() {
    if [ -n "${INSTALL_ORCH_EXEC:-}" ]; then
        CMD="$INSTALL_ORCH_EXEC"
    elif [ -n "${ORCH_URL:-}" ]; then
        [ -n "${ORCH_TOKEN:-}" ] || fatal "ORCH_URL is set but ORCH_TOKEN is not: an agent needs the agent token printed by orch server"
        CMD="agent"
    else
        CMD="server"
    fi
    case "$CMD" in
        agent*) KIND=agent; NAME="${INSTALL_ORCH_NAME:-orch-agent}" ;;
        server*) KIND=server; NAME="${INSTALL_ORCH_NAME:-orch}" ;;
        *) fatal "INSTALL_ORCH_EXEC must start with server or agent, not: $CMD" ;;
    esac
}

# --- files -------------------------------------------------------------------------------------
install_binary() {
    mkdir -p "$ROOT$BIN_DIR"
    info "installing $SOURCE_BIN to $BIN_DIR/orch"
    cp "$SOURCE_BIN" "$ROOT$BIN_DIR/orch.tmp"
    chmod 755 "$ROOT$BIN_DIR/orch.tmp"
    mv -f "$ROOT$BIN_DIR/orch.tmp" "$ROOT$BIN_DIR/orch"
}

install_symlinks() {
    [ "$SYMLINK" = skip ] && return 0
    for cmd in kubectl crictl ctr; do
        link="$ROOT$BIN_DIR/$cmd"
        if [ -e "$link" ] || [ -L "$link" ]; then
            if [ "$SYMLINK" != force ]; then
                info "skipping $BIN_DIR/$cmd: it exists (INSTALL_ORCH_SYMLINK=force replaces it)"
                continue
            fi
            rm -f "$link"
        fi
        info "symlinking $BIN_DIR/$cmd to orch"
        ln -s orch "$link"
    done
}

write_env_file() {
    ENV_FILE="/etc/systemd/system/$NAME.service.env"
    mkdir -p "$ROOT/etc/systemd/system"
    umask 077
    : > "$ROOT$ENV_FILE"
    if [ -n "${ORCH_URL:-}" ]; then
        echo "ORCH_URL=$ORCH_URL" >> "$ROOT$ENV_FILE"
        echo "ORCH_TOKEN=${ORCH_TOKEN:-}" >> "$ROOT$ENV_FILE"
    fi
    umask 022
}

# The service's arguments. An agent's join flags come from the env file, so the token is not
# in the unit file.
args_line() {
    if [ -n "${ORCH_URL:-}" ] && [ "$CMD" = agent ]; then
        echo "agent --join \${ORCH_URL} --token \${ORCH_TOKEN}"
    else
        echo "$CMD"
    fi
}

write_systemd_unit() {
    UNIT="/etc/systemd/system/$NAME.service"
    info "writing $UNIT"
    cat > "$ROOT$UNIT" <<EOF
[Unit]
Description=orch: a small, single-binary Kubernetes ($KIND)
Documentation=https://github.com/orch/orch
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-$ENV_FILE
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStartPre=-/sbin/modprobe vxlan
ExecStart=$BIN_DIR/orch $(args_line)
EOF
}

write_openrc_service() {
    SERVICE="/etc/init.d/$NAME"
    info "writing $SERVICE (OpenRC)"
    mkdir -p "$ROOT/etc/init.d"
    cat > "$ROOT$SERVICE" <<EOF
#!/sbin/openrc-run
description="orch ($KIND)"
depend() { need net; after firewall; }
supervisor=supervise-daemon
name=$NAME
command="$BIN_DIR/orch"
command_args="$(args_line)"
output_log=/var/log/$NAME.log
error_log=/var/log/$NAME.log
pidfile="/var/run/$NAME.pid"
respawn_delay=5
respawn_max=0
set -o allexport
if [ -f /etc/environment ]; then . /etc/environment; fi
if [ -f $ENV_FILE ]; then . $ENV_FILE; fi
set +o allexport
EOF
    chmod 755 "$ROOT$SERVICE"
}

write_killall() {
    info "writing $BIN_DIR/orch-killall.sh"
    cat > "$ROOT$BIN_DIR/orch-killall.sh" <<'EOF'
#!/bin/sh
# Stops orch, its containerd and every pod, and removes what orch set up in the kernel: pod
# mounts and network namespaces, the bridge, the overlay device and orch's nftables tables.
set -x
[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"
for service in /etc/systemd/system/orch*.service; do
    [ -s "$service" ] && systemctl stop "$(basename "$service")" 2>/dev/null
done
for service in /etc/init.d/orch*; do
    [ -x "$service" ] && "$service" stop 2>/dev/null
done
pids_under() { grep -l "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3; }
for pid in $(pids_under /var/lib/orch); do kill -9 "$pid" 2>/dev/null; done
umount_under() { awk -v p="$1" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n 1 umount -l; }
umount_under /run/orch/
umount_under /var/lib/orch/
for dev in cni0 flannel.1 orch-dns; do ip link delete "$dev" 2>/dev/null; done
if command -v nft >/dev/null 2>&1; then
    nft list tables 2>/dev/null | awk '$3 ~ /^orch/ { print $2, $3 }' | while read -r family table; do nft delete table "$family" "$table"; done
fi
rm -rf /run/orch
exit 0
EOF
    chmod 755 "$ROOT$BIN_DIR/orch-killall.sh"
}

write_uninstall() {
    info "writing $BIN_DIR/orch-uninstall.sh"
    cat > "$ROOT$BIN_DIR/orch-uninstall.sh" <<EOF
#!/bin/sh
# Removes orch: stops everything (orch-killall.sh), removes the service, the binary, its
# symlinks and these scripts. The data (/var/lib/orch, /etc/orch) goes too unless
# ORCH_KEEP_DATA=true.
set -x
ROOT="\${INSTALL_ORCH_ROOT:-$ROOT}"
[ -n "\$ROOT" ] || [ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
if [ -z "\$ROOT" ]; then
    $BIN_DIR/orch-killall.sh
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable $NAME 2>/dev/null
        systemctl reset-failed $NAME 2>/dev/null
    fi
    if command -v rc-update >/dev/null 2>&1; then rc-update delete $NAME default 2>/dev/null; fi
fi
rm -f "\$ROOT/etc/systemd/system/$NAME.service" "\$ROOT/etc/systemd/system/$NAME.service.env" "\$ROOT/etc/init.d/$NAME"
[ -z "\$ROOT" ] && command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload
for cmd in kubectl crictl ctr; do
    if [ -L "\$ROOT$BIN_DIR/\$cmd" ] && [ "\$(readlink "\$ROOT$BIN_DIR/\$cmd")" = orch ]; then rm -f "\$ROOT$BIN_DIR/\$cmd"; fi
done
if [ "\${ORCH_KEEP_DATA:-}" != true ]; then
    rm -rf "\$ROOT/var/lib/orch" "\$ROOT/etc/orch" "\$ROOT/run/orch"
fi
rm -f "\$ROOT$BIN_DIR/orch" "\$ROOT$BIN_DIR/orch-killall.sh" "\$ROOT$BIN_DIR/orch-uninstall.sh"
EOF
    chmod 755 "$ROOT$BIN_DIR/orch-uninstall.sh"
}

# --- service -----------------------------------------------------------------------------------
start_service() {
    if [ "${INSTALL_ORCH_SKIP_ENABLE:-}" = true ] || [ -n "$ROOT" ]; then
        info "not enabling or starting $NAME (INSTALL_ORCH_SKIP_ENABLE or INSTALL_ORCH_ROOT is set)"
        return 0
    fi
    if [ "$INIT" = systemd ]; then
        systemctl daemon-reload
        systemctl enable "$NAME"
        [ "${INSTALL_ORCH_SKIP_START:-}" = true ] && return 0
        info "starting $NAME (waits until it is ready)"
        systemctl restart "$NAME"
    else
        rc-update add "$NAME" default
        [ "${INSTALL_ORCH_SKIP_START:-}" = true ] && return 0
        "/etc/init.d/$NAME" restart
    fi
}

main() {
    [ -n "$ROOT" ] || [ "$(id -u)" -eq 0 ] || fatal "run as root (e.g. sudo sh install.sh)"
    find_binary
    choose_command
    if [ -n "${INSTALL_ORCH_INIT:-}" ]; then
        INIT="$INSTALL_ORCH_INIT"
        case "$INIT" in systemd | openrc) ;; *) fatal "INSTALL_ORCH_INIT must be systemd or openrc, not: $INIT" ;; esac
    elif [ -n "$ROOT" ] || command -v systemctl >/dev/null 2>&1; then
        INIT=systemd
    elif command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then
        INIT=openrc
    else
        fatal "neither systemd nor OpenRC found: run '$BIN_DIR/orch $CMD' from your own init system"
    fi
    install_binary
    install_symlinks
    write_env_file
    if [ "$INIT" = systemd ]; then write_systemd_unit; else write_openrc_service; fi
    write_killall
    write_uninstall
    start_service
    info "done: $NAME installed ($BIN_DIR/orch $CMD); remove it with $BIN_DIR/orch-uninstall.sh"
}

main "$@"
