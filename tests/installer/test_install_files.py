"""Installing the `files` section (reference §5.1 to 5.3, §10.3 items 9 to 11 and 20)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from codedeploy_agent.appspec.model import Ace, FileExistsBehavior, Permission
from codedeploy_agent.errors import InstallError

if TYPE_CHECKING:
    from tests.installer.conftest import Account, FakeTools, Host

FILE = "file-to-potentially-overwrite"


def collision(host: Host) -> Path:
    """The features/ setup: the bundle has FILE, the destination already has a different one."""
    host.write(host.archive / FILE, "from the bundle\n")
    return host.write(host.dest / FILE, "original\n")


def disallow_message(path: Path) -> str:
    return f"The deployment failed because a specified file already exists at this location: {path}"


def test_existing_file_without_any_flag_fails(host: Host) -> None:
    """Item 9: no appspec behaviour, no override -> DISALLOW; nothing is written at all."""
    target = collision(host)
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=((FILE, str(host.dest)),)))
    assert str(err.value) == disallow_message(target)
    assert target.read_text() == "original\n"
    assert not host.install_json.exists()
    assert not host.cleanup.exists()


def test_override_overwrite_replaces_and_records_the_file(host: Host) -> None:
    """Item 10: `-b OVERWRITE` installs the bundle's content and records the file for cleanup."""
    target = collision(host)
    report = host.install(host.appspec(files=((FILE, str(host.dest)),)), override="OVERWRITE")
    assert target.read_text() == "from the bundle\n"
    assert host.cleanup_text() == f"{target}\n"
    assert (report.files_copied, report.files_overwritten, report.files_retained) == (1, 1, 0)
    assert [p.name for p in host.dest.iterdir()] == [FILE]  # no temporary file left behind


def test_override_retain_keeps_the_file_and_does_not_record_it(host: Host) -> None:
    """Item 10: `-b RETAIN` keeps the original content; the file is not in the cleanup file."""
    target = collision(host)
    report = host.install(host.appspec(files=((FILE, str(host.dest)),)), override="RETAIN")
    assert target.read_text() == "original\n"
    assert host.cleanup_text() == ""
    assert host.instructions_json() == []
    assert (report.files_copied, report.files_retained) == (0, 1)


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [
        (FileExistsBehavior.DISALLOW, None),
        (FileExistsBehavior.OVERWRITE, "from the bundle\n"),
        (FileExistsBehavior.RETAIN, "original\n"),
    ],
)
def test_appspec_behavior_applies_without_override(
    host: Host, behavior: FileExistsBehavior, expected: str | None
) -> None:
    """Item 11: the appspec's file_exists_behavior fails, overwrites or retains."""
    target = collision(host)
    spec = host.appspec(files=((FILE, str(host.dest)),), behavior=behavior)
    if expected is None:
        with pytest.raises(InstallError, match="already exists at this location"):
            host.install(spec)
    else:
        host.install(spec)
        assert target.read_text() == expected


@pytest.mark.parametrize(
    ("behavior", "override", "expected"),
    [
        (FileExistsBehavior.DISALLOW, "OVERWRITE", None),
        (FileExistsBehavior.OVERWRITE, "DISALLOW", "from the bundle\n"),
        (FileExistsBehavior.RETAIN, "DISALLOW", "original\n"),
        (FileExistsBehavior.RETAIN, "BOGUS", "original\n"),
    ],
)
def test_appspec_behavior_wins_over_override(
    host: Host, behavior: FileExistsBehavior, override: str, expected: str | None
) -> None:
    """§3.4: appspec file_exists_behavior > deployment override > DISALLOW."""
    target = collision(host)
    spec = host.appspec(files=((FILE, str(host.dest)),), behavior=behavior)
    if expected is None:
        with pytest.raises(InstallError) as err:
            host.install(spec, override=override)
        assert str(err.value) == disallow_message(target)
    else:
        host.install(spec, override=override)
        assert target.read_text() == expected


def test_invalid_override_fails_only_when_a_file_exists(host: Host) -> None:
    """An invalid override is harmless until a destination file exists, then fails exactly."""
    host.write(host.archive / "fresh", "new\n")
    host.install(host.appspec(files=(("fresh", str(host.dest / "a")),)), override="SOMETHING_WEIRD")
    assert (host.dest / "a" / "fresh").read_text() == "new\n"

    collision(host)
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=((FILE, str(host.dest)),)), override="SOMETHING_WEIRD")
    assert str(err.value) == (
        "The deployment failed because an invalid option was specified for fileExistsBehavior: "
        "SOMETHING_WEIRD. Valid options include OVERWRITE, RETAIN, and DISALLOW."
    )


