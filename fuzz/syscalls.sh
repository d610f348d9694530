#!/usr/bin/env bash
# Runs the `syscalls` fuzz target for SECONDS (default 20) under `rktio run`:
# a sealed mount at /fz, the host writable only in the corpus, in an allowed
# directory and where libFuzzer puts what it finds; the working directory is
# a directory the policy keeps from writes, which the target checks stays
# empty (fuzz_targets/syscalls.rs).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-20}
# A second argument: an input to run once (a crash to reproduce) instead.
one=${2:-}
root=$(cd .. && pwd)
(cd .. && cargo build -q -p rktio-cli -p rktio-preload)
cargo fuzz build syscalls -s none >/dev/null 2>&1 || cargo fuzz build syscalls -s none
bin=$(ls -t target/*/release/syscalls | head -1)
w=$(mktemp -d /var/tmp/rktio-fz.XXXXXX)
trap 'rc=$?; [ $rc -eq 0 ] && rm -rf "$w" || echo "fuzz: syscalls: kept $w"' EXIT
mkdir -p "$w/allowed" "$w/forbidden" "$w/found" corpus/syscalls
corpus=$(cd corpus/syscalls && pwd)
"$root/target/debug/rktio" disk keygen "$w/k" >/dev/null
"$root/target/debug/rktio" disk create "$w/d.img" --size 32M --key-file "$w/k" >/dev/null
cat >"$w/rktio.toml" <<EOT
[[mount]]
path = "/fz"
image = "$w/d.img"
key_file = "$w/k"

[host]
read = ["$w/forbidden"]
write = ["$corpus", "$w/allowed", "$w/found"]
EOT
if [ -n "$one" ]; then
  cp "$one" "$w/found/input"
  set -- "$w/found/input"
else
  set -- -max_total_time="$secs" -timeout=30 -artifact_prefix="$w/found/" ${RKTIO_FUZZ_FLAGS:-} "$corpus"
fi
cd "$w/forbidden"
RKTIO_FUZZ_FORBIDDEN="$w/forbidden" RKTIO_FUZZ_ALLOWED="$w/allowed" \
  "$root/target/debug/rktio" run -c "$w/rktio.toml" -- "$root/fuzz/$bin" "$@" </dev/null
