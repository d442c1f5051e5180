#!/bin/sh
# Install what the `local` provider needs on a Debian/Ubuntu host (run as root).
# Idempotent: packages already installed are not touched, and apt is not even
# called when nothing is missing. apt-cacher-ng is only installed here: the
# local provider runs its own private instance (127.0.0.1:3143) when needed.
set -eu

# Extra packages may be named as arguments (the test command adds nginx-light).
# debian-archive-keyring: the release keys mmdebstrap checks the node images
# (Debian 12 and 13) against, also on an Ubuntu host.
PACKAGES="systemd-container mmdebstrap zstd rsync openssh-client iproute2 apt-cacher-ng debian-archive-keyring $*"

if [ "$(uname -s)" != "Linux" ]; then
    echo "host-setup: local nodes need Linux (systemd-nspawn)" >&2
    exit 1
fi
if [ "$(id -u)" != "0" ]; then
    echo "host-setup: run as root (sudo $0)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "host-setup: needs apt-get (Debian or Ubuntu); install: $PACKAGES" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "host-setup: all packages present ($(echo $PACKAGES))"
    exit 0
fi

echo "host-setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086  # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $missing
echo "host-setup: done"
