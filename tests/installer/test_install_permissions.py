"""Installing the `permissions` section (reference §3.5, §5.4, §10.3 items 16 and 20)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from codedeploy_agent.appspec.model import Ace, Mode, Permission, SelinuxContext, SelinuxRange
from codedeploy_agent.errors import AppSpecError, InstallError
from codedeploy_agent.installer.apply import full_acl

if TYPE_CHECKING:
    from tests.installer.conftest import Account, FakeTools, Host


def acl_text(aces: tuple[Ace, ...], mode: int) -> str:
    return ",".join(ace.canonical() for ace in full_acl(aces, mode))


def getfacl(path: Path) -> list[str]:
    out = subprocess.run(["getfacl", "-c", "-p", str(path)], check=True, capture_output=True)
    return [line for line in out.stdout.decode().splitlines() if line]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_full_acl_matches_the_documented_example() -> None:
    """Mode 421 with user:bob:rwx and default:user:bob:rwx gives the real agent's exact ACL."""
    aces = (Ace(False, "user", "bob", "rwx"), Ace(True, "user", "bob", "rwx"))
    assert acl_text(aces, 0o100421) == (
        "user:bob:rwx,default:user:bob:rwx,user::r--,group::-w-,other::--x,mask::-w-,"
        "default:user::r--,default:group::-w-,default:other::--x,default:mask::-w-"
    )


def test_full_acl_keeps_given_mask_and_default_base_entries() -> None:
    """A given mask is not duplicated; a given default group entry feeds the default mask."""
    aces = (
        Ace(False, "user", "bob", "r--"),
        Ace(False, "mask", "", "rw-"),
        Ace(True, "group", "", "r-x"),
        Ace(True, "group", "dev", "rwx"),
    )
    assert acl_text(aces, 0o750) == (
        "user:bob:r--,mask::rw-,default:group::r-x,default:group:dev:rwx,user::rwx,group::r-x,"
        "other::---,default:user::rwx,default:other::---,default:mask::r-x"
    )


def test_full_acl_without_named_entries_adds_no_mask() -> None:
    """Only a mask entry given: base entries are added, no extra mask."""
    assert acl_text((Ace(False, "mask", "", "r--"),), 0o644) == (
        "mask::r--,user::rw-,group::r--,other::r--"
    )


def test_mode_and_acl_are_applied_for_real_after_each_other(host: Host) -> None:
    """chmod runs before setfacl, so the ACL's base entries come from the new mode (getfacl)."""
    host.write(host.archive / "app" / "a", "a", mode=0o644)
    app = host.dest / "app"
    permission = Permission(
        object=str(app), mode=Mode("750"), acls=(Ace(False, "user", "nobody", "rwx"),)
    )
    report = host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))

    assert getfacl(app / "a") == [
        "user::rwx",
        "user:nobody:rwx\t#effective:r-x",  # the mask comes from the mode's group bits
        "group::r-x",
        "mask::r-x",
        "other::---",
    ]
    assert report.permissions_applied == 2
    assert host.instructions_json()[-2:] == [
        {"type": "chmod", "mode": "750", "file": f"{app}/a"},
        {"type": "setfacl", "acl": ["user:nobody:rwx"], "file": f"{app}/a"},
    ]


def test_default_acl_on_created_directories(host: Host) -> None:
    """A default ACE is applied to directories (type: [directory]) with default base entries."""
    host.write(host.archive / "app" / "sub" / "f", "f")
    app = host.dest / "app"
    app.mkdir(parents=True)
    app.chmod(0o755)
    permission = Permission(
        object=str(app),
        types=frozenset({"directory"}),
        mode=Mode("750"),
        acls=(Ace(True, "user", "nobody", "r-x"),),
    )
    host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))

    assert getfacl(app / "sub") == [
        "user::rwx",
        "group::r-x",
        "other::---",
        "default:user::rwx",
        "default:user:nobody:r-x",
        "default:group::r-x",
        "default:mask::r-x",
        "default:other::---",
    ]
    assert mode_of(app) == 0o755  # the object directory itself never changes
    assert getfacl(app) == ["user::rwx", "group::r-x", "other::r-x"]


