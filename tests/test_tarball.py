"""Unpacking hostile and ordinary rootfs tarballs (pycontain.tarball).

Every archive is built here with tarfile, so the tests show exactly which
bytes are hostile.  The filesystem facts are checked on the real kernel.
The key property is that nothing appears or changes outside ``dest``.  We
check it on a sentinel directory next to ``dest``, which the hostile entries
aim at.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pycontain.errors import EXIT_RUNTIME, PycontainError
from pycontain.tarball import is_tarball, unpack

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking a rootfs needs root")

# -- building archives --------------------------------------------------


def reg(name: str, data: bytes = b"x", mode: int = 0o644, uid: int = 0, gid: int = 0):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, uid, gid, 1_000_000
    return ti, data


def dirent(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, mode, uid, gid, 1_000_000
    return ti, None


def link(name: str, target: str, *, hard: bool = False):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    ti.linkname, ti.mode = target, 0o777
    return ti, None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o644):
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, mode
    return ti, None


def make_tar(path: Path, entries, *, fmt: int = tarfile.PAX_FORMAT) -> Path:
    """Write ``entries`` (TarInfo, data) in order, compressing by suffix."""
    name = path.name
    if name.endswith(".zst"):
        plain = path.with_name(name[: -len(".zst")])
        make_tar(plain, entries, fmt=fmt)
        subprocess.run(["zstd", "-q", "-f", "--rm", str(plain), "-o", str(path)], check=True)
        return path
    mode = "w"
    if name.endswith((".tar.gz", ".tgz")):
        mode = "w:gz"
    elif name.endswith(".tar.xz"):
        mode = "w:xz"
    elif name.endswith(".tar.bz2"):
        mode = "w:bz2"
    with tarfile.open(path, mode, format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(top: Path, skip: Path) -> dict[str, tuple]:
    """Everything under ``top`` (except the tree ``skip``): type, metadata,
    content or link target.  Compared before and after an unpack."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip:
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if Path(p) == skip:
                continue
            st = os.lstat(p)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = Path(p).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            mtime = None if stat.S_ISDIR(st.st_mode) and Path(p) == skip.parent else st.st_mtime_ns
            seen[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_ino, mtime, extra)
    return seen


def empty(dest: Path) -> None:
    """Remove what an unpack left in dest (rmtree never follows links)."""
    for child in list(dest.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@pytest.fixture
def world(tmp_path: Path):
    """A sentinel directory ``outside`` (with a file and a subdirectory)
    next to an empty ``dest``; archives go elsewhere."""
    top = tmp_path / "world"
    outside = top / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "f").write_bytes(b"sentinel")
    dest = top / "dest"
    dest.mkdir()
    arch = tmp_path / "arch"
    arch.mkdir()
    return top, outside, dest, arch


def unpack_refused(archive: Path, dest: Path, *needles: str) -> str:
    with pytest.raises(PycontainError) as info:
        unpack(str(archive), str(dest), warn=lambda m: None)
    err = info.value
    assert err.exit_code == EXIT_RUNTIME
    assert "\n" not in err.message
    assert str(archive) in err.message
    for needle in needles:
        assert needle in err.message, err.message
    return err.message


# -- hostile paths ------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../evil", "a/b/../../../evil"])
def test_path_traversal_refused(world, name):
    top, _, dest, arch = world
    before = snapshot(top, dest)
    tar = make_tar(arch / "t.tar", [reg("ok"), reg(name, b"pwned")])
    unpack_refused(tar, dest, repr(name), "'..'")
    assert snapshot(top, dest) == before
    assert not (top / "evil").exists()


def test_absolute_path_refused(world):
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    target = str(outside / "abs")
    tar = make_tar(arch / "t.tar", [reg(target, b"pwned")])
    unpack_refused(tar, dest, repr(target), "absolute")
    assert snapshot(top, dest) == before
    assert not os.path.lexists(target)


