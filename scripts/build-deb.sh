#!/bin/sh
# Build the Debian package: the release binary, its manual page and shell
# completions (printed by the binary, from the same definitions as --help),
# then `cargo deb`. Arguments go to cargo deb (e.g. --output DIR).
# Needs cargo-deb: cargo install cargo-deb --locked
set -eu
cd "$(dirname "$0")/.."

target=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
cargo build --release --locked -p axrelay

# cargo deb reads assets named target/release/… from the real target dir.
out="$target/release/package"
rm -rf "$out"
mkdir -p "$out/man"
bin="$target/release/axrelay"
"$bin" manpage "$out/man"
"$bin" completions bash >"$out/axrelay.bash"
"$bin" completions zsh >"$out/_axrelay"
"$bin" completions fish >"$out/axrelay.fish"

cargo deb -p axrelay --no-build "$@"
