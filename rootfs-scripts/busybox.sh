#!/usr/bin/env bash
# busybox.sh ARCH DEST: a minimal busybox rootfs for any Debian architecture.
#
# The binary is the distribution's own busybox-static package for ARCH, so it
# is statically linked: a foreign one runs under a static QEMU with no
# libraries to find inside the rootfs.  DEST is a directory, or a tarball when
# it ends in .tar, .tar.gz, .tgz, .tar.xz or .tar.zst.
#
# Running it again is cheap: the result carries a stamp naming the .deb
# version and the layout version below, and nothing is rebuilt while both
# still match.
#
# Environment: PYCONTAIN_CACHE (default <repo>/build/cache) holds the .debs
# and the private apt state; PYCONTAIN_APT_MIRROR / PYCONTAIN_APT_SUITE
# override the mirror read from the host's apt sources.
set -euo pipefail

# shellcheck source=rootfs-scripts/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# Bump when the layout written below changes, so old builds are redone.
LAYOUT=1
PKG=busybox-static

usage() {
    cat <<EOF
usage: ${0##*/} ARCH DEST
  ARCH  a Debian architecture: amd64 arm64 armhf armel i386 ppc64el s390x
        mips64el mipsel riscv64 (riscv64 only where the release has it)
  DEST  a directory, or a tarball path ending in .tar .tar.gz .tgz .tar.xz .tar.zst
EOF
}

if [[ $# -eq 1 && ($1 == -h || $1 == --help) ]]; then
    usage
    exit 0
fi
if [[ $# -ne 2 ]]; then
    usage >&2
    exit 2
fi
ARCH=$1
DEST=$(realpath -m -- "$2")
[[ $DEST != / ]] || die "refusing to build a rootfs over /"
TARGET=$(qemu_target "$ARCH") || die "unknown architecture '$ARCH' (expected a Debian name such as arm64 or armhf)"

TAR_FLAGS=()
case $DEST in
    *.tar) TAR_FLAGS=() ;;
    *.tar.gz | *.tgz) TAR_FLAGS=(--gzip) ;;
    *.tar.xz) TAR_FLAGS=(--xz) ;;
    *.tar.zst) TAR_FLAGS=(--zstd) ;;
    *) TAR_FLAGS=(dir) ;;
esac

mkdir -p "$PYCONTAIN_CACHE/debs" "$PYCONTAIN_CACHE/stamps"
# One build per architecture at a time: the private apt state and the .deb
# cache are shared between concurrent runs (tests, all.sh, a developer).
exec 9>"$PYCONTAIN_CACHE/busybox-$ARCH.lock"
flock 9

# --- 1. which version would we install? ------------------------------------
APT_ROOT=$PYCONTAIN_CACHE/apt/$ARCH
# The .deb is written into our cache, which apt's unprivileged _apt user may
# not be able to enter; downloading as root avoids a warning per run.
APT_OPTS=(-o "APT::Sandbox::User=root")

candidate() {
    # Prints the candidate version, or nothing.  Never touches the network.
    local v
    v=$("$@" 2>/dev/null | awk '/Candidate:/ {print $2}') || true
    [[ -n $v && $v != "(none)" ]] && printf '%s\n' "$v"
    return 0
}

use_private_apt() {
    mkdir -p "$APT_ROOT/lists/partial" "$APT_ROOT/cache/archives/partial" "$APT_ROOT/etc/parts"
    [[ -e $APT_ROOT/status ]] || : >"$APT_ROOT/status"
    write_private_sources "$ARCH" "$APT_ROOT/etc/sources.list"
    APT_OPTS=(
        -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH"
        -o "Dir::State=$APT_ROOT" -o "Dir::State::Lists=$APT_ROOT/lists"
        -o "Dir::State::status=$APT_ROOT/status" -o "Dir::Cache=$APT_ROOT/cache"
        -o "Dir::Etc::SourceList=$APT_ROOT/etc/sources.list"
        -o "Dir::Etc::SourceParts=$APT_ROOT/etc/parts"
        -o "Dir::Etc::Preferences=$APT_ROOT/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$APT_ROOT/etc/parts"
        -o "APT::Sandbox::User=root"
    )
}