def test_file_and_directory_sources_produce_exact_instructions_and_cleanup(host: Host) -> None:
    """Files go to dst/<basename>, directories merge (dotfiles too), missing ancestors get one
    mkdir per level; install.json and the cleanup file list exactly that, in that order."""
    src1 = host.write(host.archive / "src1", "one", mode=0o751)
    os.utime(src1, ns=(1_000_000_000_000_000_000, 1_100_000_000_123_456_789))
    for name in ("file1", "file2", ".env", "dir1/file1"):
        host.write(host.archive / "src3" / name, name)
    d = host.dest
    spec = host.appspec(files=(("src1", f"{d}/dst1/foo/bar"), ("src3/", f"{d}/dst3")))

    report = host.install(spec)

    a = host.archive
    assert host.instructions_json() == [
        {"type": "mkdir", "directory": f"{d}"},
        {"type": "mkdir", "directory": f"{d}/dst1"},
        {"type": "mkdir", "directory": f"{d}/dst1/foo"},
        {"type": "mkdir", "directory": f"{d}/dst1/foo/bar"},
        {"type": "copy", "source": f"{a}/src1", "destination": f"{d}/dst1/foo/bar/src1"},
        {"type": "mkdir", "directory": f"{d}/dst3"},
        {"type": "copy", "source": f"{a}/src3/.env", "destination": f"{d}/dst3/.env"},
        {"type": "mkdir", "directory": f"{d}/dst3/dir1"},
        {"type": "copy", "source": f"{a}/src3/dir1/file1", "destination": f"{d}/dst3/dir1/file1"},
        {"type": "copy", "source": f"{a}/src3/file1", "destination": f"{d}/dst3/file1"},
        {"type": "copy", "source": f"{a}/src3/file2", "destination": f"{d}/dst3/file2"},
    ]
    assert host.cleanup_text() == "".join(
        f"{d}{p}\n"
        for p in (
            "",
            "/dst1",
            "/dst1/foo",
            "/dst1/foo/bar",
            "/dst1/foo/bar/src1",
            "/dst3",
            "/dst3/.env",
            "/dst3/dir1",
            "/dst3/dir1/file1",
            "/dst3/file1",
            "/dst3/file2",
        )
    )
    assert (report.files_copied, report.directories_created) == (5, 6)
    copied = (d / "dst1/foo/bar/src1").stat()
    assert (d / "dst1/foo/bar/src1").read_text() == "one"
    assert stat.S_IMODE(copied.st_mode) == 0o751
    assert copied.st_mtime_ns == 1_100_000_000_123_456_789
    assert (d / "dst3/dir1/file1").read_text() == "dir1/file1"


