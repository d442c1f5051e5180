#!/usr/bin/env bash
# Set up (or upgrade) a silverlining node. Run as root by `silver setup-node`,
# which pushes the server files to /usr/local/share/silverlining/server-files.
#
#   update-server-script.sh --version HASH --by USER@HOST
#       bring the node to the state the server files describe.
#   update-server-script.sh --version HASH --by USER@HOST --pushed DIGEST
#       the same, fed on stdin by `silver setup-node` before any push: check root
#       and the OS, then go on only if the pushed copy on the node is DIGEST
#       (pushed_digest: what an rsync of the server files would find unchanged);
#       otherwise install rsync if missing (the push needs it), print
#       {"push": "needed"} and stop, and silver pushes and runs the pushed copy.
#
# Idempotent: every step goes through an ensure_* helper that looks first and
# acts (printing "changed: ...") only when the node differs, so a second run
# prints "0 changes". The last line of output is JSON: {"changes": N, ...}.
set -Eeuo pipefail
trap 'die "line $LINENO: $BASH_COMMAND failed (status $?)"' ERR
umask 022
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Node paths: keep in step with silverlining/node/paths.py (a unit test compares them).
SHARE=/usr/local/share/silverlining
LIB=$SHARE/lib
SERVER_FILES=$SHARE/server-files
VAR=/var/lib/silverlining
APPS=$VAR/apps
DATA=$VAR/data
ENV_DIR=$VAR/env
BACKUPS=$VAR/backups
STATUS=$VAR/status
UPLOADS=$VAR/uploads
TMP=$VAR/tmp
SECRET=$VAR/secret.txt
ETC=/etc/silverlining
SERVER_VERSION=$ETC/server-version
LOGS=/var/log/silverlining
APP_LOGS=$LOGS/apps
SETUP_LOG=$LOGS/setup-node.log
LOCKS=/run/silverlining/locks
NGINX_ROUTES=/etc/nginx/silverlining
CERTS=$ETC/certs
ACME_WEBROOT=$VAR/acme-webroot
ACME_CA=$ETC/acme-ca
ENTRY=/usr/local/sbin/silver-node
DEPLOY_USER=silver
NGINX_FRESH=0                         # 1 when this run installs nginx
LIB_CHANGED=0                         # 1 when this run updated the node code

MANIFEST=$ETC/installed-files        # what install_serverroot put in place last time
FIREWALL_RULES=$ETC/nftables.conf

CHANGES=0
CHANGED_FILES=()
VERSION=""
BY=""
PUSHED=""                             # --pushed: the digest silver expects of $SERVER_FILES
DEPLOY_HOME=""                        # the deploy user's home (getent), once known

changed() {
    CHANGES=$((CHANGES + 1))
    echo "changed: $*"
}

die() {
    echo "error: $*" >&2
    exit 1
}

# --- checks ------------------------------------------------------------------

check_root() {
    [ "$EUID" = 0 ] || die "setup must run as root (running as $(id -un))"
}

# Sets NGINX_PKG for the OS; anything but Debian 13 / 12 / Ubuntu 24.04 is refused.
# Debian 13 has no nginx-light: its nginx is the small core, modules come apart.
check_os() {
    [ -r /etc/os-release ] || die "unsupported OS: no /etc/os-release (silverlining nodes run Debian 13, Debian 12 or Ubuntu 24.04)"
    local id=unknown version=unknown pretty="" key value
    # read, not sourced (that would overwrite $VERSION): KEY=VALUE lines, the value
    # maybe quoted, with backslash escapes (os-release(5))
    while IFS='=' read -r key value || [ -n "$key" ]; do
        case "$value" in
            \"*\") value=${value:1:-1}; value=${value//\\\"/\"}; value=${value//\\\\/\\} ;;
            \'*\') value=${value:1:-1} ;;
        esac
        case "$key" in
            ID) id=$value ;;
            VERSION_ID) version=$value ;;
            PRETTY_NAME) pretty=$value ;;
        esac
    done </etc/os-release
    id=${id:-unknown} version=${version:-unknown}
    [ -n "$pretty" ] || pretty="$id $version"
    case "$id $version" in
        "debian 12") NGINX_PKG=nginx-light ;;
        "debian 13" | "ubuntu 24.04") NGINX_PKG=nginx ;;
        *) die "unsupported OS: $pretty (ID=$id VERSION_ID=$version); silverlining nodes run Debian 13, Debian 12 or Ubuntu 24.04" ;;
    esac
}

