#!/bin/bash
# Run the project's functional tests (every tests/functional/{x86_64,aarch64}/test_*.py of
# this repo; QEMU's own tests are not here) with QEMU's qemu_test framework, one test method per
# process, each under a time limit.
#
#   tests/functional/run.sh [--qemu PATH] [--timeout SECONDS] [PATTERN...]
#
#   --qemu      QEMU binary (default: $CACHE/rs/build/qemu-system-x86_64, the Rust build;
#               e.g. $CACHE/ref/build/qemu-system-x86_64 runs the same tests on the C device;
#               aarch64/ tests run the qemu-system-aarch64 next to it)
#   --timeout   limit per test method (default 600)
#   PATTERN     run only the tests whose id contains PATTERN (e.g. test_dma_lazy, no_iommu)
#
# Without a PATTERN every test runs except those of x86_64/test_upstream_*.py: upstream's own
# tests adapted to this machine, run on the C device and ours by tests/upstream-qtests.sh
# (`make upstream`), which selects them with a PATTERN; `make functional` does not run them
# a second time.
#
# Environment: QEMU_BUILD_ROOT (where qemu_test writes logs: <it>/tests/functional/x86_64/
# <test id>/; default the binary's build dir), QEMU_TREE (QEMU source tree giving python/
# and tests/functional/qemu_test; default the Rust tree, else the pristine source),
# QEMU_TEST_KEEP_SCRATCH=1 keeps the scratch dirs.
# Builds/validates the guest kit first (scripts/guest/kit.sh; a no-op when cached), and the
# arm64 kit (scripts/guest/kit.sh arm64) when a selected test uses it (Kit.load(arch='arm64')).
# Exit status: 0 when every selected test passed (or was skipped), 1 otherwise.
. "$(dirname "$0")/../../scripts/common.sh"

QEMU=$BUILD_RS/qemu-system-x86_64
LIMIT=600
PATTERNS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --qemu) QEMU=$2; shift 2 ;;
        --timeout) LIMIT=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) PATTERNS+=("$1"); shift ;;
    esac
done

step "setup"
[ -x "$QEMU" ] || die "no QEMU binary at $QEMU (build it with scripts/setup.sh, or pass --qemu)"
QEMU=$(cd "$(dirname "$QEMU")" && pwd)/$(basename "$QEMU")
if [ -z "${QEMU_TREE:-}" ]; then
    QEMU_TREE=$SRC_DIR
    [ -d "$TREE_RS/tests/functional/qemu_test" ] && QEMU_TREE=$TREE_RS
fi
[ -d "$QEMU_TREE/tests/functional/qemu_test" ] && [ -d "$QEMU_TREE/python/qemu" ] \
    || die "no qemu_test/python in QEMU_TREE=$QEMU_TREE (run scripts/setup.sh)"
if [ -z "${QEMU_BUILD_ROOT:-}" ]; then
    QEMU_BUILD_ROOT=$(dirname "$QEMU")
    [ -f "$QEMU_BUILD_ROOT/build.ninja" ] || QEMU_BUILD_ROOT=$CACHE/functional
fi
mkdir -p "$QEMU_BUILD_ROOT"
python3 -c 'import pycotap' 2>/dev/null || die "python module pycotap missing (scripts/setup.sh deps)"
FT=$REPO/tests/functional
# Ours first: the QEMU tree's tests/functional may hold an older copy of rviommu_kit.py.
export PYTHONPATH=$FT:$QEMU_TREE/tests/functional:$QEMU_TREE/python${PYTHONPATH:+:$PYTHONPATH}
export QEMU_TEST_QEMU_BINARY=$QEMU QEMU_BUILD_ROOT
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the repo (the overlay would copy it)
info "QEMU     $QEMU"
info "python   $QEMU_TREE/{python,tests/functional}"
info "logs     $QEMU_BUILD_ROOT/tests/functional/{x86_64,aarch64}/<test id>/"

step "guest kit"
"$REPO/scripts/guest/kit.sh" > "$CACHE/guest-kit.log" 2>&1 \
    || { cat "$CACHE/guest-kit.log"; die "scripts/guest/kit.sh failed"; }
info "ready ($(sed -n 's/^KERNEL_PKG=//p' "$CACHE/guest/kit.env"), log $CACHE/guest-kit.log)"

