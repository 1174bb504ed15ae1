"""Limits (members, bytes, ratio), damaged and empty bundles, and a full disk."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from codedeploy_agent.archive.writer import RATIO_FLOOR_BYTES, TreeWriter
from codedeploy_agent.config import ArchiveLimits
from codedeploy_agent.errors import ArchiveError
from codedeploy_agent.spec import BundleType
from tests.archive.bundles import Site, file, snapshot, write_tar, write_zip

MIB = 1024 * 1024
MEMBERS_FIX = "Make the bundle smaller, or raise archive.max_members if the bundle is genuine."
TAR_DAMAGED = (
    "The bundle is damaged, truncated or not a tar archive; rebuild it and upload it again."
)
ZIP_DAMAGED = (
    "The bundle is damaged, truncated or not a zip archive; rebuild it and upload it again."
)


def refused(
    site: Site, bundle: Path, bundle_type: BundleType, limits: ArchiveLimits
) -> ArchiveError:
    """Unpack, expecting a refusal that leaves the temporary tree exactly as it was."""
    before = snapshot(site.tmp)
    with pytest.raises(ArchiveError) as caught:
        site.unpack(bundle, bundle_type, limits)
    assert snapshot(site.tmp) == before
    return caught.value


def test_tar_with_too_many_members(site: Site) -> None:
    """A tar past archive.max_members stops at the first member over it, naming the key."""
    bundle = write_tar(site.bundles / "b.tgz", [file(f"f{i}", "x") for i in range(50)], "gz")
    error = refused(site, bundle, BundleType.TGZ, ArchiveLimits(max_members=10))
    assert str(error) == (
        'The bundle has more than 10 entries (stopped at "f10"), over the limit '
        f"archive.max_members (10) in codedeployagent.yml. {MEMBERS_FIX}"
    )
    assert error.member == "f10"


def test_zip_with_too_many_members_is_refused_before_writing(site: Site) -> None:
    """A zip's central directory gives the exact count, refused before anything is written."""
    bundle = write_zip(site.bundles / "b.zip", [file(f"f{i}", "x") for i in range(50)])
    error = refused(site, bundle, BundleType.ZIP, ArchiveLimits(max_members=10))
    assert str(error) == (
        'The bundle has 50 entries (stopped at "f10"), over the limit archive.max_members (10) '
        f"in codedeployagent.yml. {MEMBERS_FIX}"
    )


def test_total_size_limit(site: Site) -> None:
    """Past archive.max_total_bytes the member that crosses it is named, with the bytes seen."""
    entries = [file(name, os.urandom(400_000)) for name in ("a.bin", "b.bin", "c.bin")]
    bundle = write_tar(site.bundles / "b.tar", entries)
    error = refused(site, bundle, BundleType.TAR, ArchiveLimits(max_total_bytes=1_000_000))
    assert str(error) == (
        'The bundle expands to more than 1,000,000 bytes (at least 1,200,000 when extracting "c.bin"), '
        "over the limit archive.max_total_bytes in codedeployagent.yml. Make the bundle smaller, "
        "or raise archive.max_total_bytes if the bundle is genuine."
    )
    assert error.member == "c.bin"


def _ratio_message(total: int, size: int, member: str) -> str:
    return (
        f"The bundle expands more than 200:1 (at least {total:,} bytes from a {size:,}-byte "
        f'bundle, {total / size:,.0f}:1, when extracting "{member}"), over the limit '
        "archive.max_compression_ratio in codedeployagent.yml; it looks like a decompression "
        "bomb. Raise archive.max_compression_ratio if the bundle is genuine."
    )


def test_zip_bomb_over_the_compression_ratio(site: Site) -> None:
    """32 MiB of zeros in a ~32 KB zip (1000:1) is refused on its declared size, up front."""
    bundle = write_zip(site.bundles / "bomb.zip", [file("zeros.bin", bytes(32 * MIB))])
    error = refused(site, bundle, BundleType.ZIP, ArchiveLimits())
    assert str(error) == _ratio_message(32 * MIB, bundle.stat().st_size, "zeros.bin")