def test_relative_destination_is_relative_to_the_working_directory(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative destination lands under the agent's cwd and is recorded absolute."""
    host.write(host.archive / "f", "x")
    monkeypatch.chdir(host.root)
    host.install(host.appspec(files=(("f", "rel/dir"),)))
    assert (host.root / "rel/dir/f").read_text() == "x"
    assert host.cleanup_text() == f"{host.root}/rel\n{host.root}/rel/dir\n{host.root}/rel/dir/f\n"


def test_existing_destination_directory_is_merged_into_not_recorded(host: Host) -> None:
    """An existing destination is not mkdir'd; its other content survives the next cleanup."""
    host.write(host.dest / "theirs", "keep")
    host.write(host.archive / "app" / "ours", "new")
    host.install(host.appspec(files=(("app", str(host.dest)),)))
    assert host.cleanup_text() == f"{host.dest}/ours\n"

    host.install(host.appspec())  # the next revision installs nothing

    assert sorted(p.name for p in host.dest.iterdir()) == ["theirs"]
    assert host.cleanup_text() == ""


def test_slash_source_installs_the_whole_archive(host: Host) -> None:
    """`source: /` copies the entire revision, appspec.yml and scripts included."""
    host.write(host.archive / "appspec.yml", "version: 0.0\n")
    host.write(host.archive / "scripts" / "start.sh", "#!/bin/sh\n", mode=0o755)
    host.install(host.appspec(files=(("/", str(host.dest)),)))
    assert sorted(str(p.relative_to(host.dest)) for p in host.dest.rglob("*")) == [
        "appspec.yml",
        "scripts",
        "scripts/start.sh",
    ]
    assert os.access(host.dest / "scripts" / "start.sh", os.X_OK)


def test_symlinks_are_recreated_as_links_even_to_directories(host: Host) -> None:
    """Links keep their target text; a link to a directory stays a link (Quirk fixed)."""
    host.write(host.archive / "app" / "real.txt", "r")
    host.write(host.archive / "app" / "sub" / "inner", "i")
    (host.archive / "app" / "to-file").symlink_to("real.txt")
    (host.archive / "app" / "to-dir").symlink_to("sub")
    (host.archive / "app" / "dangling").symlink_to("/nonexistent/target")
    (host.archive / "top-link").symlink_to("app/sub")
    spec = host.appspec(
        files=(("app", str(host.dest / "app")), ("top-link", str(host.dest / "other")))
    )

    host.install(spec)

    assert str((host.dest / "app" / "to-file").readlink()) == "real.txt"
    assert str((host.dest / "app" / "to-dir").readlink()) == "sub"
    assert str((host.dest / "app" / "dangling").readlink()) == "/nonexistent/target"
    assert str((host.dest / "other" / "top-link").readlink()) == "app/sub"
    assert (host.dest / "app" / "sub").is_dir()
    assert not (host.dest / "app" / "sub").is_symlink()


def test_next_install_removes_the_previous_revisions_files_first(host: Host) -> None:
    """The previous revision's files are uninstalled before the new one is checked (§5.1)."""
    host.write(host.archive / "app" / "a", "rev1-a")
    host.write(host.archive / "app" / "b", "rev1-b")
    spec = host.appspec(files=(("app", str(host.dest / "app")),))
    host.install(spec)

    (host.archive / "app" / "b").unlink()
    host.write(host.archive / "app" / "a", "rev2-a")
    report = host.install(spec)  # DISALLOW: would fail if rev1's files were still there

    assert sorted(p.name for p in (host.dest / "app").iterdir()) == ["a"]
    assert (host.dest / "app" / "a").read_text() == "rev2-a"
    assert report.cleanup_warnings == ()


def test_overwritten_file_is_removed_by_the_next_cleanup_but_retained_one_is_not(
    host: Host,
) -> None:
    """OVERWRITE'd files belong to the deployment afterwards; RETAIN'd ones never do."""
    host.write(host.archive / "over", "bundle")
    host.write(host.archive / "kept", "bundle")
    host.write(host.dest / "over", "original")
    host.write(host.dest / "kept", "original")
    host.install(host.appspec(files=(("over", str(host.dest)),)), override="OVERWRITE")
    host.install(host.appspec(files=(("kept", str(host.dest)),)), override="RETAIN")

    assert not (host.dest / "over").exists()  # recorded by the first install, removed by the 2nd
    host.install(host.appspec())
    assert (host.dest / "kept").read_text() == "original"


def test_half_failed_install_is_undone_by_the_next_install(
    host: Host, fake_tools: FakeTools
) -> None:
    """A failure midway leaves install.json and a cleanup file of what was created; the next
    install replays it, so the same files install again without collisions."""
    fake_tools.add("setfacl", exit_code=1, stderr="setfacl: boom")
    host.write(host.archive / "app" / "a", "a", mode=0o644)
    app = host.dest / "app"
    acl_perm = Permission(object=str(app), acls=(Ace(False, "user", "nobody", "r-x"),))
    files = (("app", str(app)),)

    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=files, permissions=(acl_perm,)))

    assert str(err.value) == (
        "The deployment failed because of a problem with the acls permission settings in the "
        f"application specification file for this object: {app}/a. Failed command: setfacl "
        f"--set user:nobody:r-x,user::rw-,group::r--,other::r--,mask::r-- {app}/a. "
        "Exit code: 1. setfacl: boom"
    )
    assert [i["type"] for i in host.instructions_json()] == ["mkdir", "mkdir", "copy", "setfacl"]
    assert host.cleanup_text() == f"{host.dest}\n{app}\n{app}/a\n"

    host.install(host.appspec(files=files))

    assert (app / "a").read_text() == "a"
    assert host.cleanup_text() == f"{host.dest}\n{app}\n{app}/a\n"