step "test list"
FILES=$(ls "$FT"/x86_64/test_*.py "$FT"/aarch64/test_*.py 2>/dev/null) || die "no tests in $FT/x86_64"
QEMU_AARCH64=${QEMU%-x86_64}-aarch64
# "file<TAB>id" for every test method, in definition order.
IDS=$(python3 - $FILES <<'EOF'
import importlib.util, inspect, sys, unittest
for path in sys.argv[1:]:
    name = path.rsplit('/', 1)[1][:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for _, cls in inspect.getmembers(mod, inspect.isclass):
        if cls.__module__ != name or not issubclass(cls, unittest.TestCase):
            continue
        meths = [m for m, _ in sorted(((m, f.__code__.co_firstlineno)
                                       for m, f in vars(cls).items()
                                       if m.startswith('test') and callable(f)),
                                      key=lambda x: x[1])]
        for m in meths:
            print(f'{path}\t{name}.{cls.__name__}.{m}')
EOF
) || die "cannot list the tests"

# selected ID: whether the PATTERNs (or the default selection) take this test id.
selected() {
    local p
    if [ ${#PATTERNS[@]} -gt 0 ]; then
        for p in "${PATTERNS[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
        return 1
    fi
    [[ $1 != test_upstream_* ]]    # tests/upstream-qtests.sh runs them (see the header)
}

# The arm64 kit, only when a selected test needs it (a download of about 100 MB the first
# time).  As for the x86 kit, a kit that cannot be built fails the run: CI must not pass
# with those tests skipped.
ARM64_USERS=$(while IFS=$'\t' read -r file id; do
                  [ -n "$id" ] && selected "$id" && grep -l "Kit.load(arch='arm64')" "$file" || true
              done <<< "$IDS" | sort -u)
if [ -n "$ARM64_USERS" ]; then
    step "guest kit (arm64)"
    "$REPO/scripts/guest/kit.sh" arm64 > "$CACHE/guest-kit-arm64.log" 2>&1 \
        || { tail -20 "$CACHE/guest-kit-arm64.log"; die "scripts/guest/kit.sh arm64 failed"; }
    info "ready ($(sed -n 's/^KERNEL_PKG=//p' "$CACHE/guest/kit-arm64.env"), log $CACHE/guest-kit-arm64.log)"
fi

step "tests"
declare -i pass=0 fail=0 skip=0
FAILED=()
while IFS=$'\t' read -r file id; do
    [ -n "$id" ] || continue
    selected "$id" || continue
    arch=x86_64; bin=$QEMU
    if [[ $file == */aarch64/* ]]; then
        arch=aarch64; bin=$QEMU_AARCH64
        [ -x "$bin" ] || die "no $bin for $id"
    fi
    logdir=$QEMU_BUILD_ROOT/tests/functional/$arch/$id
    out=$(mktemp); t0=$(date +%s.%N)
    # -k '*<id>': a pattern with a wildcard is matched (fnmatch) against the whole test
    # name, module.Class.method, so exactly this method runs.  Without one, unittest
    # matches -k as a substring and test_x would run test_x_e1000e (or test_x_strict) too.
    rc=0
    (cd "$FT" && QEMU_TEST_QEMU_BINARY=$bin timeout -k 10 "$LIMIT" python3 "$file" -k "*$id") \
        > "$out" 2>&1 || rc=$?
    secs=$(echo "$(date +%s.%N) $t0" | awk '{printf "%.1f", $1 - $2}')
    if [ $rc -eq 0 ] && grep -q "^ok .*# [Ss][Kk][Ii][Pp]" "$out"; then
        skip+=1; echo "SKIP  $id  (${secs}s) $(sed -n 's/^ok .*# [Ss][Kk][Ii][Pp] *//p' "$out" | head -1)"
    elif [ $rc -eq 0 ] && grep -q "^ok " "$out"; then
        pass+=1; echo "PASS  $id  (${secs}s)"
    else
        fail+=1; FAILED+=("$id")
        [ $rc -eq 124 ] && echo "FAIL  $id  (${secs}s, killed after the ${LIMIT}s limit)" \
                        || echo "FAIL  $id  (${secs}s)"
        grep -v '^\s*$' "$out" | tail -25 | sed 's/^/      | /'
    fi
    echo "      logs: $logdir/{base.log,console.log,default.log}"
    rm -f "$out"
done <<< "$IDS"

step "summary"
info "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] || { for f in "${FAILED[@]}"; do info "failed: $f"; done; exit 1; }
