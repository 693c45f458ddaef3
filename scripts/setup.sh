#!/bin/bash
# Build QEMU 10.2.2 (Debian source 1:10.2.2+ds-1) with this overlay: our Rust
# intel-iommu replaces the C one.  Idempotent and incremental; everything that
# is built or downloaded lives under $CACHE (outside the clone).
#
#   scripts/setup.sh            deps, source, tree, configure, build (Rust build)
#   scripts/setup.sh ref        the same for the pristine reference build (C device)
#   scripts/setup.sh generic-fuzz  QEMU's libFuzzer binary qemu-fuzz-x86_64 of the Rust tree, with clang
#   scripts/setup.sh deps       only install the host packages
#   scripts/setup.sh sync       only sync the overlay and patches into the tree
#   scripts/setup.sh testdeps   packages only the tests use (libvirt's daemon, QEMU driver, virsh)
. "$(dirname "$0")/common.sh"

WHAT=${1:-rs}

APT_PACKAGES="ninja-build pkg-config libglib2.0-dev libpixman-1-dev flex bison libclang-dev
  bindgen libfdt-dev zlib1g-dev libslirp-dev dpkg-dev ccache busybox-static cpio xz-utils zstd
  libelf-dev bc python3-venv git seabios qemu-utils"
# Installed without their recommendations (no system QEMU, no network stack):
# tests/functional/*/test_libvirt*.py start the daemon themselves.
TEST_APT_PACKAGES="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
PIP_PACKAGES="meson==1.12.1 pycotap==1.3.1"

# apt_install [--no-install-recommends] PACKAGE...: install those not installed yet.
apt_install() {
    local missing=() opts=() p
    if [ "${1:-}" = --no-install-recommends ]; then opts=("$1"); shift; fi
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        info "installing: ${missing[*]}"
        need_root apt-get update -qq || die "apt-get update failed"
        need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "${missing[@]}" \
            >"$CACHE/apt-install.log" 2>&1 || { tail -20 "$CACHE/apt-install.log"; die "apt-get install failed"; }
    else
        info "all present"
    fi
}

install_deps() {
    step "host packages (apt)"
    apt_install $APT_PACKAGES
    step "python packages (pip)"
    if python3 -c 'import sys, mesonbuild.coredata as c, pycotap
v = tuple(int(x) for x in c.version.split(".")[:2]); sys.exit(0 if v >= (1, 5) else 1)' 2>/dev/null \
        && command -v meson >/dev/null; then
        info "meson $(meson --version), pycotap present"
    else
        python3 -m pip install -q $PIP_PACKAGES 2>&1 | grep -v "Running pip as the 'root'" || true
        command -v meson >/dev/null || die "pip did not install meson"
    fi
    step "Rust toolchain"
    command -v cargo >/dev/null && command -v rustc >/dev/null || die "cargo/rustc not found (rustup is expected on this machine)"
    info "$(rustc --version)"
}

fetch_source() {
    step "QEMU source: Debian qemu $QEMU_PKG_VERSION"
    if [ -f "$SRC_DIR/.rviommu-unpacked" ]; then
        info "already unpacked in $SRC_DIR"; return
    fi
    local apt="$CACHE/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$CACHE/src"
    # A deb-src entry for sid on the mirror this machine already uses.
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
                        /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || die "cannot find the machine's Debian mirror in /etc/apt/sources.list{,.d}"
    echo "deb-src $uri sid main" > "$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
    info "apt-get update (private lists, deb-src sid from $uri)"
    apt-get "${opts[@]}" update -qq || die "apt-get update of the private deb-src list failed"
    info "apt-get source qemu=$QEMU_PKG_VERSION"
    rm -rf "$SRC_DIR"
    (cd "$CACHE/src" && apt-get "${opts[@]}" source -qq "qemu=$QEMU_PKG_VERSION" >/dev/null) \
        || die "apt-get source qemu=$QEMU_PKG_VERSION failed"
    [ -f "$SRC_DIR/VERSION" ] || die "unpacked source not found at $SRC_DIR"
    grep -q '^10\.2\.2' "$SRC_DIR/VERSION" || die "unexpected QEMU version $(cat "$SRC_DIR/VERSION")"
    touch "$SRC_DIR/.rviommu-unpacked"
}

# Copy the pristine source to a tree of ours once; later runs only touch what changed.
make_tree() {
    local tree=$1
    if [ ! -f "$tree/.rviommu-tree" ]; then
        info "copying pristine source to $tree"
        rm -rf "$tree"; mkdir -p "$(dirname "$tree")"
        cp -a "$SRC_DIR" "$tree"
        touch "$tree/.rviommu-tree"
    fi
}

