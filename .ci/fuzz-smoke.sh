#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target of fuzz/ and runs each one for a short
# time on a temporary copy of its committed seed corpus (fuzz/corpus/<target>/seed-*),
# failing if any target crashes (panic, failed invariant, OOM, or a hang).
#
#   bash .ci/fuzz-smoke.sh
#
# Environment:
#   FUZZ_SECONDS    time per target, default 20
#   FUZZ_TARGETS    space-separated targets, default: all (`cargo fuzz list`)
#   FUZZ_TOOLCHAIN  force a toolchain: `nightly`, or `stable` (run with RUSTC_BOOTSTRAP=1);
#                   default: nightly when rustup has it, else stable + RUSTC_BOOTSTRAP=1
#   FUZZ_SANITIZER  cargo-fuzz sanitizer, default `none` (nkcluster-core forbids unsafe
#                   code; `address` works on both toolchains but runs ~5x fewer inputs)
#
# A crashing input is copied to fuzz/artifacts/<target>/ (ignored by git) and printed in
# hex; reproduce with `cargo +nightly fuzz run -s none <target> <file>`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
SANITIZER="${FUZZ_SANITIZER:-none}"

log() { printf '[fuzz-smoke] %s\n' "$*" >&2; }

# --- cargo-fuzz ---
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz missing: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

# --- toolchain ---
# cargo-fuzz needs nightly-only rustc flags (-Z...). A nightly toolchain is used when present;
# otherwise stable with RUSTC_BOOTSTRAP=1, which unlocks those flags on a stable compiler.
have_rustup_toolchain() { command -v rustup >/dev/null 2>&1 && rustup run "$1" rustc --version >/dev/null 2>&1; }
case "${FUZZ_TOOLCHAIN:-auto}" in
    nightly) CARGO=(cargo +nightly) ;;
    stable)
        if command -v rustup >/dev/null 2>&1; then CARGO=(env RUSTC_BOOTSTRAP=1 cargo +stable)
        else CARGO=(env RUSTC_BOOTSTRAP=1 cargo); fi ;;
    auto)
        if have_rustup_toolchain nightly; then CARGO=(cargo +nightly)
        elif have_rustup_toolchain stable; then CARGO=(env RUSTC_BOOTSTRAP=1 cargo +stable)
        else CARGO=(env RUSTC_BOOTSTRAP=1 cargo); fi ;;
    *) log "FUZZ_TOOLCHAIN must be nightly, stable or unset"; exit 2 ;;
esac
log "toolchain: ${CARGO[*]} ($("${CARGO[@]}" --version)), sanitizer: $SANITIZER, ${FUZZ_SECONDS}s per target"

FUZZ=("${CARGO[@]}" fuzz)
if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <("${FUZZ[@]}" list --fuzz-dir fuzz)
fi
[[ ${#TARGETS[@]} -gt 0 ]] || { log "no fuzz targets found"; exit 2; }

# --- build ---
start=$SECONDS
log "building ${TARGETS[*]}"
"${FUZZ[@]}" build --fuzz-dir fuzz -s "$SANITIZER"
log "built in $((SECONDS - start))s"

# --- run ---
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-smoke.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

hexdump_file() {
    if command -v xxd >/dev/null 2>&1; then xxd -p "$1" | tr -d '\n'
    else od -An -v -tx1 "$1" | tr -d ' \n'; fi
    echo
}

stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    corpus="$TMP/corpus/$t"
    artifacts="$TMP/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    seeds=0
    if compgen -G "fuzz/corpus/$t/seed-*" >/dev/null; then
        cp fuzz/corpus/"$t"/seed-* "$corpus"/
        seeds=$(find "$corpus" -type f | wc -l)
    else
        log "warning: $t has no seeds in fuzz/corpus/$t/"
    fi
    out="$TMP/$t.log"
    log "running $t for ${FUZZ_SECONDS}s on $seeds seeds"
    status=0
    # -timeout: an input running for 10 s is a hang; -malloc_limit_mb: inputs are at most a
    # few KiB, so one allocation of 256 MiB means a length was trusted before it arrived.
    "${FUZZ[@]}" run --fuzz-dir fuzz -s "$SANITIZER" "$t" "$corpus" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=256 \
        -artifact_prefix="$artifacts/" >"$out" 2>&1 || status=$?
    runs=$(stat_of number_of_executed_units "$out")
    speed=$(stat_of average_exec_per_sec "$out")
    rss=$(stat_of peak_rss_mb "$out")
    found=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$artifacts" -type f | wc -l)
    if [[ $status -ne 0 || $crashes -gt 0 ]]; then
        failed+=("$t")
        summary+=("$(printf '%-16s FAILED (exit %s) after %s execs' "$t" "$status" "${runs:-?}")")
        log "---- $t FAILED (exit $status):"
        # The panic (failed invariant) with its message, then libFuzzer's verdict.
        grep -E -m 1 -A 3 'panicked at' "$out" >&2 || true
        grep -E 'ERROR: libFuzzer|^SUMMARY|^MS: |Test unit written|^Error: ' "$out" >&2 || true
        log "full log: fuzz/artifacts/$t/smoke.log"
        mkdir -p "fuzz/artifacts/$t"
        cp "$out" "fuzz/artifacts/$t/smoke.log"
        for a in "$artifacts"/*; do
            [[ -f "$a" ]] || continue
            cp "$a" "fuzz/artifacts/$t/"
            log "crashing input fuzz/artifacts/$t/$(basename "$a") (hex):"
            hexdump_file "$a" >&2
        done
    else
        summary+=("$(printf '%-16s ok: %s execs in %ss (%s/s), corpus %s -> %s, peak rss %s MB' \
            "$t" "${runs:-?}" "$FUZZ_SECONDS" "${speed:-?}" "$seeds" "$found" "${rss:-?}")")
    fi
done

log "summary (total $((SECONDS - start))s):"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