# --- ensure_* helpers: look, act only on a difference, report the change -----

apt_get() {
    local out
    if ! out=$(apt-get -q -y -o Dpkg::Use-Pty=0 -o Acquire::Languages=none \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "$@" 2>&1 </dev/null); then
        printf '%s\n' "$out" | tail -n 15 >&2
        die "apt-get $1 failed (output above)"
    fi
}

# Installs the packages that are missing; `apt-get update` only when some are,
# which is what keeps a second run at about a second.
ensure_packages() {
    local pkg missing=() installed
    # one dpkg-query for all of them (it prints those it knows, and fails if any is unknown)
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null) || true
    installed=$'\n'$installed$'\n'
    for pkg in "$@"; do
        if [[ "$installed" != *$'\n'"$pkg installed"$'\n'* ]]; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing ${missing[*]}"
    apt_get update
    apt_get install --no-install-recommends "${missing[@]}"
    changed "packages installed: ${missing[*]}"
}

# The mode and owner ("644 root:root") of paths looked at so far. A re-run changes
# nothing, so it is mostly looking: the files of serverroot are read at once, and
# another path not known yet together with every other entry of its directory,
# one stat for all (ours share a few directories), rather than one process per
# path. A path the script changes is forgotten, so it is read again if looked at.
declare -A ATTRS=()