def test_directory_object_changes_only_files_this_deployment_created(host: Host) -> None:
    """Pre-existing files in the object directory keep their mode; created ones change."""
    app = host.dest / "app"
    theirs = host.write(app / "theirs", "t", mode=0o600)
    app.chmod(0o711)
    host.write(host.archive / "src" / "ours", "o", mode=0o600)
    permission = Permission(object=str(app), mode=Mode("644"))
    host.install(host.appspec(files=(("src", str(app)),), permissions=(permission,)))
    assert mode_of(app / "ours") == 0o644
    assert mode_of(theirs) == 0o600
    assert mode_of(app) == 0o711


def test_pattern_and_except_select_direct_children(host: Host) -> None:
    """Item 16 in an install: `prefix*` minus `*ReadMe`/`*.tmp` changes exactly the matches."""
    names = ["prefix", "prefix_matches", "prefix_ReadMe", "prefix.tmp", "not_prefix"]
    for name in names:
        host.write(host.archive / "test" / name, name, mode=0o600)
    host.write(host.archive / "test" / "prefix_dir" / "prefix_deep", "d", mode=0o600)
    test = host.dest / "test"
    permission = Permission(
        object=str(test),
        pattern="prefix*",
        except_=("*ReadMe", "*.tmp"),
        types=frozenset({"file"}),
        mode=Mode("640"),
    )
    host.install(host.appspec(files=(("test", str(test)),), permissions=(permission,)))
    changed = sorted(
        str(p.relative_to(test)) for p in test.rglob("*") if p.is_file() and mode_of(p) == 0o640
    )
    assert changed == ["prefix", "prefix_matches"]


def test_type_directory_changes_created_directories_only(host: Host) -> None:
    """`type: [directory]` selects mkdir targets, never files nor the object itself."""
    host.write(host.archive / "app" / "d1" / "f", "f", mode=0o600)
    app = host.dest / "app"
    app.mkdir(parents=True)
    app.chmod(0o711)
    permission = Permission(object=str(app), types=frozenset({"directory"}), mode=Mode("700"))
    host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))
    assert mode_of(app / "d1") == 0o700
    assert mode_of(app / "d1" / "f") == 0o600
    assert mode_of(app) == 0o711


def test_file_object_with_a_pattern_fails_before_anything_is_written(host: Host) -> None:
    """A permission whose object is a copied file may not have a pattern (exact message)."""
    host.write(host.archive / "f.txt", "f")
    obj = f"{host.dest}/f.txt"
    permission = Permission(object=obj, pattern="*.txt", mode=Mode("600"))
    with pytest.raises(AppSpecError) as err:
        host.install(host.appspec(files=(("f.txt", str(host.dest)),), permissions=(permission,)))
    assert str(err.value) == (
        "The deployment failed because the application specification file includes an object "
        f"({obj}) with an invalid pattern (*.txt), such as a pattern for a file applied to a "
        "directory. Correct the permissions section of the AppSpec file, and then try again."
    )
    assert err.value.path == "permissions[0].pattern"
    assert not host.dest.exists()
    assert not host.install_json.exists()


def test_file_object_with_an_except_or_default_ace_is_refused(host: Host) -> None:
    """An except, or a default ACE, on a copied file's permission fails with the exact text."""
    host.write(host.archive / "f.txt", "f")
    obj = f"{host.dest}/f.txt"
    files = (("f.txt", str(host.dest)),)
    with pytest.raises(AppSpecError) as err:
        host.install(host.appspec(files=files, permissions=(Permission(obj, except_=("x",)),)))
    assert str(err.value) == (
        "The deployment failed because the except parameter for a pattern in the permissions "
        f'section (["x"]) for the object named {obj} contains an invalid format. Update the '
        "AppSpec file, and then try again."
    )
    default_ace = Permission(obj, acls=(Ace(True, "user", "nobody", "r--"),))
    with pytest.raises(AppSpecError, match="the -d parameter has been specified"):
        host.install(host.appspec(files=files, permissions=(default_ace,)))
    directory_only = Permission(obj, pattern="x*", types=frozenset({"directory"}))
    report = host.install(host.appspec(files=files, permissions=(directory_only,)))
    assert report.permissions_applied == 0  # type: [directory] on a file: ignored, no check


def test_file_object_gets_its_permissions(host: Host) -> None:
    """A permission whose object is a copied file changes that file (type includes file)."""
    host.write(host.archive / "f.txt", "f", mode=0o644)
    permission = Permission(object=f"{host.dest}/f.txt", mode=Mode("4711"))
    host.install(host.appspec(files=(("f.txt", str(host.dest)),), permissions=(permission,)))
    assert mode_of(host.dest / "f.txt") == 0o4711


