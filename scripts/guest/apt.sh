# Private apt configuration of the guest scripts (kit.sh, kernel.sh). Sourced after
# common.sh, not run.  The system's own apt lists and caches are not touched: the
# index of one Debian suite on the machine's own mirror lives under $GAPT.
#
# Set before calling the functions:
#   GAPT       directory of the private configuration (lists, cache, sources.list)
#   APT_SUITE  Debian suite (trixie: also trixie-updates and trixie-security; sid: only sid)
#   APT_DEBS   where download_deb puts .deb files
#   APT_ARCH   optional: the one architecture of the index (e.g. arm64 for an arm64 guest);
#              unset: the host's.  Give each architecture its own GAPT and APT_DEBS: the
#              lists and the .deb files of one version of a package differ per architecture.
#
#   apt_update            apt-get update of the private lists (once per run)
#   candidate PKG         candidate version of PKG in them ("" or "(none)" when absent)
#   download_deb PKG VER  apt-get download PKG=VER into $APT_DEBS unless already there; sets DEB
#   apt_cmd TOOL ARGS...  apt-get/apt-cache with the private configuration
#   host_packages PKG...  install the missing ones on the host (system apt, need_root)

apt_opts() {
    APT_OPTS=(-o "Dir::Etc::SourceList=$GAPT/sources.list" -o "Dir::Etc::SourceParts=$GAPT/sources.list.d"
              -o "Dir::State::Lists=$GAPT/lists" -o "Dir::Cache=$GAPT/cache"
              -o "Dir::Etc::Preferences=$GAPT/preferences" -o "Dir::Etc::PreferencesParts=$GAPT/preferences.d"
              -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
    # A foreign architecture as the native one of this private configuration: apt-cache
    # and apt-get download then see only that architecture's packages (no :arm64 suffixes).
    [ -z "${APT_ARCH:-}" ] || APT_OPTS+=(-o "APT::Architecture=$APT_ARCH" -o "APT::Architectures=$APT_ARCH")
}
apt_cmd() { local tool=$1; shift; apt_opts; "$tool" "${APT_OPTS[@]}" "$@"; }

# The machine's own mirrors: the first URI of a stanza (deb822) or line (one-line format)
# whose suites are not -security, and the one whose suites are.
machine_mirror() {   # $1 = main | security
    local want=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v want="$want" '
            function flush() { if (uris != "") { sec = (suites ~ /-security/);
                                 if ((want == "security") == sec && !done) { print uris; done = 1 } }
                               uris = ""; suites = "" }
            /^[ \t]*$/ { flush(); next }
            /^URIs:/   { uris = $2 }
            /^Suites:/ { $1 = ""; suites = $0 }
            END { flush() }' "$f"
    done
    awk -v want="$want" '$1 == "deb" { u = ""; for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { u = $i; s = $(i + 1); break }
                           if (u != "" && ((want == "security") == (s ~ /-security/))) print u }' \
        /etc/apt/sources.list 2>/dev/null || true
}

apt_update() {
    [ -n "${APT_UPDATED:-}" ] && return 0
    : "${GAPT:?}" "${APT_SUITE:?}"
    local main sec="" what=$APT_SUITE
    main=$(machine_mirror main | sed -n 1p || true)
    [ -n "$main" ] || die "cannot find the machine's Debian mirror in /etc/apt/sources.list{,.d}"
    mkdir -p "$GAPT/lists/partial" "$GAPT/cache/archives/partial" "$GAPT/sources.list.d" "$GAPT/preferences.d"
    : > "$GAPT/preferences"
    {
        echo "deb $main $APT_SUITE main"
        case "$APT_SUITE" in
            sid|unstable|experimental) ;;   # no -updates or -security suites
            *)  sec=$(machine_mirror security | sed -n 1p || true)
                echo "deb $main $APT_SUITE-updates main"; what="$what, $APT_SUITE-updates"
                [ -z "$sec" ] || { echo "deb $sec $APT_SUITE-security main"; what="$what, $APT_SUITE-security"; } ;;
        esac
    } > "$GAPT/sources.list"
    info "apt-get update (private lists: $what)"
    apt_cmd apt-get update -qq || die "apt-get update of the private $APT_SUITE lists failed"
    APT_UPDATED=1
}

candidate() {
    apt_cmd apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && !n {print $2; n = 1}'
}

find_deb() {
    local f
    DEB=""
    for f in "$APT_DEBS/${1}_"*.deb; do
        [ -f "$f" ] && [ "$(dpkg-deb -f "$f" Version)" = "$2" ] && { DEB=$f; return 0; }
    done
    return 0
}
download_deb() {
    local pkg=$1 ver=$2
    : "${APT_DEBS:?}"
    mkdir -p "$APT_DEBS"
    find_deb "$pkg" "$ver"
    if [ -z "$DEB" ]; then
        apt_update
        (cd "$APT_DEBS" && apt_cmd apt-get download -qq "$pkg=$ver" >/dev/null) \
            || die "apt-get download $pkg=$ver failed"
        find_deb "$pkg" "$ver"
    fi
    [ -n "$DEB" ] || die "downloaded $pkg=$ver but cannot find its .deb"
}

# Install the missing ones of the given packages on the host (the system's apt, as root).
host_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then info "host packages present: $*"; return 0; fi
    info "installing: ${missing[*]}"
    need_root apt-get update -qq || die "apt-get update failed"
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
        >"$CACHE/apt-install.log" 2>&1 || { tail -20 "$CACHE/apt-install.log"; die "apt-get install failed"; }
}
