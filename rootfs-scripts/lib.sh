# shellcheck shell=bash
# Helpers shared by the rootfs scripts.  Sourced, never run.
#
# The one idea worth explaining: foreign-architecture packages are fetched
# through a PRIVATE apt configuration (its own sources, lists and cache under
# the build cache) instead of `dpkg --add-architecture` on the host.  Adding an
# architecture to the host makes every later `apt-get update` fetch indexes for
# it from every configured source, and on Ubuntu that fails outright because
# archive.ubuntu.com carries only amd64/i386 (the other architectures live on
# ports.ubuntu.com).  A private configuration touches nothing outside the cache,
# names exactly the mirror and architecture it needs, and works the same way on
# Debian and Ubuntu.

PYCONTAIN_REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
PYCONTAIN_CACHE=${PYCONTAIN_CACHE:-$PYCONTAIN_REPO/build/cache}

die() {
    # One line, for the person at the terminal: what failed and why.
    printf '%s: %s\n' "${0##*/}" "$*" >&2
    exit 1
}

note() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

host_arch() {
    dpkg --print-architecture
}

# /etc/os-release of the host, as "ID CODENAME".
host_release() {
    local id codename
    # shellcheck disable=SC1091
    id=$(. /etc/os-release && printf '%s' "${ID:-debian}")
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    if [[ -z $codename ]]; then
        codename=bookworm
    fi
    printf '%s %s\n' "$id" "$codename"
}

# Debian architecture -> the QEMU user-mode target that runs it.
qemu_target() {
    case $1 in
        amd64) echo x86_64 ;;
        i386) echo i386 ;;
        arm64) echo aarch64 ;;
        armhf | armel) echo arm ;;
        ppc64el) echo ppc64le ;;
        ppc64) echo ppc64 ;;
        powerpc) echo ppc ;;
        s390x) echo s390x ;;
        mips64el) echo mips64el ;;
        mipsel) echo mipsel ;;
        mips) echo mips ;;
        riscv64) echo riscv64 ;;
        loong64) echo loongarch64 ;;
        *) return 1 ;;
    esac
}

# Can this host run ARCH's binaries without QEMU?  i386 runs on x86_64
# kernels through the IA-32 compat layer.
runs_natively() {
    local host
    host=$(host_arch)
    [[ $1 == "$host" ]] || [[ $host == amd64 && $1 == i386 ]]
}

# Print "URI SUITE" lines for the host's own distribution, read from its apt
# sources (one-line .list and deb822 .sources formats), limited to the suites
# that carry the release's binaries: CODENAME, -updates and -security.
# Third-party repositories never match those suite names.
host_apt_sources() {
    local codename=$1
    local py=python3
    [[ -x /usr/bin/python3 ]] && py=/usr/bin/python3
    "$py" - "$codename" <<'EOF'
import glob
import sys

codename = sys.argv[1]
wanted = {codename, codename + "-updates", codename + "-security"}
seen = []


def add(uri, suite, components):
    if suite in wanted and "main" in components and (uri, suite) not in seen:
        seen.append((uri.rstrip("/"), suite))


def one_line(path):
    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[4:].strip()
        if rest.startswith("["):  # options such as [arch=... signed-by=...]
            rest = rest.split("]", 1)[1].strip()
        fields = rest.split()
        if len(fields) >= 3:
            add(fields[0], fields[1], fields[2:])


def deb822(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for stanza in text.split("\n\n"):
        fields, key = {}, None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                continue  # continuation lines (e.g. an inline Signed-By key)
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                add(uri, suite, fields.get("components", "").split())


for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        one_line(path)
    except OSError:
        pass
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        deb822(path)
    except OSError:
        pass
for uri, suite in seen:
    print(uri, suite)
EOF
}

# The host's Debian mirror (for debootstrap), or the default one.
host_debian_mirror() {
    local id codename uri suite
    read -r id codename < <(host_release)
    if [[ $id == debian ]]; then
        while read -r uri suite; do
            if [[ $suite == "$codename" ]]; then
                printf '%s\n' "$uri"
                return 0
            fi
        done < <(host_apt_sources "$codename")
    fi
    echo http://deb.debian.org/debian
}

# Write a private sources.list for ARCH into FILE.  On Ubuntu, architectures
# other than amd64/i386 come from ports.ubuntu.com, whatever the host uses.
write_private_sources() {
    local arch=$1 file=$2 id codename uri suite keyring="" opts
    read -r id codename < <(host_release)
    : >"$file"
    if [[ -n ${PYCONTAIN_APT_MIRROR:-} ]]; then
        printf 'deb [arch=%s] %s %s main\n' "$arch" "$PYCONTAIN_APT_MIRROR" \
            "${PYCONTAIN_APT_SUITE:-$codename}" >>"$file"
        return 0
    fi
    case $id in
        ubuntu) [[ -r /usr/share/keyrings/ubuntu-archive-keyring.gpg ]] &&
            keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg ;;
        *) [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
            keyring=/usr/share/keyrings/debian-archive-keyring.gpg ;;
    esac
    opts="arch=$arch"
    [[ -n $keyring ]] && opts="$opts signed-by=$keyring"
    if [[ $id == ubuntu && $arch != amd64 && $arch != i386 ]]; then
        for suite in "$codename" "$codename-updates" "$codename-security"; do
            printf 'deb [%s] http://ports.ubuntu.com/ubuntu-ports %s main\n' \
                "$opts" "$suite" >>"$file"
        done
        return 0
    fi
    while read -r uri suite; do
        printf 'deb [%s] %s %s main\n' "$opts" "$uri" "$suite" >>"$file"
    done < <(host_apt_sources "$codename")
    if [[ ! -s $file ]]; then
        if [[ $id == ubuntu ]]; then
            printf 'deb [%s] http://archive.ubuntu.com/ubuntu %s main\n' "$opts" "$codename" >>"$file"
        else
            printf 'deb [%s] http://deb.debian.org/debian %s main\n' "$opts" "$codename" >>"$file"
        fi
    fi
}