def test_same_path_in_two_entries_is_refused(host: Host) -> None:
    """Two permission entries selecting one path fail with the exact duplicate message."""
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    permissions = (
        Permission(object=str(app), mode=Mode("600")),
        Permission(object=f"{app}/a", owner="root"),
    )
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(app)),), permissions=permissions))
    assert str(err.value) == (
        f"The deployment failed because the permissions setting for ({app}/a) is specified more "
        "than once in the application specification file. Update the files section of the "
        "AppSpec file, and then try again."
    )


def test_permissions_never_follow_a_symlink_out_of_the_deployment(host: Host) -> None:
    """A linked file outside the deployment keeps its mode: the link itself is skipped."""
    outside = host.write(host.root / "outside" / "secret", "s", mode=0o600)
    host.write(host.archive / "app" / "a", "a", mode=0o600)
    (host.archive / "app" / "link").symlink_to(outside)
    app = host.dest / "app"
    permission = Permission(object=str(app), mode=Mode("777"))
    host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))
    assert mode_of(outside) == 0o600
    assert mode_of(app / "a") == 0o777
    assert [i["file"] for i in host.instructions_json() if i["type"] == "chmod"] == [f"{app}/a"]


@pytest.mark.usefixtures("empty_path")
def test_missing_setfacl_fails_before_anything_is_written(host: Host) -> None:
    """ACLs without setfacl installed: the error names the tool, entry and package."""
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    permission = Permission(object=str(app), acls=(Ace(False, "user", "nobody", "r--"),))
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))
    assert str(err.value) == (
        f"The deployment failed because permissions[0] (object: {app}) in the AppSpec file sets "
        "acls, but setfacl is not installed on this host. Install it (Debian/Ubuntu: apt-get "
        "install acl; RHEL/Amazon Linux: yum install acl), and then try again."
    )
    assert not host.dest.exists()
    assert not host.install_json.exists()
    assert not host.cleanup.exists()


CONTEXT = SelinuxContext(
    type="httpd_sys_content_t", user="system_u", range=SelinuxRange(0, 2, (0, 1, 2, 3))
)


@pytest.mark.usefixtures("empty_path")
def test_missing_semanage_fails_before_anything_is_written(host: Host) -> None:
    """A context without semanage installed: the error names the tool, entry and package."""
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    permissions = (
        Permission(object="/nonexistent", mode=Mode("600")),
        Permission(object=str(app), context=CONTEXT),
    )
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(app)),), permissions=permissions))
    assert str(err.value) == (
        f"The deployment failed because permissions[1] (object: {app}) in the AppSpec file sets "
        "an SELinux context, but semanage is not installed on this host. Install it "
        "(Debian/Ubuntu: apt-get install policycoreutils-python-utils; RHEL/Amazon Linux: yum "
        "install policycoreutils-python-utils), and then try again."
    )
    assert not host.dest.exists()


def test_missing_restorecon_is_named_with_its_package(
    host: Host, fake_tools: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    """semanage present but restorecon missing: the error names restorecon's package."""
    fake_tools.add("semanage")
    monkeypatch.setenv("PATH", str(fake_tools.bin))
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    with pytest.raises(InstallError) as err:
        host.install(
            host.appspec(
                files=(("app", str(app)),),
                permissions=(Permission(object=str(app), context=CONTEXT),),
            )
        )
    assert str(err.value).endswith(
        "but restorecon is not installed on this host. Install it (Debian/Ubuntu: apt-get install "
        "policycoreutils; RHEL/Amazon Linux: yum install policycoreutils), and then try again."
    )


def test_selinux_context_commands_and_cleanup(host: Host, fake_tools: FakeTools) -> None:
    """semanage fcontext -a / restorecon -v run per path with the real path, are recorded as
    `semanage\\0<path>`, and the next install deletes them. Fake tools: SELinux is not enabled
    on this machine, so only the command construction can be checked here."""
    fake_tools.add("semanage")
    fake_tools.add("restorecon")
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    permission = Permission(object=str(app), context=CONTEXT)
    host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))

    real = os.path.realpath(app / "a")
    assert fake_tools.calls() == [
        f"semanage fcontext -a -s system_u -t httpd_sys_content_t -r s0-s2:c0.c3 {real}",
        f"restorecon -v {real}",
    ]
    assert host.cleanup_text() == f"{host.dest}\n{app}\n{app}/a\nsemanage\0{real}\n"

    host.install(host.appspec())
    assert fake_tools.calls()[2:] == [f"semanage fcontext -d {real}"]
    assert not host.dest.exists()


