#!/bin/bash
# Build a busybox initramfs (.cpio.gz) whose /init runs one test body and powers off.
#
#   scripts/guest/mkinitramfs.sh --out FILE.cpio.gz --body BODY.sh [--name NAME]
#       [--modules "mod1 mod2 ..."] [--file HOSTPATH:GUESTPATH]... [--busybox PATH] [--kmods DIR]
#
#   --body     shell fragment (busybox ash) that /init sources after the modules are loaded
#   --name     test name printed in the BEGIN marker (default: the body's file name)
#   --modules  kernel modules to load (names as in modules.dep, '-' and '_' alike); their
#              dependency closure is resolved from modules.dep, built-in ones are skipped
#   --file     extra file to copy into the initramfs (repeatable)
#   --busybox, --kmods  default to the kit's ($CACHE/guest/kit.env: BUSYBOX, KERNEL_MODULES);
#              --kmods none: a kernel without modules (e.g. scripts/guest/kernel.sh's), no
#              --modules allowed.  A busybox of another architecture (the arm64 kit's, for
#              an arm64 kernel's modules) cannot list its applets here: the archive then
#              holds /bin/sh only, and a small /init makes the applet links at boot
#              (`busybox --install -s`) before it runs the /init described below.
#
# The output is cached by content: if FILE.cpio.gz exists and was made from the same inputs
# (FILE.cpio.gz.key) nothing is done.  The archive itself is reproducible (sorted, mtime 0).
#
# The /init it writes (see INIT below) prints, on the console:
#   RVIOMMU-TEST-BEGIN <name> kernel=<uname -r>
#   RVIOMMU-MODULE: <path>                  per module loaded
#   RVIOMMU-CMD: <command>                  before the output of each command run with `run`
#   RVIOMMU-CMD-RC: <exit status>           after it
#   RVIOMMU-FAIL: <reason>                  each time the body calls `fail`
#   RVIOMMU-TEST-RESULT: PASS | FAIL <first reason>
#   RVIOMMU-TEST-END
# and then runs `poweroff -f`.  The body's helpers: run CMD..., check CMD... (run, fail on a
# non-zero status), fail REASON, pass, kparam KEY (value of rviommu.KEY=... on the kernel
# command line).  A body that neither fails nor calls `pass` gives FAIL (no verdict).
# Kernel parameters read by /init: rviommu.timeout=SECONDS (guest watchdog, default 600),
# rviommu.loglevel=N (console log level during the body, default 4: errors only).
. "$(dirname "$0")/../common.sh"

OUT="" BODY="" NAME="" MODULES="" BB="" KMODS="" FILES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --body) BODY=$2; shift 2 ;;
        --name) NAME=$2; shift 2 ;;
        --modules) MODULES=$2; shift 2 ;;
        --file) FILES+=("$2"); shift 2 ;;
        --busybox) BB=$2; shift 2 ;;
        --kmods) KMODS=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
step "initramfs ${OUT:-?}"
[ -n "$OUT" ] || die "--out is required"
[ -n "$BODY" ] && [ -f "$BODY" ] || die "--body FILE is required (got '${BODY}')"
NAME=${NAME:-$(basename "$BODY" .sh)}
if [ -z "$BB" ] || [ -z "$KMODS" ]; then
    [ -f "$CACHE/guest/kit.env" ] || die "no kit ($CACHE/guest/kit.env): run scripts/guest/kit.sh first"
    [ -n "$BB" ] || BB=$(sed -n 's/^BUSYBOX=//p' "$CACHE/guest/kit.env")
    [ -n "$KMODS" ] || KMODS=$(sed -n 's/^KERNEL_MODULES=//p' "$CACHE/guest/kit.env")
fi
[ -x "$BB" ] || die "busybox '$BB' is not executable"
# Whether this busybox runs on the host (not one of another architecture).
FOREIGN=0
"$BB" true 2>/dev/null || FOREIGN=1
if [ "$KMODS" = none ]; then
    [ -z "${MODULES// /}" ] || die "--modules '$MODULES' given with --kmods none (a kernel without modules)"
    KREL=none
