#!/bin/sh
# Set up memops on a fresh Debian 12 machine with python3 and root (or sudo):
# the Debian packages Python needs for a venv, then .venv with memops and its
# test tools. Safe to run again: it skips what is already done.
set -eu
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install() {
    if [ ! -f /tmp/.memops-apt-updated ]; then
        $SUDO apt-get update -qq && touch /tmp/.memops-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# Debian's python3 lacks venv/ensurepip until python3-venv is installed.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "bootstrap: installing python3-venv"
    apt_install python3-venv
fi
# zstd: the backup verify checks that zstd-compressed files decompress (`zstd -t`).
if ! command -v zstd >/dev/null 2>&1; then
    echo "bootstrap: installing zstd"
    apt_install zstd
fi
# openssl: the S3 backup test makes the certificate of its moto endpoint with it.
if ! command -v openssl >/dev/null 2>&1; then
    echo "bootstrap: installing openssl"
    apt_install openssl
fi
# jq, curl and age: docs/restore-by-hand.md restores a set with standard tools only (age
# opens encrypted sets), and its test follows the page.
if ! command -v jq >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1 \
    || ! command -v age >/dev/null 2>&1; then
    echo "bootstrap: installing jq, curl and age"
    apt_install jq curl age
fi
# Ansible's service and daemon helpers used by the roles.
if ! command -v start-stop-daemon >/dev/null 2>&1 || ! command -v setfacl >/dev/null 2>&1; then
    echo "bootstrap: installing dpkg and acl tools"
    apt_install dpkg acl
fi
# The lab (`invoke lab.up`, the multihost tests): Ansible reaches its hosts over SSH, and the
# lab's private dockerd, unpacked from Debian's docker.io, links libdevmapper. Docker itself,
# debootstrap and tinyproxy are never installed: the lab unpacks them into its cache.
if ! command -v ssh >/dev/null 2>&1 || ! command -v ssh-keyscan >/dev/null 2>&1 \
    || ! dpkg -s libdevmapper1.02.1 >/dev/null 2>&1; then
    echo "bootstrap: installing openssh-client and libdevmapper1.02.1"
    apt_install openssh-client libdevmapper1.02.1
fi

stamp=".venv/.memops-installed"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "bootstrap: installing memops and its tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    echo "$wanted" > "$stamp"
fi
# promtool and amtool check alert rules and Alertmanager configs (`invoke test`, the roles'
# validate:). Take them out of Debian's packages without installing those, so the controller
# gets no Prometheus or Alertmanager daemon of its own.
if [ ! -x .venv/bin/promtool ] || [ ! -x .venv/bin/amtool ]; then
    echo "bootstrap: unpacking promtool and amtool into .venv/bin"
    if [ ! -f /tmp/.memops-apt-updated ]; then
        $SUDO apt-get update -qq && touch /tmp/.memops-apt-updated
    fi
    debs="$(mktemp -d)"
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root prometheus prometheus-alertmanager)
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$debs/root"; done
    install -m 0755 "$debs/root/usr/bin/promtool" "$debs/root/usr/bin/amtool" .venv/bin/
    rm -rf "$debs"
fi
echo "bootstrap: ready; run .venv/bin/invoke --list"
