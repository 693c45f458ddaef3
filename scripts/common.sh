# Shared settings for the project's scripts. Sourced, not run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${RVIOMMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rviommu}
QEMU_PKG_VERSION=1:10.2.2+ds-1
QEMU_SRC_DIRNAME=qemu-10.2.2+ds
SRC_DIR=$CACHE/src/$QEMU_SRC_DIRNAME          # pristine unpacked Debian source (read-only by convention)
# The two trees sit at the same relative place to their build directories, so
# that ccache (CCACHE_BASEDIR) shares every object the two builds have in common.
TREE_RS=$CACHE/rs/qemu                          # pristine + wrap fixes + overlay + patches
BUILD_RS=$CACHE/rs/build                        # build of TREE_RS (Rust intel-iommu)
TREE_REF=$CACHE/ref/qemu                        # pristine + wrap fixes only
BUILD_REF=$CACHE/ref/build                      # build of TREE_REF (C intel-iommu)
BUILD_FUZZ=$CACHE/generic-fuzz/build            # TREE_RS with clang and --enable-fuzzing
TARGETS=x86_64-softmmu,aarch64-softmmu
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$CACHE/ccache}
export CCACHE_BASEDIR=$CACHE
export CCACHE_NOHASHDIR=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/cargo-target}

STEP_NAME=""
step() { STEP_NAME="$*"; echo "==> [$(date +%H:%M:%S)] $*"; }
info() { echo "    $*"; }
die() { echo "ERROR: step '${STEP_NAME:-?}' failed: $*" >&2; exit 1; }
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "ERROR: step \"${STEP_NAME:-?}\" failed (exit $rc); see the output above" >&2; fi' EXIT

need_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Print a ninja build's output compactly: one progress line per 5% of the
# edges, every failure with the compiler's messages, and a count (not the
# text) of the warnings of QEMU's and the crates' own code.
ninja_progress() {
    awk '
      /^\[[0-9]+\/[0-9]+\]/ {
          inwarn = 0
          split(substr($1, 2), a, "/"); n = a[1] + 0; t = a[2] + 0;
          pct = (t > 0) ? int(n * 20 / t) : 0;
          if (pct != last || n == t) { last = pct; printf("    ninja %s\n", substr($0, 1, 120)); fflush(); }
          next
      }
      /^FAILED:/ { failed = 1 }
      /^(warning|[^ ]*: warning)/ && !failed { inwarn = 1; warnings++ }
      /^(error|[^ ]*: error)/ { inwarn = 0 }
      inwarn && !failed { next }
      { print; fflush() }
      END { if (warnings) printf("    (%d compiler warnings not shown)\n", warnings) }'
}

# The x86 guest kit (its kit.env: FIRMWARE_DIR and the guests) and both
# builds' emulators named as arguments, for the tools that compare our
# build with the reference one (bench, device fuzzing).
kit_and_both_builds() {
    local bin b
    step "guest kit (firmware)"
    "$REPO/scripts/guest/kit.sh" > "$CACHE/guest-kit.log" 2>&1 \
        || { cat "$CACHE/guest-kit.log"; die "scripts/guest/kit.sh failed"; }
    . "$CACHE/guest/kit.env"
    for bin in "$@"; do
        for b in "$BUILD_RS" "$BUILD_REF"; do
            [ -x "$b/$bin" ] || die "no $bin in $b (make qemu ref)"
        done
    done
}