def test_tgz_bomb_over_the_compression_ratio(site: Site) -> None:
    """The ratio applies to gzipped tars too, counted over all members (16 files of 2 MiB)."""
    entries = [file(f"zeros{i:02d}.bin", bytes(2 * MIB)) for i in range(16)]
    bundle = write_tar(site.bundles / "bomb.tgz", entries, "gz")
    error = refused(site, bundle, BundleType.TGZ, ArchiveLimits())
    # The ninth file's header takes the total past the 16 MiB floor: 18 MiB at 500:1 and more.
    assert str(error) == _ratio_message(18 * MIB, bundle.stat().st_size, "zeros08.bin")


def test_small_compressible_bundle_is_under_the_ratio_floor(site: Site) -> None:
    """8 MiB of zeros compresses 1000:1 but stays under the floor, so it extracts."""
    bundle = write_zip(site.bundles / "blank.zip", [file("disk.img", bytes(8 * MIB))])
    site.unpack(bundle, BundleType.ZIP)
    assert (site.archive / "disk.img").stat().st_size == 8 * MIB


def _set_zip_sizes(bundle: Path, uncompressed: int) -> None:
    """Rewrite the declared uncompressed size of the only entry, in both headers."""
    raw = bytearray(bundle.read_bytes())
    local = raw.find(b"PK\x03\x04")
    central = raw.find(b"PK\x01\x02")
    raw[local + 22 : local + 26] = uncompressed.to_bytes(4, "little")
    raw[central + 24 : central + 28] = uncompressed.to_bytes(4, "little")
    bundle.write_bytes(bytes(raw))


def test_zip_whose_headers_understate_the_size(site: Site) -> None:
    """Headers claiming 1,000 bytes for 5 MiB of data: at most 1,000 bytes come out, then CRC."""
    bundle = write_zip(site.bundles / "liar.zip", [file("big.bin", bytes(5 * MIB))])
    _set_zip_sizes(bundle, 1_000)
    error = refused(site, bundle, BundleType.ZIP, ArchiveLimits(max_total_bytes=100_000))
    assert str(error) == (
        f"Error extracting zip archive: Bad CRC-32 for file 'big.bin' (at \"big.bin\"). {ZIP_DAMAGED}"
    )


def test_zip_whose_headers_overstate_the_size(site: Site) -> None:
    """Headers claiming more than the limit are refused up front (an honest header's early exit)."""
    bundle = write_zip(site.bundles / "liar.zip", [file("small.bin", b"tiny")])
    _set_zip_sizes(bundle, 50_000_000)
    error = refused(site, bundle, BundleType.ZIP, ArchiveLimits(max_total_bytes=1_000_000))
    assert str(error).startswith(
        "The bundle expands to more than 1,000,000 bytes (at least 50,000,000 when extracting "
        '"small.bin")'
    )


def test_real_bytes_are_counted_whatever_the_declared_size(tmp_path: Path) -> None:
    """The writer stops on bytes actually written, even when the declared size was tiny."""
    writer = TreeWriter(tmp_path, ArchiveLimits(max_total_bytes=3 * MIB), bundle_size=None)
    written: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            written.append(MIB)
            yield bytes(MIB)

    with pytest.raises(ArchiveError) as caught:
        writer.file("bomb.bin", 0o644, None, endless(), declared_size=10)
    assert str(caught.value).startswith(
        'The bundle expands to more than 3,145,728 bytes (at least 4,194,304 when extracting "bomb.bin")'
    )
    assert (tmp_path / "bomb.bin").stat().st_size == 3 * MIB  # the fourth chunk was never written
    assert len(written) == 4


def test_real_bytes_are_counted_for_the_ratio(tmp_path: Path) -> None:
    """Without a declared size the ratio is checked per chunk once past the 16 MiB floor."""
    writer = TreeWriter(tmp_path, ArchiveLimits(), bundle_size=10_000)
    chunks = (bytes(MIB) for _ in range(40))
    with pytest.raises(ArchiveError) as caught:
        writer.file("bomb.bin", 0o644, None, chunks)
    total = RATIO_FLOOR_BYTES + MIB
    assert str(caught.value).startswith(
        f"The bundle expands more than 200:1 (at least {total:,} bytes from a 10,000-byte bundle"
    )
    assert (tmp_path / "bomb.bin").stat().st_size == RATIO_FLOOR_BYTES