else
    [ -f "$KMODS/modules.dep" ] || die "no modules.dep in '$KMODS'"
    KREL=$(basename "$KMODS")
fi
# HOSTPATH:GUESTPATH, split at the last ':' (host paths may hold one, e.g. "1:2.3-4").
for f in "${FILES[@]}"; do
    case "${f##*:}" in /*) ;; *) die "--file $f: want HOSTPATH:/GUESTPATH" ;; esac
    [ -f "${f%:*}" ] || die "--file $f: no such host file"
done

# ------------------------------------------------------------------ modules
# norm PATH-OR-NAME: sets N to the module name, '-' -> '_' (no fork: 4000+ calls)
norm() { N=${1##*/}; N=${N%%.ko*}; N=${N//-/_}; }
declare -A DEP_OF=() PATH_OF=() BUILTIN=()
[ "$KMODS" = none ] || while IFS= read -r line; do
    p=${line%%:*}
    norm "$p"
    PATH_OF[$N]=$p
    DEP_OF[$N]=${line#*:}
done < "$KMODS/modules.dep"
if [ -f "$KMODS/modules.builtin" ]; then
    while IFS= read -r p; do norm "$p"; BUILTIN[$N]=1; done < "$KMODS/modules.builtin"
fi
declare -A WANT=()
for m in $MODULES; do
    norm "$m"; n=$N
    if [ -n "${BUILTIN[$n]:-}" ]; then info "module $m is built into $KREL"; continue; fi
    [ -n "${PATH_OF[$n]:-}" ] || die "module '$m' is neither in modules.dep nor built in ($KREL)"
    WANT[${PATH_OF[$n]}]=1
    for d in ${DEP_OF[$n]}; do WANT[$d]=1; done
done
# modules.dep lists every module's transitive dependencies, so a module always has more of
# them than each of its dependencies: ascending by that count is a valid load order.
ORDER=$(for p in "${!WANT[@]}"; do
            norm "$p"; set -- ${DEP_OF[$N]}; printf '%05d %s\n' $# "$p"
        done | LC_ALL=C sort | awk '{print $2}')

# ------------------------------------------------------------------ cache key
INIT_VERSION=1
KEY=$( {
    echo "init-version $INIT_VERSION"
    [ "$FOREIGN" = 0 ] || echo "foreign-busybox"
    sha256sum < "$0"
    sha256sum < "$BB"
    echo "kmods $KMODS"
    echo "name $NAME"
    echo "modules $ORDER"
    sha256sum < "$BODY"
    for f in "${FILES[@]}"; do echo "file ${f##*:}"; sha256sum < "${f%:*}"; done
} | sha256sum | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$OUT.key" 2>/dev/null)" = "$KEY" ]; then
    info "cached ($(du -k "$OUT" | cut -f1) KiB)"
    exit 0
fi

# ------------------------------------------------------------------ tree
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "${OUT}.work.XXXXXX")
trap 'rc=$?; rm -rf "$WORK"; if [ $rc -ne 0 ]; then echo "ERROR: step \"${STEP_NAME:-?}\" failed (exit $rc); see the output above" >&2; fi' EXIT
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc/rviommu,rviommu}
[ "$KMODS" = none ] || mkdir -p "$R/lib/modules/$KREL"
cp "$BB" "$R/bin/busybox"; chmod 755 "$R/bin/busybox"
[ "$FOREIGN" = 1 ] || while IFS= read -r a; do
    [ "$a" = bin/busybox ] && continue
    case "$a" in */*) [ -d "$R/${a%/*}" ] || mkdir -p "$R/${a%/*}" ;; esac
    ln -s /bin/busybox "$R/$a"
done < <("$BB" --list-full)
[ -e "$R/bin/sh" ] || ln -s busybox "$R/bin/sh"
: > "$R/etc/rviommu/modules"
for p in $ORDER; do
    dst=${p%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
    mkdir -p "$R/lib/modules/$KREL/$(dirname "$dst")"
    # Decompressed: busybox insmod then needs no decompressor built in.
    case "$p" in
        *.ko.xz) xz -dc "$KMODS/$p" > "$R/lib/modules/$KREL/$dst" ;;
        *.ko.zst) zstd -qdc "$KMODS/$p" > "$R/lib/modules/$KREL/$dst" ;;
        *.ko.gz) gzip -dc "$KMODS/$p" > "$R/lib/modules/$KREL/$dst" ;;
        *.ko) cp "$KMODS/$p" "$R/lib/modules/$KREL/$dst" ;;
        *) die "unexpected module file $p" ;;
    esac || die "cannot decompress $p"
    echo "$KREL/$dst" >> "$R/etc/rviommu/modules"
done
[ -z "$ORDER" ] || info "modules: $(for p in $ORDER; do norm "$p"; printf '%s ' "$N"; done)"
cp "$BODY" "$R/rviommu/body.sh"
for f in "${FILES[@]}"; do
    mkdir -p "$R/$(dirname "${f##*:}")"; cp "${f%:*}" "$R/${f##*:}"
done
echo "$NAME" > "$R/etc/rviommu/name"

cat > "$R/init" <<'INIT'
#!/bin/sh
# /init written by scripts/guest/mkinitramfs.sh: load modules, run /rviommu/body.sh, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/ TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm

RVIOMMU_FAIL=""
RVIOMMU_PASS=""
kparam() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "rviommu.$1="*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}
fail() { echo "RVIOMMU-FAIL: $*"; [ -n "$RVIOMMU_FAIL" ] || RVIOMMU_FAIL="$*"; }
pass() { RVIOMMU_PASS=1; }
run() {
    echo "RVIOMMU-CMD: $*"
    "$@"
    RC=$?
    echo "RVIOMMU-CMD-RC: $RC"
    return $RC
}
check() { run "$@" || fail "command failed (status $RC): $*"; }
finish() {
    if [ -n "$RVIOMMU_FAIL" ]; then echo "RVIOMMU-TEST-RESULT: FAIL $RVIOMMU_FAIL"
    elif [ -n "$RVIOMMU_PASS" ]; then echo "RVIOMMU-TEST-RESULT: PASS"
    else echo "RVIOMMU-TEST-RESULT: FAIL the test body gave no verdict"; fi
    echo "RVIOMMU-TEST-END"
    sync
    sleep 1    # let the UART drain before the machine goes away
    poweroff -f
    sleep 10
}
run_body() { . /rviommu/body.sh; }

echo "RVIOMMU-TEST-BEGIN $(cat /etc/rviommu/name) kernel=$(uname -r)"
timeout=$(kparam timeout || echo 600)
( sleep "$timeout"
  echo "RVIOMMU-TEST-RESULT: FAIL guest watchdog: no verdict after ${timeout}s"
  echo "RVIOMMU-TEST-END"
  sleep 1; poweroff -f ) &
dmesg -n "$(kparam loglevel || echo 4)"
while read -r m; do
    if insmod "/lib/modules/$m"; then echo "RVIOMMU-MODULE: $m"; else fail "insmod $m"; fi
done < /etc/rviommu/modules
run_body
finish
INIT
chmod 755 "$R/init"
if [ "$FOREIGN" = 1 ]; then
    # The applet links, made by the guest's busybox itself: --install reads /proc/self/exe
    # for the link target and uses its own list of applets and their directories.
    mv "$R/init" "$R/rviommu/init"
    cat > "$R/init" <<'INIT'
#!/bin/sh
# /init of scripts/guest/mkinitramfs.sh for a busybox that could not run where the archive
# was made: make the applet links, then run the usual /init (/rviommu/init).
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
/bin/busybox umount /proc
exec /rviommu/init
INIT
    chmod 755 "$R/init"
    info "busybox of another architecture: applet links made at boot"
fi

# ------------------------------------------------------------------ archive
find "$R" -exec touch -h -d @0 {} +
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
    | gzip -n -9 > "$WORK/out.cpio.gz" || die "cpio/gzip failed"
mv "$WORK/out.cpio.gz" "$OUT"
echo "$KEY" > "$OUT.key"
info "written ($(du -k "$OUT" | cut -f1) KiB)"