# read_attrs PATH...: records the mode and owner of each PATH that exists, one stat
# for all.
read_attrs() {
    local line rest
    while IFS= read -r line; do
        rest=${line#* }
        ATTRS[${rest#* }]="${line%% *} ${rest%% *}"
    done < <(stat -c '%a %U:%G %n' -- "$@" 2>/dev/null || true)
}

# attrs_of PATH: sets HAVE (not printed: a $(...) would lose what was read)
attrs_of() {
    local path=$1 entries
    if [ -z "${ATTRS[$path]+set}" ]; then
        shopt -s nullglob dotglob
        entries=("${path%/*}"/*)
        shopt -u nullglob dotglob
        [ ${#entries[@]} -eq 0 ] || read_attrs "${entries[@]}"
    fi
    if [ -z "${ATTRS[$path]+set}" ]; then
        ATTRS[$path]=$(stat -c '%a %U:%G' -- "$path")
    fi
    HAVE=${ATTRS[$path]}
}

# The sha256 of files looked at so far, many read at once (read_sums): two files of
# the same sum need no cmp. A file the script writes is forgotten.
declare -A SUM=()

# read_sums FILE...: records each FILE's sha256, one sha256sum for all. A file that
# cannot be read, or whose name sha256sum has to escape, is left out (unknown: not
# taken for equal to anything).
read_sums() {
    local line
    while IFS= read -r line; do
        case "$line" in \\*) continue ;; esac
        SUM[${line#*  }]=${line%%  *}
    done < <(sha256sum -- "$@" 2>/dev/null || true)
}

same_sum() {
    [ -n "${SUM[$1]:-}" ] && [ "${SUM[$1]}" = "${SUM[$2]:-}" ]
}

# serverroot_files: sets SERVERROOT_FILES to the regular files under the pushed
# serverroot/, hidden ones too (symlinks are not installed). Builtins only.
SERVERROOT_FILES=()
serverroot_files() {
    local p
    SERVERROOT_FILES=()
    shopt -s globstar dotglob nullglob
    for p in "$SERVER_FILES/serverroot"/**; do
        [ ! -f "$p" ] || [ -L "$p" ] || SERVERROOT_FILES+=("$p")
    done
    shopt -u globstar dotglob nullglob
}

# file_is TEXT FILE: whether FILE (a regular file) holds exactly TEXT; builtins only.
file_is() {
    local have=""
    [ -f "$2" ] && [ ! -L "$2" ] || return 1
    # read stops early at a NUL byte and then succeeds: only a read to the end counts
    ! IFS= read -r -d '' have <"$2" && [ "$have" = "$1" ]
}

# write_file FILE MODE TEXT: FILE (root's) gets TEXT, replaced atomically.
write_file() {
    printf '%s' "$3" >"$1.silverlining-new"
    chmod "$2" "$1.silverlining-new"
    mv -f "$1.silverlining-new" "$1"
    unset 'ATTRS[$1]' 'SUM[$1]'
}

# fix_attrs PATH MODE [USER:GROUP]
fix_attrs() {
    local path=$1 mode=$2 owner=${3:-root:root} have want HAVE
    attrs_of "$path"
    have=$HAVE
    printf -v want '%o %s' "$((8#$mode))" "$owner"
    if [ "$have" != "$want" ]; then
        chown "$owner" "$path"
        chmod "$mode" "$path"
        unset 'ATTRS[$path]'
        changed "$path: mode/owner $have -> $want"
    fi
}

# ensure_dir PATH MODE [USER:GROUP]
ensure_dir() {
    local path=$1 mode=$2 owner=${3:-root:root}
    if [ ! -d "$path" ]; then
        install -d -m "$mode" -o "${owner%%:*}" -g "${owner#*:}" "$path"
        unset 'ATTRS[$path]'
        changed "directory $path"
    else
        fix_attrs "$path" "$mode" "$owner"
    fi
}

# ensure_file SRC DEST MODE [USER:GROUP]: DEST gets SRC's content, replaced atomically.
ensure_file() {
    local src=$1 dest=$2 mode=$3 owner=${4:-root:root}
    if [ -f "$dest" ] && [ ! -L "$dest" ] && { same_sum "$src" "$dest" || cmp -s "$src" "$dest"; }; then
        fix_attrs "$dest" "$mode" "$owner"
        return 0
    fi
    [ -d "${dest%/*}" ] || mkdir -p "${dest%/*}"
    install -m "$mode" -o "${owner%%:*}" -g "${owner#*:}" "$src" "$dest.silverlining-new"
    mv -f "$dest.silverlining-new" "$dest"
    unset 'ATTRS[$dest]' 'SUM[$dest]'
    CHANGED_FILES+=("$dest")
    changed "file $dest"
}

# ensure_text DEST MODE USER:GROUP TEXT: DEST holds TEXT and a newline.
ensure_text() {
    if file_is "$4"$'\n' "$1"; then
        fix_attrs "$1" "$2" "$3"
        return 0
    fi
    local tmp
    tmp=$(mktemp)
    printf '%s\n' "$4" >"$tmp"
    ensure_file "$tmp" "$1" "$2" "$3"
    rm -f "$tmp"
}

# read_deploy_home: sets DEPLOY_HOME to the deploy user's home, empty if no such user.
read_deploy_home() {
    local entry
    entry=$(getent passwd "$DEPLOY_USER") || entry=""
    IFS=: read -r _ _ _ _ _ DEPLOY_HOME _ <<<"$entry" || true
}

ensure_deploy_user() {
    if [ -z "$DEPLOY_HOME" ]; then
        useradd --create-home --user-group --shell /bin/bash "$DEPLOY_USER"
        changed "user $DEPLOY_USER created"
        read_deploy_home
    fi
}

# Our units' states at one moment (read_unit_states): what the checks below know
# without asking systemd again. Nothing here disables or stops a unit, so a unit
# enabled or running then still is; any other state is asked about as before.
declare -A UNIT_FILE_STATE=() UNIT_ACTIVE=()

read_unit_states() {
    local id="" active="" file="" line
    # at the end, one more pass with an empty line records the last unit
    while IFS= read -r line || [ -n "$id" ]; do
        case "$line" in
            Id=*) id=${line#Id=} ;;
            ActiveState=*) active=${line#ActiveState=} ;;
            UnitFileState=*) file=${line#UnitFileState=} ;;
            "")
                if [ -n "$id" ]; then
                    UNIT_ACTIVE[$id]=$active
                    UNIT_FILE_STATE[$id]=$file
                fi
                id="" active="" file=""
                ;;
        esac
    done < <(systemctl show -p Id -p ActiveState -p UnitFileState "$@" 2>/dev/null)
}

unit_active() {
    [ "${UNIT_ACTIVE[$1]:-}" = active ] || systemctl is-active --quiet "$1"
}

ensure_enabled() {
    [ "${UNIT_FILE_STATE[$1]:-}" = enabled ] && return 0
    if ! systemctl is-enabled --quiet "$1" 2>/dev/null; then
        systemctl enable --quiet "$1"
        changed "service $1 enabled"
    fi
}

file_changed_under() {
    local prefix=$1 f
    for f in "${CHANGED_FILES[@]+"${CHANGED_FILES[@]}"}"; do
        case "$f" in "$prefix"*) return 0 ;; esac
    done
    return 1
}

# --- the steps ---------------------------------------------------------------

# Our directories: path, mode, owner.
NODE_DIRS=(
    "$ETC 0755 root:root"
    "$VAR 0755 root:root"
    "$APPS 0755 root:root"
    "$DATA 0755 root:root"
    "$ENV_DIR 0711 root:root"
    "$BACKUPS 0700 root:root"
    "$STATUS 0750 root:www-data"
    "$TMP 0755 root:root"
    "$UPLOADS 0755 $DEPLOY_USER:$DEPLOY_USER"
    "$LOGS 0755 root:root"
    "$APP_LOGS 0755 root:root"
    "$NGINX_ROUTES 0755 root:root"
    "$CERTS 0700 root:root"
    "$ACME_CA 0755 root:root"
    "$ACME_WEBROOT 0755 root:root"
)

# pushed_digest: sets PUSHED_DIGEST to the sha256 of the pushed copy's listing, a
# line per entry, the copy's own directory too ("TYPE MODE PATH": "d 755 lib", PATH
# relative), and one more per file ("SHA256  ./PATH", as sha256sum prints it), sorted
# bytewise. serverfiles.py's pushed_digest computes the same of what silver pushes:
# when both agree, an rsync of the server files would change nothing here but owners
# and times, which nothing reads. A file that cannot be read has no SHA256 line.
PUSHED_DIGEST=""
pushed_digest() {
    PUSHED_DIGEST=""
    [ -d "$SERVER_FILES" ] && [ ! -L "$SERVER_FILES" ] || return 0
    # a failing find (an unreadable file) fails no step: the file is missing from the listing
    PUSHED_DIGEST=$(cd "$SERVER_FILES" && find . -printf '%y %m %P\n' -type f \
        -exec sha256sum -- {} + 2>/dev/null | LC_ALL=C sort | sha256sum) || true
    PUSHED_DIGEST=${PUSHED_DIGEST%% *}
}

# What the node has of what the steps below look at, read at once: the sums of
# the files serverroot/ installs (and of the deploy user's keys), the modes and
# owners of those and of our directories. Nothing is decided here.
survey() {
    local p srcs=() dests=() dirs=() spec
    read_deploy_home
    serverroot_files
    for p in "${SERVERROOT_FILES[@]+"${SERVERROOT_FILES[@]}"}"; do
        srcs+=("$p")
        dests+=("/${p#"$SERVER_FILES/serverroot/"}")
    done
    for spec in "${NODE_DIRS[@]}"; do
        dirs+=("${spec%% *}")
    done
    [ -z "$DEPLOY_HOME" ] || dests+=(/root/.ssh/authorized_keys "$DEPLOY_HOME/.ssh/authorized_keys")
    read_sums "${srcs[@]+"${srcs[@]}"}" "${dests[@]+"${dests[@]}"}"
    read_attrs "${dests[@]+"${dests[@]}"}" "${dirs[@]}" "$SECRET" "$SERVER_VERSION" \
        ${DEPLOY_HOME:+"$DEPLOY_HOME/.ssh"}
}

# Every file under serverroot/ goes to the same path under /, owned by root.
# Files an earlier version installed and this one dropped are removed.
install_serverroot() {
    local root=$SERVER_FILES/serverroot src rel mode now="" old
    local -A shipped=()
    [ -d "$root" ] || die "$root is missing: run this through silver setup-node"
    for src in "${SERVERROOT_FILES[@]+"${SERVERROOT_FILES[@]}"}"; do
        rel=${src#"$root"/}
        case "$rel" in
            usr/local/sbin/* | usr/local/bin/*) mode=0755 ;;
            etc/sudoers.d/*)
                mode=0440
                # checked before it is installed: the one installed now was, when it was
                same_sum "$src" "/$rel" || visudo -c -q -f "$src" >/dev/null \
                    || die "$rel: sudoers syntax error"
                ;;
            *) mode=0644 ;;
        esac
        ensure_file "$src" "/$rel" "$mode"
        now+="/$rel"$'\n'
        shipped[/$rel]=1
    done
    if [ -f "$MANIFEST" ]; then
        while IFS= read -r old; do
            if [ -n "$old" ] && [ -z "${shipped[$old]:-}" ]; then
                rm -f -- "$old"
                CHANGED_FILES+=("$old")
                changed "removed $old"
            fi
        done <"$MANIFEST"
    fi
    file_is "$now" "$MANIFEST" || write_file "$MANIFEST" 0644 "$now"
}

# Whether $LIB holds what the rsync in install_lib would leave: the pushed lib/'s
# directories (mode 755) and files (mode 644, the same content), nothing else but
# __pycache__. One diff and one find, rather than rsync's checksums on both sides.
lib_current() {
    diff -rq --no-dereference --exclude=__pycache__ -- "$SERVER_FILES/lib" "$LIB" \
        >/dev/null 2>&1 || return 1
    [ -z "$(find "$LIB" -name __pycache__ -prune -o \( -type f ! -perm 644 -o \
        -type d ! -perm 755 -o ! -type f ! -type d \) -print -quit)" ]
}

# The node-side Python package, mirrored from the pushed copy.
install_lib() {
    local out count=0
    if ! lib_current; then
        out=$(rsync -rlpc --delete --chmod=D755,F644 --exclude=__pycache__ \
            --itemize-changes "$SERVER_FILES/lib/" "$LIB/")
        count=$(printf '%s\n' "$out" | grep -c . || true)
    fi
    if [ "$count" -gt 0 ]; then
        LIB_CHANGED=1
        changed "node code in $LIB: $count paths updated"
    fi
    # silver-node runs with -B (root writes no bytecode at run time), so without
    # these every call would compile its modules again: a quarter of a second each.
    if [ "$count" -gt 0 ] || [ ! -d "$LIB/silverlining/__pycache__" ]; then
        python3 -m compileall -q "$LIB" >/dev/null
    fi
}

install_deploy_user() {
    local keys=/root/.ssh/authorized_keys
    ensure_deploy_user
    ensure_dir "$DEPLOY_HOME/.ssh" 0700 "$DEPLOY_USER:$DEPLOY_USER"
    if [ -s "$keys" ]; then
        ensure_file "$keys" "$DEPLOY_HOME/.ssh/authorized_keys" 0600 "$DEPLOY_USER:$DEPLOY_USER"
    else
        echo "warning: root has no $keys, so nobody can log in as $DEPLOY_USER" >&2
    fi
}

install_dirs() {
    local spec
    for spec in "${NODE_DIRS[@]}"; do
        # shellcheck disable=SC2086  # path, mode and owner, none with spaces
        ensure_dir $spec
    done
}

# /run is emptied at boot: systemd-tmpfiles makes these again from our tmpfiles.d file.
install_run_dirs() {
    if [ ! -d "$LOCKS" ] || [ ! -d /run/silverlining/apps ]; then
        systemd-tmpfiles --create silverlining.conf
        changed "run-time directories (/etc/tmpfiles.d/silverlining.conf)"
    fi
}

# sudo looks up the node's own name on every call and complains when it cannot
# resolve it; Debian's convention is a 127.0.1.1 line in /etc/hosts (minimal
# images may have no /etc/hosts at all, so localhost is added the same way).
# Looked up in the file itself: a resolver lookup would wait for DNS timeouts.
# Read with builtins: a name counts after an address, before a comment.
ensure_hostname_resolves() {
    local name=$HOSTNAME line fields i localhost=0 named=0   # bash's gethostname()
    if [ -r /etc/hosts ]; then
        set -f
        while IFS= read -r line || [ -n "$line" ]; do
            # shellcheck disable=SC2206  # split into fields on purpose (globbing is off)
            fields=(${line%%#*})
            for ((i = 1; i < ${#fields[@]}; i++)); do
                [ "${fields[i]}" != localhost ] || localhost=1
                [ "${fields[i]}" != "$name" ] || named=1
            done
        done </etc/hosts
        set +f
    fi
    if [ "$localhost" = 0 ]; then
        printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >>/etc/hosts
        changed "/etc/hosts: localhost"
    fi
    if [ "$named" = 0 ]; then
        printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts
        changed "/etc/hosts: $name -> 127.0.1.1"
    fi
}

# A random secret made once per node and never regenerated (apps derive keys from it).
install_secret() {
    if [ ! -s "$SECRET" ]; then
        local tmp
        tmp=$(mktemp "$VAR/.secret.XXXXXX")
        head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' >"$tmp"
        echo >>"$tmp"
        mv "$tmp" "$SECRET"
        changed "server secret created in $SECRET"
    fi
    fix_attrs "$SECRET" 0600 root:root
}

install_firewall() {
    if file_changed_under /etc/systemd/system/; then
        systemctl daemon-reload
    fi
    ensure_enabled silverlining-firewall.service
    if file_changed_under "$FIREWALL_RULES" || ! nft list table inet silverlining >/dev/null 2>&1; then
        local out
        if ! out=$(nft -c -f "$FIREWALL_RULES" 2>&1); then
            case "$out" in
                *"Operation not permitted"*)
                    die "cannot set the firewall: nft: Operation not permitted (a container node needs CAP_NET_ADMIN)" ;;
                *) die "firewall rules rejected by nft: ${out//$'\n'/ }" ;;
            esac
        fi
        systemctl reload-or-restart silverlining-firewall.service
        changed "firewall applied (in: tcp 22, 80, 443)"
    fi
}

install_nginx() {
    local out
    # a balancer node (docs/balancer.md): HAProxy has port 80, nginx stays stopped
    if [ -s "$ETC/balancer/topology.json" ]; then
        if systemctl is-active --quiet nginx || systemctl is-enabled --quiet nginx 2>/dev/null; then
            systemctl disable --now --quiet nginx
            changed "nginx stopped (a balancer node: HAProxy serves port 80)"
        fi
        return 0
    fi
    if [ -e /etc/nginx/sites-enabled/default ] || [ -L /etc/nginx/sites-enabled/default ]; then
        rm -f /etc/nginx/sites-enabled/default
        CHANGED_FILES+=(/etc/nginx/sites-enabled/default)
        changed "removed the nginx default site"
    fi
    ensure_enabled nginx.service
    if file_changed_under /etc/nginx/ || ! unit_active nginx.service; then
        if ! out=$(nginx -t -q 2>&1); then
            die "nginx configuration test failed, nginx not reloaded: ${out//$'\n'/ }"
        fi
        if [ "$NGINX_FRESH" = 1 ] || ! unit_active nginx.service; then
            # Just installed, the package started it with its default site (and
            # may still be starting, when a reload can be lost); nothing is
            # served yet, so a restart is safe and certain.
            systemctl restart nginx
            changed "nginx started"
        else
            systemctl reload nginx
        fi
    fi
}

# /.silver/health and /.silver/info: a socket-activated server running as www-data.
install_status() {
    ensure_enabled silverlining-status.socket
    if ! unit_active silverlining-status.socket; then
        systemctl start silverlining-status.socket
        changed "status pages socket started"
    fi
    if [ "$LIB_CHANGED" = 1 ] || file_changed_under /etc/systemd/system/silverlining-status; then
        systemctl try-restart silverlining-status.service
    fi
}

# Node commands of the deploy user: a socket-activated server (node/server.py)
# that runs each in a fork with the node code already imported. It notices new
# node code by itself (the server version) and ends when idle, so nothing here
# restarts it; a changed socket unit is restarted (which stops the server, never a
# call it runs: KillMode=process).
install_node_server() {
    ensure_enabled silverlining-node.socket
    if ! unit_active silverlining-node.socket; then
        systemctl start silverlining-node.socket
        changed "node command server socket started"
    elif file_changed_under /etc/systemd/system/silverlining-node.socket; then
        systemctl restart silverlining-node.socket
    fi
}

# HTTPS certificates: the twice-daily renewal timer, and a renewal check now
# (certificates within 30 days of expiry; nothing to do on a node without any).
# A failed renewal is recorded per hostname (silver query --certs), not fatal here.
install_certs() {
    ensure_enabled silverlining-certs.timer
    if ! unit_active silverlining-certs.timer; then
        systemctl start silverlining-certs.timer
        changed "certificate renewal timer started"
    fi
    local out
    # no certificate, nothing to renew: no need to start the node's Python for it
    compgen -G "$CERTS/*/fullchain.pem" >/dev/null || return 0
    if ! out=$("$ENTRY" certs-renew 2>&1); then
        echo "warning: certificate renewal check failed: ${out//$'\n'/ }" >&2
    elif [[ "$out" == *'"renewed": ["'* ]]; then
        echo "certificates renewed: ${out##*$'\n'}"
    fi
}

log_run() {
    local status=$?
    if [ -n "$VERSION" ]; then
        [ -d "$LOGS" ] || mkdir -p "$LOGS"
        if [ "$status" = 0 ]; then status=ok; else status=failed; fi
        TZ=UTC printf '%(%Y-%m-%dT%H:%M:%SZ)T by=%s version=%s changes=%d status=%s\n' -1 \
            "$BY" "$VERSION" "$CHANGES" "$status" >>"$SETUP_LOG"
    fi
}

setup() {
    check_root
    check_os
    [[ "$VERSION" =~ ^[0-9a-f]{8,64}$ ]] || die "--version must be a hex hash, got '$VERSION'"
    [ -d /run/silverlining ] || mkdir -p /run/silverlining
    exec 9>/run/silverlining/setup-node.lock
    flock -w 600 9 || die "another setup-node is still running on this node"
    [ -z "$PUSHED" ] || pushed_digest
    if [ -n "$PUSHED" ] && [ "$PUSHED_DIGEST" != "$PUSHED" ]; then
        ensure_packages rsync
        [ -d "$SERVER_FILES" ] || mkdir -p "$SERVER_FILES"
        echo '{"push": "needed"}'
        return 0
    fi
    trap log_run EXIT

    command -v nginx >/dev/null 2>&1 || NGINX_FRESH=1
    ensure_packages python3 tzdata python3-gunicorn python3-uvicorn rsync sudo nftables "$NGINX_PKG"
    survey
    ensure_hostname_resolves
    install_deploy_user
    install_dirs
    install_serverroot
    install_run_dirs
    install_lib
    install_secret
    read_unit_states silverlining-firewall.service nginx.service silverlining-status.socket \
        silverlining-node.socket silverlining-certs.timer
    install_firewall
    install_nginx
    install_status
    install_node_server
    install_certs
    ensure_text "$SERVER_VERSION" 0644 root:root "$VERSION"

    if [ "$CHANGES" = 0 ]; then
        echo "0 changes: the node was already up to date"
    else
        echo "$CHANGES changes"
    fi
    printf '{"changes": %d, "version": "%s"}\n' "$CHANGES" "$VERSION"
}

main() {
    case "${1:-}" in
        --version)
            while [ $# -gt 0 ]; do
                case "$1" in
                    --version) VERSION=${2:-}; shift 2 ;;
                    --by) BY=${2:-}; BY=${BY//[^A-Za-z0-9@._+-]/_}; shift 2 ;;
                    --pushed) PUSHED=${2:-}; shift 2 ;;
                    *) die "unknown argument: $1" ;;
                esac
            done
            setup
            ;;
        *) die "usage: $0 --version HASH --by USER@HOST [--pushed DIGEST]" ;;
    esac
}

main "$@"