arch_hint() {
    case $ARCH in
        riscv64 | loong64) echo "$ARCH is an official Debian architecture only from Debian 13 (trixie) on" ;;
        *) echo "is $ARCH part of this release?" ;;
    esac
}

sources_summary() {
    # "URI SUITE" of the first private source: enough to say where we looked.
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /:\/\//) {print $i " " $(i + 1); exit}}' \
        "$APT_ROOT/etc/sources.list"
}

# The newest .deb already in the cache wins: a rebuild then needs neither
# the network nor apt (whose cache queries take seconds once the host has
# several architectures).  PYCONTAIN_REFRESH=1 asks apt for a newer one.
cached_version() {
    local deb v best=""
    for deb in "$PYCONTAIN_CACHE/debs/${PKG}_"*"_$ARCH.deb"; do
        [[ -s $deb ]] || continue
        v=$(dpkg-deb -f "$deb" Version) || continue
        if [[ -z $best ]] || dpkg --compare-versions "$v" gt "$best"; then
            best=$v
        fi
    done
    [[ -n $best ]] && printf '%s\n' "$best"
    return 0
}

PKGSPEC=$PKG:$ARCH
VERSION=""
[[ ${PYCONTAIN_REFRESH:-0} == 1 ]] || VERSION=$(cached_version)
if [[ -z $VERSION ]]; then
    VERSION=$(candidate apt-cache policy "$PKGSPEC")
fi
if [[ -z $VERSION ]]; then
    # The host's apt does not offer ARCH (the usual case for foreign
    # architectures): ask the private configuration, and only fetch its
    # indexes when they do not already offer the package.
    use_private_apt
    PKGSPEC=$PKG
    VERSION=$(candidate apt-cache "${APT_OPTS[@]}" policy "$PKG")
    if [[ -z $VERSION || ${PYCONTAIN_REFRESH:-0} == 1 ]]; then
        note "fetching the $ARCH package index from $(sources_summary)"
        apt-get "${APT_OPTS[@]}" -qq update >&2 ||
            die "cannot download $PKG:$ARCH: apt-get update from $(sources_summary) failed (see above)"
        VERSION=$(candidate apt-cache "${APT_OPTS[@]}" policy "$PKG")
        [[ -n $VERSION ]] ||
            die "cannot download $PKG:$ARCH: $(sources_summary) has no $PKG for $ARCH ($(arch_hint))"
    fi
fi

STAMP="pycontain-busybox layout=$LAYOUT arch=$ARCH deb=$VERSION"
# Tarballs cannot carry a readable stamp cheaply, so theirs lives in the
# cache, keyed on the tarball's path and pinned to its size and mtime.
TAR_STAMP=$PYCONTAIN_CACHE/stamps/$(printf '%s' "$DEST" | sha256sum | cut -c1-16)

if [[ ${TAR_FLAGS[0]:-} == dir ]]; then
    if [[ -f $DEST/etc/pycontain-rootfs-stamp && $(<"$DEST/etc/pycontain-rootfs-stamp") == "$STAMP" ]]; then
        note "$DEST is up to date ($ARCH, $PKG $VERSION)"
        exit 0
    fi
    if [[ -e $DEST && ! -f $DEST/etc/pycontain-rootfs-stamp ]]; then
        if [[ ! -d $DEST ]] || [[ -n $(ls -A -- "$DEST") ]]; then
            die "$DEST exists and is not a pycontain busybox rootfs; refusing to replace it"
        fi
    fi
elif [[ -f $DEST && -f $TAR_STAMP && $(<"$TAR_STAMP") == "$STAMP $(stat -c '%s %Y' -- "$DEST")" ]]; then
    note "$DEST is up to date ($ARCH, $PKG $VERSION)"
    exit 0
fi