@pytest.mark.parametrize(
    "target_kind", ["absolute", "relative", "absolute-dir", "root-relative-dotdot"]
)
def test_symlink_then_write_through_refused(world, target_kind):
    top, outside, dest, arch = world
    target = {
        "absolute": str(outside),
        "relative": "../outside",
        "absolute-dir": str(outside / "d"),
        "root-relative-dotdot": "../../../../../../../../../../" + str(outside).lstrip("/"),
    }[target_kind]
    before = snapshot(top, dest)
    tar = make_tar(arch / "t.tar", [link("a", target), reg("a/passwd", b"root::0:0::/:/bin/sh")])
    unpack_refused(tar, dest, "'a/passwd'", "symlink 'a'")
    assert snapshot(top, dest) == before
    # The link itself was created and kept as it is (the policy).
    assert os.readlink(dest / "a") == target


def test_symlink_deep_in_path_refused(world):
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    entries = [dirent("usr"), link("usr/lib", str(outside)), reg("usr/lib/x/y/z", b"pwned")]
    tar = make_tar(arch / "t.tar", entries)
    unpack_refused(tar, dest, "'usr/lib/x/y/z'", "symlink 'usr/lib'")
    assert snapshot(top, dest) == before


def test_directory_entry_replaces_symlink(world):
    # "a -> outside", then "a/" as a directory, then "a/x": the link is
    # removed (never its target) and x lands inside dest.
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    tar = make_tar(arch / "t.tar", [link("a", str(outside)), dirent("a"), reg("a/x", b"in")])
    unpack(str(tar), str(dest))
    assert snapshot(top, dest) == before
    assert (dest / "a").is_dir() and not (dest / "a").is_symlink()
    assert (dest / "a/x").read_bytes() == b"in"


def test_file_replacing_symlink_does_not_write_through(world):
    # A regular file entry with the same name as an earlier symlink to a
    # host file must replace the link, not truncate the file it points at.
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    tar = make_tar(arch / "t.tar", [link("f", str(outside / "f")), reg("f", b"new")])
    unpack(str(tar), str(dest))
    assert snapshot(top, dest) == before
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"new"


# -- hardlinks ------------------------------------------------------------


@pytest.mark.parametrize(
    "target,needle",
    [
        ("../outside/f", "'..'"),
        ("{outside}/f", "absolute"),
        ("lnk/f", "symlink 'lnk'"),
        ("missing", "not an earlier entry"),
        ("dir", "is a directory"),
    ],
)
def test_hardlink_escape_refused(world, target, needle):
    top, outside, dest, arch = world
    target = target.format(outside=outside)
    before = snapshot(top, dest)
    entries = [link("lnk", str(outside)), dirent("dir"), link("h", target, hard=True)]
    tar = make_tar(arch / "t.tar", entries)
    unpack_refused(tar, dest, "'h'", needle)
    assert snapshot(top, dest) == before
    assert os.stat(outside / "f").st_nlink == 1


def test_hardlink_name_through_symlink_refused(world):
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    entries = [reg("f", b"in"), link("l", str(outside)), link("l/h", "f", hard=True)]
    unpack_refused(make_tar(arch / "t.tar", entries), dest, "'l/h'", "symlink 'l'")
    assert snapshot(top, dest) == before


def test_hardlink_to_symlink_links_the_link(world):
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    tar = make_tar(arch / "t.tar", [link("l", str(outside / "f")), link("h", "l", hard=True)])
    unpack(str(tar), str(dest))
    assert snapshot(top, dest) == before
    assert os.readlink(dest / "h") == str(outside / "f")
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "l").st_ino


def test_duplicate_entry_does_not_write_into_old_hardlink(world):
    _, _, dest, arch = world
    entries = [reg("a", b"old"), link("h", "a", hard=True), reg("a", b"new")]
    unpack(str(make_tar(arch / "t.tar", entries)), str(dest))
    assert (dest / "a").read_bytes() == b"new"
    assert (dest / "h").read_bytes() == b"old"


# -- device nodes, modes, ownership --------------------------------------


