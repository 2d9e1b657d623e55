#!/usr/bin/env bash
# The whole test suite, as CI runs it: provision the real test servers (idempotent), check
# formatting and lints, then run every test of the workspace against real MySQL 9.7 and
# MariaDB 10.11 instances that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-servers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The CLI the tests run as a process, built from these sources (cargo test builds no binary).
cargo build -p rowshift-cli --bin rowshift --locked
cargo test --workspace --locked