@pytest.mark.parametrize(
    ("content", "bundle_type", "message"),
    [
        (
            b"",
            BundleType.TAR,
            (
                "Error extracting tar archive: the bundle is empty (it has no entries). Rebuild it "
                "from the folder that holds appspec.yml, for example with "
                "`tar -czf bundle.tgz -C <folder> .`."
            ),
        ),
        (
            bytes(10240),  # a valid tar holding nothing: only end-of-archive blocks
            BundleType.TAR,
            (
                "Error extracting tar archive: the bundle is empty (it has no entries). Rebuild it "
                "from the folder that holds appspec.yml, for example with "
                "`tar -czf bundle.tgz -C <folder> .`."
            ),
        ),
        (
            gzip.compress(bytes(10240)),
            BundleType.TGZ,
            (
                "Error extracting tar archive: the bundle is empty (it has no entries). Rebuild it "
                "from the folder that holds appspec.yml, for example with "
                "`tar -czf bundle.tgz -C <folder> .`."
            ),
        ),
        (
            b"PK\x05\x06" + bytes(18),  # an empty zip: just the end of central directory
            BundleType.ZIP,
            (
                "Error extracting zip archive: the bundle is empty (it has no entries). Rebuild it "
                "from the folder that holds appspec.yml, for example with "
                "`cd <folder> && zip -r --symlinks ../bundle.zip .`."
            ),
        ),
        (
            b"",
            BundleType.ZIP,
            f"Error extracting zip archive: File is not a zip file. {ZIP_DAMAGED}",
        ),
    ],
    ids=["zero-bytes-tar", "empty-tar", "empty-tgz", "empty-zip", "zero-bytes-zip"],
)
def test_empty_bundles(site: Site, content: bytes, bundle_type: BundleType, message: str) -> None:
    """An empty bundle is refused with a message that says how to build one."""
    bundle = site.bundles / "empty"
    bundle.write_bytes(content)
    assert str(refused(site, bundle, bundle_type, ArchiveLimits())) == message


def test_truncated_tgz(site: Site) -> None:
    """A tgz cut in half fails with the real agent's prefix, the cause and the member."""
    data = os.urandom(2 * MIB)
    bundle = write_tar(
        site.bundles / "b.tgz", [file("appspec.yml", "x"), file("big.bin", data)], "gz"
    )
    bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    error = refused(site, bundle, BundleType.TGZ, ArchiveLimits())
    assert str(error) == (
        "Error extracting tar archive: Compressed file ended before the end-of-stream marker was "
        f'reached (at "big.bin"). {TAR_DAMAGED}'
    )
    assert error.member == "big.bin"


def test_corrupt_gzip_data(site: Site) -> None:
    """Flipped bytes in the deflate stream are reported as zlib reports them."""
    text = b"".join(b"line %d of a log file\n" % i for i in range(200_000))
    bundle = write_tar(site.bundles / "b.tgz", [file("log.txt", text)], "gz")
    raw = bytearray(bundle.read_bytes())
    for offset in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[offset] ^= 0xFF
    bundle.write_bytes(bytes(raw))
    error = refused(site, bundle, BundleType.TGZ, ArchiveLimits())
    assert str(error).startswith("Error extracting tar archive: Error -3 while decompressing data")
    assert str(error).endswith(f'(at "log.txt"). {TAR_DAMAGED}')


def test_truncated_plain_tar(site: Site) -> None:
    """An uncompressed tar cut inside a member's data says the data ended early."""
    bundle = write_tar(site.bundles / "b.tar", [file("big.bin", os.urandom(100_000))])
    bundle.write_bytes(bundle.read_bytes()[:50_000])
    error = refused(site, bundle, BundleType.TAR, ArchiveLimits())
    assert (
        str(error)
        == f'Error extracting tar archive: unexpected end of data (at "big.bin"). {TAR_DAMAGED}'
    )


def test_garbage_is_not_a_tar(site: Site) -> None:
    """Random bytes declared as tar are refused as not a tar archive."""
    bundle = site.bundles / "junk.tar"
    bundle.write_bytes(b"this is not an archive at all\n" * 40)
    error = refused(site, bundle, BundleType.TAR, ArchiveLimits())
    assert str(error) == f"Error extracting tar archive: invalid header. {TAR_DAMAGED}"