def test_device_nodes_skipped_fifo_kept(world):
    _, _, dest, arch = world
    entries = [
        dirent("dev"),
        node("dev/sda", tarfile.BLKTYPE, 8, 0),
        node("dev/mem", tarfile.CHRTYPE, 1, 1),
        link("dev/mem2", "dev/mem", hard=True),
        node("run/fifo", tarfile.FIFOTYPE, mode=0o620),
    ]
    warnings: list[str] = []
    unpack(str(make_tar(arch / "t.tar", entries)), str(dest), warn=warnings.append)
    assert not os.path.lexists(dest / "dev/sda")
    assert not os.path.lexists(dest / "dev/mem")
    assert not os.path.lexists(dest / "dev/mem2")
    assert any("'dev/sda'" in w and "block device" in w for w in warnings), warnings
    assert any("'dev/mem'" in w and "character device" in w for w in warnings), warnings
    st = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_setuid_setgid_stripped_owner_kept(world):
    _, _, dest, arch = world
    entries = [
        reg("bin/su", b"\x7fELF", mode=0o4755),
        reg("bin/all", b"x", mode=0o7777, uid=1000, gid=1001),
        dirent("var/mail", mode=0o2775, gid=8),
        dirent("tmp", mode=0o1777),
        dirent("weird", mode=0o7777),
    ]
    warnings: list[str] = []
    unpack(str(make_tar(arch / "t.tar", entries)), str(dest), warn=warnings.append)

    def mode(p: str) -> int:
        return stat.S_IMODE(os.lstat(dest / p).st_mode)

    assert mode("bin/su") == 0o755
    assert mode("bin/all") == 0o1777
    st = os.lstat(dest / "bin/all")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert mode("var/mail") == 0o2775 and os.lstat(dest / "var/mail").st_gid == 8
    assert mode("tmp") == 0o1777
    assert mode("weird") == 0o3777
    named = {w.split("entry ")[1].split(":")[0] for w in warnings}
    assert named == {"'bin/su'", "'bin/all'", "'weird'"}


def test_default_warn_goes_to_stderr(world, capfd):
    _, _, dest, arch = world
    unpack(str(make_tar(arch / "t.tar", [reg("su", mode=0o4755)])), str(dest))
    err = capfd.readouterr().err
    assert err.startswith("pycontain: warning: ") and "'su'" in err and err.count("\n") == 1


# -- compressions and a normal rootfs -------------------------------------


