#!/usr/bin/env bash
# rowshift's main job on an embedded default: a throwaway local server (MariaDB 10.11, or
# `scripts/demo.sh mysql` for MySQL 9.7), shop.orders with sample rows and live writes, and
# `rowshift migrate` adding `order_status` plus an index while the writes go on.
#   scripts/demo.sh [mariadb|mysql] [rows]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-servers.sh >/dev/null
cargo build --release -q -p rowshift-cli --bin rowshift
cargo build --release -q -p rowshift-testkit --example demo
exec target/release/examples/demo "$@"
