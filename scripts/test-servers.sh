#!/usr/bin/env bash
# Provision the database servers rowshift's tests and benchmarks start.
#
#   MariaDB 10.11  Debian bookworm's `mariadb-server` package (installed with apt when missing).
#   MySQL 9.7      Debian sid's `mysql-server-core` and the libraries it needs, fetched with
#                  `apt-get download` through a private apt state folder (the machine's apt
#                  sources and libc are never touched) and unpacked with `dpkg -x` into a cache
#                  folder; it runs through the unpacked dynamic loader (see tests/harness).
#   sysbench, pt-online-schema-change (percona-toolkit): load generator and peer for benches.
#
# Safe to run again: every step is skipped when its result is already there.
# The MySQL folder is $ROWSHIFT_MYSQL_ROOT (default: ~/.cache/rowshift/mysql-sid).
set -euo pipefail

MYSQL_ROOT="${ROWSHIFT_MYSQL_ROOT:-$HOME/.cache/rowshift/mysql-sid}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

log() { printf '[test-servers] %s\n' "$*" >&2; }

apt_packages=()
command -v mariadbd >/dev/null 2>&1 || apt_packages+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || apt_packages+=(mariadb-client)
command -v mariadb-binlog >/dev/null 2>&1 || apt_packages+=(mariadb-server-core)
command -v sysbench >/dev/null 2>&1 || apt_packages+=(sysbench)
command -v pt-online-schema-change >/dev/null 2>&1 || apt_packages+=(percona-toolkit)
command -v tmux >/dev/null 2>&1 || apt_packages+=(tmux)
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)  # renders verify reports in tests
command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)  # certificates for the TLS tests
if [ ${#apt_packages[@]} -gt 0 ]; then
  log "installing Debian packages: ${apt_packages[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${apt_packages[@]}"
fi
# The packaged service is not used: tests start their own throwaway instances.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mariadb >/dev/null 2>&1 || true; fi

mysql_packages=(mysql-server-core libc6 libstdc++6 libgcc-s1 libaio1t64 libcurl4t64 libfido2-1
  libgoogle-perftools4t64 libtcmalloc-minimal4t64 libicu78 liblz4-1 libmecab2 libnuma1
  libprotobuf-lite32t64 libprotobuf32t64 libssl3t64 libtirpc3t64 libzstd1 zlib1g
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libcbor0.10 libnghttp2-14 libnghttp3-9 libngtcp2-16 libngtcp2-crypto-ossl0 libidn2-0 librtmp1 libssh2-1t64
  libpsl5t64 libldap2 libbrotli1 libunistring5 libgnutls30t64 libhogweed6t64 libnettle8t64 libgmp10
  libp11-kit0 libtasn1-6 libffi8 libsasl2-2 libudev1 libcap2 libsystemd0 liblzma5 libgcrypt20
  libgpg-error0 libselinux1 libpcre2-8-0)

if [ -x "$MYSQL_ROOT/usr/sbin/mysqld" ] && [ -f "$MYSQL_ROOT/.complete" ]; then
  log "MySQL (sid) already unpacked in $MYSQL_ROOT"
else
  state="$MYSQL_ROOT.apt"
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/etc/preferences.d" "$state/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" >"$state/etc/sources.list"
  : >"$state/status"
  apt_opts=(-o "Dir::State=$state" -o "Dir::State::Lists=$state/lists" -o "Dir::State::status=$state/status"
    -o "Dir::Cache=$state/cache" -o "Dir::Etc::SourceList=$state/etc/sources.list"
    -o "Dir::Etc::SourceParts=/nonexistent" -o "Dir::Etc::PreferencesParts=$state/etc/preferences.d"
    -o "APT::Architecture=amd64" -o "APT::Architectures::=amd64" -o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
  log "fetching the sid package index into $state"
  apt-get "${apt_opts[@]}" update -q >&2
  cd "$state/debs"
  for p in "${mysql_packages[@]}"; do
    if ! ls ./"${p}"_*.deb >/dev/null 2>&1; then
      apt-get "${apt_opts[@]}" download "$p" >&2 || log "note: $p not in sid (skipped)"
    fi
  done
  rm -rf "$MYSQL_ROOT.tmp" && mkdir -p "$MYSQL_ROOT.tmp"
  for deb in ./*.deb; do dpkg -x "$deb" "$MYSQL_ROOT.tmp"; done
  rm -rf "$MYSQL_ROOT" && mv "$MYSQL_ROOT.tmp" "$MYSQL_ROOT"
  touch "$MYSQL_ROOT/.complete"
  cd - >/dev/null
fi

# Prove the unpacked server runs on this machine.
"$MYSQL_ROOT/usr/lib64/ld-linux-x86-64.so.2" \
  --library-path "$MYSQL_ROOT/usr/lib/x86_64-linux-gnu:$MYSQL_ROOT/lib/x86_64-linux-gnu" \
  "$MYSQL_ROOT/usr/sbin/mysqld" --version
mariadbd --version
log "ready: MariaDB $(mariadbd --version | awk '{print $3}'), MySQL in $MYSQL_ROOT"