def small_rootfs():
    return [
        dirent("."),
        dirent("bin"),
        reg("bin/busybox", b"\x7fELF-not-really" * 100, mode=0o755),
        link("bin/sh", "/bin/busybox"),
        link("bin/ls", "busybox"),
        link("bin/cat", "bin/busybox", hard=True),
        dirent("etc"),
        reg("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        dirent("tmp", mode=0o1777),
    ]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst"])
def test_compressions_unpack_small_rootfs(world, suffix):
    if suffix == ".tar.zst" and shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed (apt-get install zstd)")
    top, _, dest, arch = world
    tar = make_tar(arch / f"rootfs{suffix}", small_rootfs())
    assert is_tarball(str(tar))
    before = snapshot(top, dest)
    unpack(str(tar), str(dest))
    assert snapshot(top, dest) == before
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"  # kept as an absolute link
    assert os.readlink(dest / "bin/ls") == "busybox"
    assert os.stat(dest / "bin/cat").st_ino == os.stat(dest / "bin/busybox").st_ino
    assert (dest / "etc/passwd").read_bytes().startswith(b"root:x:0:0")
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    assert os.stat(dest / "etc/passwd").st_mtime == 1_000_000
    assert os.stat(dest / "etc").st_mtime == 1_000_000  # set after its entries


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz", ".tar.zst", ".tar"])
def test_compression_detected_by_content(world, suffix):
    if suffix == ".tar.zst" and shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed (apt-get install zstd)")
    _, _, dest, arch = world
    tar = make_tar(arch / f"rootfs{suffix}", small_rootfs())
    disguised = tar.rename(arch / "rootfs.img")
    assert is_tarball(str(disguised))
    unpack(str(disguised), str(dest))
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"


def test_is_tarball(tmp_path):
    assert not is_tarball(str(tmp_path))  # a directory
    (tmp_path / "x.tar").mkdir()
    assert not is_tarball(str(tmp_path / "x.tar"))  # a directory named like one
    assert not is_tarball(str(tmp_path / "missing.tar"))
    (tmp_path / "notes.txt").write_text("hello\n" * 200)
    assert not is_tarball(str(tmp_path / "notes.txt"))
    (tmp_path / "ROOTFS.TAR.GZ").write_bytes(b"")
    assert is_tarball(str(tmp_path / "ROOTFS.TAR.GZ"))


def test_zstd_missing_gives_one_line(world, monkeypatch):
    _, _, dest, arch = world
    if shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed, cannot build a .tar.zst")
    tar = make_tar(arch / "r.tar.zst", small_rootfs())
    empty = arch / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    unpack_refused(tar, dest, "zstd", "not installed")


# -- corrupt archives -----------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst"])
@pytest.mark.parametrize("cut", [0.3, 0.52, 0.9, 0.999])
def test_truncated_archive(world, suffix, cut):
    if suffix == ".tar.zst" and shutil.which("zstd") is None:
        pytest.skip("the zstd program is not installed (apt-get install zstd)")
    _, _, dest, arch = world
    rnd = random.Random(7)
    data = bytes(rnd.getrandbits(8) for _ in range(40_000))  # incompressible
    tar = make_tar(arch / f"t{suffix}", [reg("a", data), reg("b", data)])
    raw = tar.read_bytes()
    # A plain tar ends in zero padding, and cutting only that is harmless;
    # cut within the members instead (2 x (header + 40,448 bytes of data)).
    size = 2 * (512 + 40_448) if suffix == ".tar" else len(raw)
    tar.write_bytes(raw[: int(size * cut)])
    unpack_refused(tar, dest, "corrupt or truncated")


@pytest.mark.parametrize(
    "damage",
    ["random-bytes", "empty-file", "garbage-header-after-first", "header-cut-short", "bad-crc"],
)
def test_corrupt_archive(world, damage):
    _, _, dest, arch = world
    tar = make_tar(arch / "t.tar", [reg("a", b"1" * 600), reg("b", b"2")], fmt=tarfile.GNU_FORMAT)
    raw = bytearray(tar.read_bytes())
    second = 512 + 1024  # header of "b": after a's header and 2 data blocks
    if damage == "random-bytes":
        raw = bytearray(random.Random(1).randbytes(8192))
    elif damage == "empty-file":
        raw = bytearray()
    elif damage == "garbage-header-after-first":
        raw[second : second + 512] = b"\xa5" * 512
    elif damage == "header-cut-short":
        raw = raw[: second + 200]
    elif damage == "bad-crc":
        gz = make_tar(arch / "t.tar.gz", [reg("a", b"1" * 600)])
        raw = bytearray(gz.read_bytes())
        raw[-8] ^= 0xFF  # the CRC32 in the gzip trailer
        tar = gz
    tar.write_bytes(bytes(raw))
    unpack_refused(tar, dest, "corrupt or truncated")


def test_archive_ending_on_block_boundary_is_accepted(world):
    # No end-of-archive zero blocks at all: GNU tar and tarfile accept it.
    _, _, dest, arch = world
    tar = make_tar(arch / "t.tar", [reg("a", b"1" * 600)], fmt=tarfile.GNU_FORMAT)
    tar.write_bytes(tar.read_bytes()[: 512 + 1024])
    unpack(str(tar), str(dest))
    assert (dest / "a").read_bytes() == b"1" * 600


def test_missing_archive_and_nonempty_dest(world):
    _, _, dest, arch = world
    unpack_refused(arch / "nope.tar", dest, "no such file")
    (dest / "junk").write_text("")
    tar = make_tar(arch / "t.tar", [reg("a")])
    unpack_refused(tar, dest, "not empty")


# -- odd but legal names and structure ------------------------------------


def test_dot_entries_and_root_metadata(world):
    _, _, dest, arch = world
    entries = [dirent("./", mode=0o750), reg("./a/./b", b"b"), dirent("."), dirent("a/")]
    unpack(str(make_tar(arch / "t.tar", entries)), str(dest))
    assert (dest / "a/b").read_bytes() == b"b"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o755  # the last "." entry won


@pytest.mark.parametrize("kind", ["symlink", "file", "hardlink"])
def test_root_entry_must_be_a_directory(world, kind):
    top, outside, dest, arch = world
    before = snapshot(top, dest)
    entry = {
        "symlink": link(".", str(outside)),
        "file": reg("./"[:1], b"x"),
        "hardlink": link(".", "a", hard=True),
    }[kind]
    unpack_refused(make_tar(arch / "t.tar", [reg("a"), entry]), dest, "'.'")
    assert snapshot(top, dest) == before


def test_long_names(world):
    _, _, dest, arch = world
    deep = "/".join(["d" * 200] * 30)  # 6 KiB: longer than PATH_MAX
    too_long = "x" * 300  # one component longer than NAME_MAX
    unpack(str(make_tar(arch / "t.tar", [reg(deep + "/f", b"deep")])), str(dest))
    fd = os.open(dest, os.O_RDONLY)
    try:
        for part in deep.split("/"):
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        assert os.stat("f", dir_fd=fd).st_size == 4
    finally:
        os.close(fd)
    shutil.rmtree(dest)
    dest.mkdir()
    tar = make_tar(arch / "t2.tar", [reg(too_long)], fmt=tarfile.GNU_FORMAT)
    msg = unpack_refused(tar, dest, "file name too long", "...")
    assert len(msg) < 400


def test_replacing_nonempty_directory_refused(world):
    _, _, dest, arch = world
    entries = [reg("d/f"), link("d", "/etc")]
    unpack_refused(make_tar(arch / "t.tar", entries), dest, "'d'", "directory")


def test_newline_in_name_stays_one_line(world):
    _, _, dest, arch = world
    unpack_refused(make_tar(arch / "t.tar", [reg("../x\ny")]), dest, r"'../x\ny'")


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_tar_archive_round_trips(tmp_path, fmt):
    """An archive written by GNU tar (not by tarfile) from a real tree comes
    back with the same types, modes, owners, link targets and hardlinks."""
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/busybox").write_bytes(b"\x7fELF" + b"\0" * 5000)
    os.symlink("/bin/busybox", src / "bin/sh")
    os.link(src / "bin/busybox", src / "bin/ls")
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    (src / "home/user").mkdir(parents=True)
    (src / "home/user/notes").write_text("hi\n")
    os.chown(src / "home/user", 1000, 1000)
    os.chown(src / "home/user/notes", 1000, 1000, follow_symlinks=False)
    os.mkfifo(src / "tmp/fifo")
    (src / "deep" / ("n" * 200) / ("m" * 200)).mkdir(parents=True)
    with open(src / "sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"middle")
    tar = tmp_path / "gnu.tar"
    subprocess.run(["tar", f"--format={fmt}", "-S", "-C", str(src), "-cf", str(tar), "."],
                   check=True)  # fmt: skip
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(str(tar), str(dest))

    def tree(top: Path) -> dict[str, tuple]:
        out = {}
        inodes: dict[int, str] = {}
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()  # the same walk order on both sides, for `first`
            for n in sorted(dirnames + filenames):
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                rel = os.path.relpath(p, top)
                first = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else None
                target = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
                data = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None
                out[rel] = (st.st_mode, st.st_uid, st.st_gid, first, target, data)
        return out

    assert tree(dest) == tree(src)
    assert os.stat(dest / "sparse").st_blocks * 512 < 1 << 20  # the hole stayed a hole


def test_busybox_sized_rootfs_is_fast(world):
    """~400 entries, like a busybox rootfs: well under 100 ms uncompressed."""
    _, _, dest, arch = world
    entries = [dirent("."), dirent("bin"), dirent("sbin"), dirent("usr"), dirent("usr/bin")]
    entries.append(reg("bin/busybox", b"\0" * 1_000_000, mode=0o755))
    for i in range(200):
        entries.append(link(f"bin/applet{i}", "/bin/busybox"))
        entries.append(link(f"usr/bin/hard{i}", "bin/busybox", hard=True))
    tar = make_tar(arch / "bb.tar", entries)
    best = float("inf")
    for _ in range(3):
        empty(dest)
        t = time.perf_counter()
        unpack(str(tar), str(dest))
        best = min(best, time.perf_counter() - t)
    assert best < 0.1, f"unpacking 405 entries took {best * 1e3:.1f} ms"


# -- property: random entry sequences never touch anything outside dest ---


def random_archive(rnd: random.Random, outside: Path, ups_to_top: int) -> list:
    """A random mix of files, dirs, fifos, symlinks (relative, climbing,
    absolute into the sentinel) and hardlinks, over a tiny name space so that
    later entries often go through earlier links."""

    def path() -> str:
        parts = [rnd.choice("abl") for _ in range(rnd.randint(1, 3))]
        for odd in (".", ".."):
            if rnd.random() < 0.04:
                parts.insert(rnd.randrange(len(parts) + 1), odd)
        p = "/".join(parts)
        r = rnd.random()
        if r < 0.02:
            return "/" + p
        if r < 0.04:
            return str(outside / p)
        return p

    def target() -> str:
        r = rnd.random()
        ups = "../" * rnd.randint(1, ups_to_top)
        suffix = rnd.choice(["", "outside", "outside/f", "outside/d", "outside/new"])
        if r < 0.35:
            return (ups + suffix).rstrip("/") or ".."
        if r < 0.6:
            return str(outside / rnd.choice(["", "f", "d", "new"])).rstrip("/")
        if r < 0.7:
            return str(outside.parent)
        return path()

    entries = []
    for _ in range(rnd.randint(1, 10)):
        kind = rnd.choice(["file", "file", "dir", "sym", "sym", "hard", "fifo"])
        name = path()
        if kind == "file":
            entries.append(reg(name, b"PWNED", mode=rnd.choice([0o644, 0o4755, 0o7777])))
        elif kind == "dir":
            entries.append(dirent(name, mode=rnd.choice([0o755, 0o7777, 0o000])))
        elif kind == "sym":
            entries.append(link(name, target()))
        elif kind == "hard":
            entries.append(link(name, target() if rnd.random() < 0.3 else path(), hard=True))
        else:
            entries.append(node(name, tarfile.FIFOTYPE))
    return entries


def test_random_archives_never_write_outside(tmp_path):
    top = tmp_path / "world"
    outside = top / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "f").write_bytes(b"sentinel")
    # dest sits 6 levels below `top`, and links climb at most 6 levels from
    # dest itself, so a buggy write through one still lands under `top`,
    # where the snapshot sees it.  None of them points at a real host path.
    dest = top.joinpath("w1", "w2", "w3", "w4", "w5", "dest")
    dest.mkdir(parents=True)
    arch = tmp_path / "arch"
    arch.mkdir()
    before = snapshot(top, dest)
    rnd = random.Random(20240611)
    outcomes = {"ok": 0, "refused": 0}
    reasons: dict[str, int] = {}
    for i in range(600):
        entries = random_archive(rnd, outside, ups_to_top=6)
        tar = make_tar(arch / "r.tar", entries)
        try:
            unpack(str(tar), str(dest), warn=lambda m: None)
            outcomes["ok"] += 1
        except PycontainError as e:
            assert "\n" not in e.message
            outcomes["refused"] += 1
            why = e.message.rsplit(": ", 1)[-1]
            reasons[why] = reasons.get(why, 0) + 1
        after = snapshot(top, dest)
        assert after == before, f"archive {i} changed the world: {[e[0].name for e in entries]}"
        for dirpath, dirnames, filenames in os.walk(dest):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                assert not stat.S_ISCHR(st.st_mode) and not stat.S_ISBLK(st.st_mode)
                if not stat.S_ISDIR(st.st_mode):
                    assert not st.st_mode & 0o6000, os.path.join(dirpath, n)
        empty(dest)
    # The generator must exercise both outcomes, or the property is hollow.
    top_reasons = sorted(reasons.items(), key=lambda kv: -kv[1])[:8]
    assert outcomes["ok"] > 80 and outcomes["refused"] > 80, (outcomes, top_reasons)