@pytest.mark.root
def test_unremovable_previous_file_is_a_warning_not_a_failure(host: Host) -> None:
    """A previous file that cannot be removed (chattr +i) is reported; the install goes on, and
    the file heads the new cleanup file so the install after it removes it."""
    locked = host.write(host.root / "old" / "locked", "l")
    if subprocess.run(["chattr", "+i", str(locked)], check=False, capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        host.cleanup.write_bytes(f"{locked.parent}\n{locked}\n".encode())
        host.write(host.archive / "new", "n")
        report = host.install(host.appspec(files=(("new", str(host.dest)),)))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert report.cleanup_warnings == (
        (
            f"Could not remove {locked} (previous revision's file) during cleanup: Operation not "
            "permitted. Remove it by hand or fix its permissions (lsattr/chattr -i, mount rw); "
            "the deployment continues, and the next deployment tries to remove it again."
        ),
    )
    assert (host.dest / "new").read_text() == "n"
    assert host.cleanup_text() == f"{locked.parent}\n{locked}\n{host.dest}\n{host.dest}/new\n"

    report = host.install(host.appspec(files=(("new", str(host.dest)),)))

    assert report.cleanup_warnings == ()
    assert not locked.parent.exists()
    assert host.cleanup_text() == f"{host.dest}\n{host.dest}/new\n"


@pytest.mark.root
def test_unremovable_previous_file_survives_a_failed_install(host: Host) -> None:
    """An install that fails after the cleanup (a file collision) still leaves the path it
    could not remove in the cleanup file for the next install."""
    locked = host.write(host.root / "old" / "locked", "l")
    if subprocess.run(["chattr", "+i", str(locked)], check=False, capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here")
    try:
        host.cleanup.write_bytes(f"{locked}\n".encode())
        host.write(host.archive / "new", "n")
        host.write(host.dest / "new", "someone else's")
        with pytest.raises(InstallError, match="a specified file already exists"):
            host.install(host.appspec(files=(("new", str(host.dest)),)))
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert host.cleanup_text() == f"{locked}\n"


def test_missing_source_fails_before_anything_is_written(host: Host) -> None:
    """A source that is not in the revision is refused up front (the real agent crashes later)."""
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("nope/missing.txt", str(host.dest)),)))
    assert str(err.value) == (
        "The deployment failed because the files section of the AppSpec file names a source "
        f"that is not in the revision: nope/missing.txt (looked for {host.archive}/nope/"
        "missing.txt). Source paths are relative to the root of the revision; correct the files "
        "section of the AppSpec file, and then try again."
    )
    assert not host.install_json.exists()
    assert not host.dest.exists()


def test_directory_source_over_an_existing_file_is_refused(host: Host) -> None:
    """A directory of the revision cannot be installed where a file exists, in any mode."""
    host.write(host.archive / "app" / "sub" / "x", "x")
    host.write(host.dest / "sub", "a file, not a directory")
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(host.dest)),)), override="OVERWRITE")
    assert str(err.value) == (
        "The deployment failed because a specified file already exists at this location: "
        f"{host.dest}/sub. The directory {host.archive}/app/sub must be installed there; remove "
        "the file or change the destination in the files section of the AppSpec file, and then "
        "try again."
    )


def test_overwrite_does_not_replace_a_directory_with_a_file(host: Host) -> None:
    """OVERWRITE replaces files only: a directory where a file goes is an error."""
    host.write(host.archive / "thing", "t")
    (host.dest / "thing").mkdir(parents=True)
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("thing", str(host.dest)),)), override="OVERWRITE")
    assert str(err.value) == (
        "The deployment failed because a directory exists where the file "
        f"{host.archive}/thing must be installed: {host.dest}/thing. OVERWRITE replaces files, "
        "not directories; remove the directory or change the destination in the files section "
        "of the AppSpec file, and then try again."
    )


def test_special_files_in_the_revision_are_refused(host: Host) -> None:
    """A FIFO (or device, socket) in the revision cannot be installed: refused up front."""
    (host.archive / "app").mkdir()
    os.mkfifo(host.archive / "app" / "pipe")
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(host.dest)),)))
    assert str(err.value) == (
        f"The deployment failed because {host.archive}/app/pipe in the revision is not a "
        "regular file, directory or symbolic link (a device, socket or FIFO cannot be "
        "installed). Remove it from the revision, and then try again."
    )


def test_non_utf8_names_install_and_are_recorded_byte_exact(host: Host) -> None:
    """A file name that is not UTF-8 is copied and its exact bytes recorded for cleanup."""
    raw_name = b"caf\xe9.txt"
    (host.archive / "app").mkdir()
    Path(os.fsdecode(os.fsencode(host.archive / "app") + b"/" + raw_name)).write_text("x")
    host.install(host.appspec(files=(("app", str(host.dest)),)))
    dest_raw = os.fsencode(host.dest) + b"/" + raw_name
    assert Path(os.fsdecode(dest_raw)).exists()
    assert host.cleanup.read_bytes() == os.fsencode(host.dest) + b"\n" + dest_raw + b"\n"
    assert b"caf\\udce9.txt" in host.install_json.read_bytes()

    host.install(host.appspec())
    assert not host.dest.exists()


@pytest.mark.root
def test_copy_preserves_the_source_owner_when_permitted(host: Host, account: Account) -> None:
    """Like FileUtils.copy(preserve: true) run as root, a copy keeps the source's uid/gid."""
    source = host.write(host.archive / "owned", "o", mode=0o6750)
    uid, gid = pwd.getpwnam(account.user).pw_uid, grp.getgrnam(account.group).gr_gid
    os.chown(source, uid, gid)
    source.chmod(0o6750)  # chown cleared the setuid/setgid bits
    host.install(host.appspec(files=(("owned", str(host.dest)),)))
    st = (host.dest / "owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, 0o6750)