prepare_rust_wraps() {
    local tree=$1
    step "QEMU's Rust crates (cargo -> subprojects/packagecache, method = cargo wraps)"
    python3 "$REPO/scripts/prepare-wraps.py" "$tree" "$REPO/subprojects/packagefiles" "$CACHE/cargo-fetch" \
        || die "preparing the Rust wraps failed"
}

# Overlay files are copied when their content differs; files that left the overlay
# are restored from the pristine source (or removed).  Optional arguments: the
# overlay folders to copy (default: all of them).
sync_overlay() {
    local tree=$1; shift
    local roots=("$@")
    [ ${#roots[@]} -gt 0 ] || roots=(rust hw include tests docs subprojects)
    step "overlay (${roots[*]}) -> $tree"
    local manifest="$tree/.rviommu-overlay-files" new changed=0
    new=$(cd "$REPO" && find "${roots[@]}" -type f \
            ! -path "rust/target/*" ! -name "*.orig" ! -name "*~" 2>/dev/null | LC_ALL=C sort || true)
    # Root-level files of ours that are not QEMU's are never copied (README, Cargo.toml, meson.build).
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if ! cmp -s "$REPO/$f" "$tree/$f"; then
            mkdir -p "$(dirname "$tree/$f")"; cp "$REPO/$f" "$tree/$f"; changed=$((changed + 1))
        fi
    done <<< "$new"
    if [ -f "$manifest" ]; then
        while IFS= read -r f; do
            [ -n "$f" ] || continue
            grep -qxF "$f" <<< "$new" && continue
            if [ -f "$SRC_DIR/$f" ]; then cp "$SRC_DIR/$f" "$tree/$f"; else rm -f "$tree/$f"; fi
            changed=$((changed + 1))
        done < "$manifest"
    fi
    echo "$new" > "$manifest"
    info "$changed file(s) updated"
}

# The tree holds pristine files with patches/ applied. When the series changes, the
# files it touches (before or now) are recomputed from the pristine source in a scratch
# directory and copied into the tree only where their content differs, so files whose
# patched content is unchanged keep their timestamps (no needless rebuild).
patch_files() {   # files patches create, modify or delete
    sed -n -e 's|^+++ b/\([^	 ]*\).*|\1|p' -e 's|^--- a/\([^	 ]*\).*|\1|p' "$@" | LC_ALL=C sort -u
}

apply_patches() {   # tree [patch directory, default patches/]
    local tree=$1 dir=${2:-$REPO/patches}
    step "patches ($(basename "$dir")/) -> $tree"
    local applied="$tree/.rviommu-applied"
    local want have
    want=$(cd "$dir" && cat $(ls *.patch 2>/dev/null | LC_ALL=C sort) 2>/dev/null | sha256sum | cut -d' ' -f1)
    have=$(cat "$applied/series.sha256" 2>/dev/null || true)
    if [ "$want" = "$have" ]; then info "series unchanged"; return; fi
    local new_series=() old_series=() files work f changed=0
    for p in $(ls "$dir"/*.patch 2>/dev/null | LC_ALL=C sort); do new_series+=("$p"); done
    for p in $(ls "$applied"/*.patch 2>/dev/null | LC_ALL=C sort); do old_series+=("$p"); done
    files=$(patch_files "${new_series[@]}" "${old_series[@]}" /dev/null | LC_ALL=C sort -u)
    work=$(mktemp -d)
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ -f "$SRC_DIR/$f" ]; then mkdir -p "$work/$(dirname "$f")"; cp -p "$SRC_DIR/$f" "$work/$f"; fi
    done <<< "$files"
    for p in "${new_series[@]}"; do
        info "applying $(basename "$p")"
        patch -d "$work" -p1 -s --no-backup-if-mismatch < "$p" >/dev/null \
            || { rm -rf "$work"; die "$(basename "$p") does not apply to QEMU $QEMU_PKG_VERSION"; }
    done
    while IFS= read -r f; do
        [ -n "$f" ] || continue
        if [ -f "$work/$f" ]; then
            cmp -s "$work/$f" "$tree/$f" && continue
            mkdir -p "$(dirname "$tree/$f")"; cp "$work/$f" "$tree/$f"
        elif [ -f "$tree/$f" ]; then
            rm -f "$tree/$f"
        else
            continue
        fi
        changed=$((changed + 1))
    done <<< "$files"
    rm -rf "$work" "$applied"
    mkdir -p "$applied"
    for p in "${new_series[@]}"; do cp "$p" "$applied/"; done
    echo "$want" > "$applied/series.sha256"
    info "$changed patched file(s) changed in the tree"
}

configure_build() {
    local tree=$1 build=$2; shift 2
    local args=(--target-list=$TARGETS --disable-docs --disable-user --disable-tools
                --disable-guest-agent --enable-slirp --disable-install-blobs --disable-werror
                "--cc=ccache gcc" "--cxx=ccache g++" "$@")
    local sig
    sig=$(printf '%s\n' "${args[@]}" | sha256sum | cut -d' ' -f1)
    step "configure $(basename "$build")"
    if [ -f "$build/build.ninja" ] && [ "$(cat "$build/.rviommu-configure" 2>/dev/null)" = "$sig" ]; then
        info "configured already (meson regenerates by itself when meson.build files change)"
        return
    fi
    rm -rf "$build"; mkdir -p "$build"
    (cd "$build" && "$tree/configure" "${args[@]}" > configure.log 2>&1) \
        || { tail -30 "$build/configure.log"; die "configure failed, log: $build/configure.log"; }
    echo "$sig" > "$build/.rviommu-configure"
    info "done"
}

build_qemu() {   # build dir [extra ninja targets]
    local build=$1; shift
    step "build $(basename "$build") (ninja -j$JOBS; a fresh build takes 10-15 min on 2 cores)"
    ninja -C "$build" -j"$JOBS" qemu-system-x86_64 qemu-system-aarch64 "$@" 2>&1 | ninja_progress \
        || die "ninja failed in $build"
    info "$(ls -la "$build/qemu-system-x86_64" | awk '{print $6, $7, $8, $9}')"
}

# Packages, the Debian source, and the tree of the Rust build (overlay, wraps, patches).
rust_tree() {
    install_deps
    fetch_source
    step "tree for the Rust build"
    make_tree "$TREE_RS"
    sync_overlay "$TREE_RS"
    prepare_rust_wraps "$TREE_RS"
    apply_patches "$TREE_RS"
}

mkdir -p "$CACHE"
case "$WHAT" in
    deps) install_deps ;;
    testdeps)
        step "packages for the tests (apt, without recommendations)"
        apt_install --no-install-recommends $TEST_APT_PACKAGES
        ;;
    rs)
        rust_tree
        # The guest kit links SeaBIOS, the option ROMs and iPXE there (scripts/guest/kit.sh).
        configure_build "$TREE_RS" "$BUILD_RS" --enable-rust --firmwarepath="$CACHE/firmware"
        build_qemu "$BUILD_RS"
        # A binary run from the build directory looks for its configured paths
        # under qemu-bundle/ (QEMU's get_relocated_path): link the firmware
        # path there too, so that both the built and an installed binary find it.
        mkdir -p "$BUILD_RS/qemu-bundle$(dirname "$CACHE/firmware")"
        ln -sfn "$CACHE/firmware" "$BUILD_RS/qemu-bundle$CACHE/firmware"
        ;;
    sync)
        # overlay and patches only (for iterating on the device with ninja)
        sync_overlay "$TREE_RS"
        apply_patches "$TREE_RS"
        ;;
    ref)
        install_deps
        fetch_source
        step "tree for the reference build (pristine, C intel-iommu, plus our test device)"
        make_tree "$TREE_REF"
        # Only the PCIe DMA test device (ATS/PASID requests for benchmarks and
        # side-by-side tests) and the two lines that build it: patches/ref/.
        sync_overlay "$TREE_REF" rust/hw/misc rust/testdev-core
        prepare_rust_wraps "$TREE_REF"
        apply_patches "$TREE_REF" "$REPO/patches/ref"
        # Rust stays enabled (Rust HPET/PL011, as in our build) so that the two
        # builds differ only in the intel-iommu and share ccache objects.
        configure_build "$TREE_REF" "$BUILD_REF" --enable-rust
        build_qemu "$BUILD_REF"
        ;;
    generic-fuzz)
        # QEMU's own libFuzzer targets (qemu-fuzz-*, the generic-fuzz target
        # among them) from the Rust tree, with clang (scripts/fuzz-generic.sh).
        rust_tree
        apt_install --no-install-recommends clang-14 libclang-rt-14-dev
        configure_build "$TREE_RS" "$BUILD_FUZZ" --enable-rust --enable-fuzzing \
            "--cc=ccache clang-14" "--cxx=ccache clang++-14"
        step "build $(basename "$(dirname "$BUILD_FUZZ")") (ninja -j$JOBS; a fresh build takes 15-25 min on 2 cores)"
        ninja -C "$BUILD_FUZZ" -j"$JOBS" qemu-fuzz-x86_64 2>&1 | ninja_progress \
            || die "ninja failed in $BUILD_FUZZ"
        ;;
    *) die "unknown target '$WHAT' (rs, ref, generic-fuzz, deps, sync)" ;;
esac
step "done"