# --- 2. the .deb -------------------------------------------------------------
DEB=$PYCONTAIN_CACHE/debs/${PKG}_${VERSION//:/%3a}_$ARCH.deb
if [[ ! -s $DEB ]]; then
    fetch() {
        # Into a private directory first, so an interrupted download never
        # leaves a truncated .deb where the next run would trust it.
        local dl
        dl=$(mktemp -d "$PYCONTAIN_CACHE/debs/.download.XXXXXX")
        if (cd "$dl" && apt-get "${APT_OPTS[@]}" -qq download "$PKGSPEC=$VERSION" >&2) &&
            [[ -s $dl/${DEB##*/} ]]; then
            mv -- "$dl/${DEB##*/}" "$DEB"
            rm -rf -- "$dl"
            return 0
        fi
        rm -rf -- "$dl"
        return 1
    }
    if ! fetch; then
        # The index may be older than the mirror (the version was superseded):
        # refresh it once and retry with whatever it now offers.
        [[ $PKGSPEC == "$PKG" ]] || use_private_apt
        apt-get "${APT_OPTS[@]}" -qq update >&2 || true
        NEW=$(candidate apt-cache "${APT_OPTS[@]}" policy "$PKG")
        [[ -n $NEW ]] || die "cannot download $PKG:$ARCH: no mirror in the apt sources offers it"
        VERSION=$NEW PKGSPEC=$PKG
        STAMP="pycontain-busybox layout=$LAYOUT arch=$ARCH deb=$VERSION"
        DEB=$PYCONTAIN_CACHE/debs/${PKG}_${VERSION//:/%3a}_$ARCH.deb
        [[ -s $DEB ]] || fetch || die "cannot download $PKG:$ARCH $VERSION (see the apt error above)"
    fi
fi
[[ $(dpkg-deb -f "$DEB" Architecture) == "$ARCH" ]] ||
    die "$DEB is not a $ARCH package (it says $(dpkg-deb -f "$DEB" Architecture))"

# --- 3. lay out the rootfs ----------------------------------------------------
WORK=$(mktemp -d "$PYCONTAIN_CACHE/work.XXXXXX")
cleanup() { rm -rf -- "$WORK" "${STAGING:-}"; }
trap cleanup EXIT

dpkg -x "$DEB" "$WORK/deb"
BB=""
for candidate_path in "$WORK/deb/bin/busybox" "$WORK/deb/usr/bin/busybox"; do
    [[ -f $candidate_path ]] && BB=$candidate_path && break
done
[[ -n $BB ]] || die "$DEB has no bin/busybox or usr/bin/busybox"

# Ask the binary itself which applets it has, with the directory each belongs
# in (--list-full prints e.g. "usr/bin/awk").  A foreign binary runs through
# the static QEMU; the host's busybox is only a fallback, since its
# configuration may differ from the package's.
list_applets() {
    local runner=()
    if runs_natively "$ARCH"; then
        runner=()
    elif [[ -x /usr/bin/qemu-$TARGET-static ]]; then
        runner=("/usr/bin/qemu-$TARGET-static")
    else
        runner=(none)
    fi
    if [[ ${runner[0]:-} != none ]]; then
        "${runner[@]}" "$BB" --list-full 2>/dev/null && return 0
        "${runner[@]}" "$BB" --list 2>/dev/null | sed 's|^|bin/|' && return 0
    fi
    if command -v busybox >/dev/null; then
        note "cannot run the $ARCH busybox (no /usr/bin/qemu-$TARGET-static); using the host busybox's applet list"
        busybox --list-full 2>/dev/null && return 0
        busybox --list | sed 's|^|bin/|' && return 0
    fi
    return 1
}
APPLETS=$(list_applets) || die "cannot list the applets of the $ARCH busybox: install qemu-user-static (for /usr/bin/qemu-$TARGET-static) or busybox-static"
grep -qx 'bin/sh' <<<"$APPLETS" || die "the $ARCH busybox reports no 'sh' applet; its applet list looks wrong"

if [[ ${TAR_FLAGS[0]:-} == dir ]]; then
    mkdir -p -- "$(dirname -- "$DEST")"
    STAGING=$(mktemp -d "$(dirname -- "$DEST")/.$(basename -- "$DEST").tmp.XXXXXX")
else
    STAGING=$WORK/rootfs
    mkdir "$STAGING"
fi
R=$STAGING
chmod 0755 "$R"

mkdir -p "$R"/{bin,sbin,lib,etc,proc,sys,dev,run,mnt,opt,srv,home,tmp,root} \
    "$R"/usr/{bin,sbin,lib,share/doc} "$R"/var/{lib,log,cache,spool,tmp}
chmod 1777 "$R/tmp" "$R/var/tmp"
chmod 0700 "$R/root"
# Like real images: /var/run is the old name of /run.
ln -s /run "$R/var/run"

install -m 0755 "$BB" "$R/bin/busybox"
# Absolute links, exactly as in real images: the target is resolved inside the
# container (after pivot_root), never on the host.
while read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    mkdir -p -- "$R/$(dirname -- "$applet")"
    ln -sfn /bin/busybox "$R/$applet"
done <<<"$APPLETS"

# busybox is GPL-2.0: ship its copyright file with the binary.
if [[ -d $WORK/deb/usr/share/doc/$PKG ]]; then
    mkdir -p "$R/usr/share/doc/$PKG"
    cp -- "$WORK/deb/usr/share/doc/$PKG/copyright" "$R/usr/share/doc/$PKG/" 2>/dev/null || true
fi

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
cat >"$R/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
user:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0640 "$R/etc/shadow"
mkdir -p "$R/home/user"
if [[ $(id -u) -eq 0 ]]; then
    chown 1000:1000 "$R/home/user"
fi
echo busybox >"$R/etc/hostname"
cat >"$R/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
: >"$R/etc/resolv.conf"
printf '/bin/sh\n/bin/ash\n' >"$R/etc/shells"

UPSTREAM=${VERSION#*:}
UPSTREAM=${UPSTREAM%%-*}
cat >"$R/etc/os-release" <<EOF
NAME="pycontain busybox"
ID=pycontain-busybox
VERSION_ID="$UPSTREAM"
PRETTY_NAME="pycontain busybox rootfs for $ARCH (busybox $UPSTREAM)"
PYCONTAIN_ARCH=$ARCH
PYCONTAIN_SOURCE="$PKG $VERSION ($ARCH)"
EOF
printf '%s\n' "$STAMP" >"$R/etc/pycontain-rootfs-stamp"

# --- 4. put it in place ------------------------------------------------------
if [[ ${TAR_FLAGS[0]:-} == dir ]]; then
    if [[ -e $DEST ]]; then
        OLD=$(mktemp -d "$(dirname -- "$DEST")/.$(basename -- "$DEST").old.XXXXXX")
        mv -- "$DEST" "$OLD/rootfs"
        mv -- "$STAGING" "$DEST"
        rm -rf -- "$OLD"
    else
        mv -- "$STAGING" "$DEST"
    fi
    STAGING=""
else
    OWNER=(--numeric-owner)
    # Built as non-root, the files belong to the builder: record them as root.
    [[ $(id -u) -eq 0 ]] || OWNER+=(--owner=0 --group=0)
    mkdir -p -- "$(dirname -- "$DEST")"
    TMP_TAR=$(mktemp "$DEST.tmp.XXXXXX")
    tar -C "$R" "${OWNER[@]}" --sort=name "${TAR_FLAGS[@]}" -cf "$TMP_TAR" .
    chmod 0644 "$TMP_TAR"
    mv -- "$TMP_TAR" "$DEST"
    printf '%s %s\n' "$STAMP" "$(stat -c '%s %Y' -- "$DEST")" >"$TAR_STAMP"
fi
note "built $DEST ($ARCH, $PKG $VERSION, $(wc -l <<<"$APPLETS") applets)"