def test_damaged_tar_header_after_the_first_member(site: Site) -> None:
    """A later header with a bad checksum names the last good member."""
    bundle = write_tar(site.bundles / "b.tar", [file("a.txt", "x"), file("b.txt", "y")])
    raw = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        offset = tar.getmembers()[1].offset  # where b.txt's header (with its pax header) starts
    raw[offset + 148 : offset + 156] = b"0000000\x00"  # wrong checksum
    bundle.write_bytes(bytes(raw))
    error = refused(site, bundle, BundleType.TAR, ArchiveLimits())
    assert str(error) == f'Error extracting tar archive: bad checksum (at "a.txt"). {TAR_DAMAGED}'


def test_zip_cut_short(site: Site) -> None:
    """A zip missing its central directory is not a zip file."""
    bundle = write_zip(site.bundles / "b.zip", [file("a.txt", os.urandom(10_000))])
    bundle.write_bytes(bundle.read_bytes()[:5_000])
    error = refused(site, bundle, BundleType.ZIP, ArchiveLimits())
    assert str(error) == f"Error extracting zip archive: File is not a zip file. {ZIP_DAMAGED}"


def test_zip_declared_as_tar_and_tar_declared_as_zip(site: Site) -> None:
    """A bundle of the other format is refused with the bundle type to set."""
    zipped = write_zip(site.bundles / "b.zip", [file("appspec.yml", "x")])
    error = refused(site, zipped, BundleType.TGZ, ArchiveLimits())
    assert str(error) == (
        "Error extracting tar archive: the bundle is a zip file. Set the revision's bundle type "
        "to zip, or upload a tar archive."
    )
    for name, compression in (("b.tgz", "gz"), ("b.tar", "")):
        tarred = write_tar(site.bundles / name, [file("appspec.yml", "x")], compression)
        error = refused(site, tarred, BundleType.ZIP, ArchiveLimits())
        assert str(error) == (
            "Error extracting zip archive: the bundle is a tar archive. Set the revision's bundle "
            "type to tar or tgz, or upload a zip archive."
        )


def test_missing_bundle_file(site: Site) -> None:
    """A bundle that is not there is reported with its path."""
    missing = site.bundles / "nope.tar"
    error = refused(site, missing, BundleType.TAR, ArchiveLimits())
    assert str(error) == (
        f"Error extracting tar archive: cannot read the bundle {missing}: No such file or "
        "directory. Download the revision again."
    )


@pytest.fixture
def small_disk(site: Site) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted as the deployment root (root only; skipped if mount fails)."""
    mount_point = site.droot
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.root
def test_disk_full(site: Site, small_disk: Path) -> None:
    """ENOSPC gives the real agent's message, where and how much is free, and no partial output."""
    entries = [file("appspec.yml", "x"), file("big.bin", os.urandom(3 * MIB))]
    bundle = write_tar(site.bundles / "b.tar", entries)
    with pytest.raises(ArchiveError) as caught:
        site.unpack(bundle, BundleType.TAR)
    message = str(caught.value)
    assert message.startswith(
        "The disk is (or was) full during extraction. "
        f'Extracting into {site.archive} stopped at "big.bin" after '
    )
    assert "the partial output was removed and 1.0 MiB is now free on that file system" in message
    assert message.endswith(
        "Free some space there (or lower max_revisions in codedeployagent.yml so fewer old "
        "revisions are kept) and retry the deployment."
    )
    assert caught.value.member == "big.bin"
    assert list(small_disk.iterdir()) == []


def test_pax_header_cannot_smuggle_an_escaping_name(site: Site) -> None:
    """A pax `path` record overriding a harmless ustar name is checked like any name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("harmless.txt")
        info.pax_headers = {"path": "../../outside/passwd"}
        info.size = 5
        tar.addfile(info, io.BytesIO(b"pwned"))
    bundle = site.bundles / "pax.tar"
    bundle.write_bytes(buffer.getvalue())
    error = refused(site, bundle, BundleType.TAR, ArchiveLimits())
    assert error.member == "../../outside/passwd"