def test_failing_semanage_reports_the_command_and_stderr(host: Host, fake_tools: FakeTools) -> None:
    """A semanage failure is the real agent's message plus the tool's stderr."""
    fake_tools.add("semanage", exit_code=1, stderr="ValueError: Type foo_t is invalid")
    fake_tools.add("restorecon")
    host.write(host.archive / "app" / "a", "a")
    app = host.dest / "app"
    permission = Permission(object=str(app), context=SelinuxContext(type="foo_t"))
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))
    real = os.path.realpath(app / "a")
    assert str(err.value) == (
        "The deployment failed because the application specification file contains an error in "
        "the settings for the context parameter. Update the permissions section of the AppSpec "
        f"file, and then try again. Failed command: semanage fcontext -a -t foo_t {real}. Exit "
        "code: 1. ValueError: Type foo_t is invalid"
    )
    assert fake_tools.calls() == [f"semanage fcontext -a -t foo_t {real}"]


@pytest.mark.root
def test_owner_and_group_are_changed_by_name(host: Host, account: Account) -> None:
    """chown by name: files and created directories get the user and group (real accounts)."""
    host.write(host.archive / "app" / "sub" / "f", "f", mode=0o4755)
    app = host.dest / "app"
    permission = Permission(
        object=str(app), owner=account.user, group=account.group, mode=Mode("4750")
    )
    host.install(host.appspec(files=(("app", str(app)),), permissions=(permission,)))
    uid, gid = pwd.getpwnam(account.user).pw_uid, grp.getgrnam(account.group).gr_gid
    for path in (app / "sub", app / "sub" / "f"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (uid, gid)
    assert app.stat().st_uid == 0  # the object itself is not changed
    assert host.instructions_json()[-1] == {
        "type": "chown",
        "owner": account.user,
        "group": account.group,
        "file": f"{app}/sub",
    }


@pytest.mark.root
def test_owner_only_keeps_the_group(host: Host, account: Account) -> None:
    """An owner without a group changes only the owner."""
    host.write(host.archive / "f", "f")
    permission = Permission(object=f"{host.dest}/f", owner=account.user)
    host.install(host.appspec(files=(("f", str(host.dest)),), permissions=(permission,)))
    st = (host.dest / "f").stat()
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam(account.user).pw_uid, 0)


def test_unknown_owner_fails_before_anything_is_written(host: Host) -> None:
    """A user that does not exist is named, with its permissions entry and the fix."""
    host.write(host.archive / "f", "f")
    obj = f"{host.dest}/f"
    permission = Permission(object=obj, owner="no-such-user-cd")
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("f", str(host.dest)),), permissions=(permission,)))
    assert str(err.value) == (
        'The deployment failed because the user "no-such-user-cd" named as owner in '
        f"permissions[0] (object: {obj}) does not exist on this host. Create it (useradd "
        "no-such-user-cd) before the Install event, for example in a BeforeInstall hook, or "
        "correct the permissions section of the AppSpec file, and then try again."
    )
    assert not host.dest.exists()


def test_unknown_group_fails_before_anything_is_written(host: Host) -> None:
    """A group that does not exist is named, with its permissions entry and the fix."""
    host.write(host.archive / "f", "f")
    obj = f"{host.dest}/f"
    permission = Permission(object=obj, group="no-such-group-cd")
    with pytest.raises(InstallError) as err:
        host.install(host.appspec(files=(("f", str(host.dest)),), permissions=(permission,)))
    assert str(err.value) == (
        'The deployment failed because the group "no-such-group-cd" named as group in '
        f"permissions[0] (object: {obj}) does not exist on this host. Create it (groupadd "
        "no-such-group-cd) before the Install event, for example in a BeforeInstall hook, or "
        "correct the permissions section of the AppSpec file, and then try again."
    )


def test_unknown_owner_in_a_permission_matching_nothing_is_ignored(host: Host) -> None:
    """Like CodeDeploy, a permission that selects nothing is never applied, so never checked."""
    host.write(host.archive / "f", "f")
    permission = Permission(object=str(host.root / "elsewhere"), owner="no-such-user-cd")
    report = host.install(host.appspec(files=(("f", str(host.dest)),), permissions=(permission,)))
    assert report.permissions_applied == 0
