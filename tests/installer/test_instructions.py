"""The instruction builder and install.json (reference §10.3 item 21, Ruby CommandBuilder tests).

Paths given relative are made absolute against the working directory, which these tests set
to a tmp dir (the Ruby tests chdir to /tmp).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codedeploy_agent.appspec.model import (
    Ace,
    Mode,
    Permission,
    PermissionType,
    SelinuxContext,
    SelinuxRange,
)
from codedeploy_agent.errors import InstallError
from codedeploy_agent.installer.instructions import InstructionBuilder, install_json_bytes


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The working directory the builder expands relative paths against."""
    monkeypatch.chdir(tmp_path)
    return str(tmp_path)


def as_json(builder: InstructionBuilder) -> object:
    return json.loads(install_json_bytes(builder.instructions))


def test_single_copy_is_serialised_with_absolute_destination(cwd: str) -> None:
    """A copy becomes {"type":"copy","source","destination"} with the destination expanded."""
    builder = InstructionBuilder()
    builder.copy("source", "destination")
    assert (
        install_json_bytes(builder.instructions)
        == (
            '{"instructions":[{"type":"copy","source":"source","destination":"'
            + cwd
            + '/destination"}]}'
        ).encode()
    )


def test_copy_colliding_with_copy_is_refused(cwd: str) -> None:
    """Two copies to the same destination fail with CodeDeploy's exact message."""
    builder = InstructionBuilder()
    builder.copy("source", "destination")
    with pytest.raises(InstallError) as err:
        builder.copy("source", "destination")
    assert str(err.value) == (
        "The deployment failed because the application specification file specifies two source "
        f"files named source and source for the same destination ({cwd}/destination). Remove one "
        "of the source file paths from the AppSpec file, and then try again."
    )


def test_single_mkdir_is_serialised(cwd: str) -> None:
    """A mkdir becomes {"type":"mkdir","directory"} with the directory expanded."""
    builder = InstructionBuilder()
    builder.mkdir("directory")
    assert as_json(builder) == {
        "instructions": [{"type": "mkdir", "directory": f"{cwd}/directory"}]
    }


def test_mkdir_colliding_with_copy_is_refused(cwd: str) -> None:
    """A mkdir where a file is copied fails with CodeDeploy's exact message."""
    builder = InstructionBuilder()
    builder.mkdir("directory")
    builder.copy("source", "directory/dir1")
    with pytest.raises(InstallError) as err:
        builder.mkdir("directory/dir1")
    assert str(err.value) == (
        "The deployment failed because the application specification file includes an mkdir "
        f"command more than once for the same destination path ({cwd}/directory/dir1) from "
        "(source). Update the files section of the AppSpec file, and then try again."
    )


def test_copy_colliding_with_mkdir_is_refused(cwd: str) -> None:
    """A copy where a directory is created fails with CodeDeploy's exact message."""
    builder = InstructionBuilder()
    builder.mkdir("directory/target")
    builder.copy("file_target", "directory/target/file_target")
    with pytest.raises(InstallError) as err:
        builder.copy("target", "directory/target")
    assert str(err.value) == (
        "The deployment failed because the application specification file calls for installing "
        "the file target, but a file with that name already exists at the location "
        f"({cwd}/directory/target). Update your AppSpec file or directory structure, and then "
        "try again."
    )
    assert builder.copying_file(f"{cwd}/directory/target/file_target")
    assert not builder.copying_file(f"{cwd}/directory/target")
    assert builder.making_directory(f"{cwd}/directory/target")
    assert not builder.making_directory(f"{cwd}/directory/target/file_target")


@pytest.mark.parametrize("second", ["directory", "directory/"])
def test_two_mkdirs_of_one_path_collapse(cwd: str, second: str) -> None:
    """The same directory twice (with or without a trailing slash) gives one mkdir."""
    builder = InstructionBuilder()
    builder.mkdir("directory")
    builder.mkdir(second)
    assert as_json(builder) == {
        "instructions": [{"type": "mkdir", "directory": f"{cwd}/directory"}]
    }


def test_permissions_twice_on_one_path_are_refused(cwd: str) -> None:
    """Setting permissions on the same path twice fails with CodeDeploy's exact message."""
    builder = InstructionBuilder()
    permission = Permission(object="testfile.txt")
    builder.set_permissions("testfile.txt", permission, origin="permissions[0]")
    with pytest.raises(InstallError) as err:
        builder.set_permissions("testfile.txt", permission, origin="permissions[1]")
    assert str(err.value) == (
        f"The deployment failed because the permissions setting for ({cwd}/testfile.txt) is "
        "specified more than once in the application specification file. Update the files "
        "section of the AppSpec file, and then try again."
    )


def test_empty_permission_adds_no_instruction(cwd: str) -> None:
    """A permission with nothing to set adds nothing (but still claims the path)."""
    builder = InstructionBuilder()
    builder.set_permissions("testfile.txt", Permission(object="testfile.txt"), origin="p")
    assert as_json(builder) == {"instructions": []}


def test_permission_instructions_are_chmod_setfacl_semanage_chown(cwd: str) -> None:
    """One path gets chmod, setfacl, semanage, chown in that order, with the real keys."""
    permission = Permission(
        object="testfile.txt",
        mode=Mode("744"),
        acls=(Ace(False, "user", "bob", "rwx"), Ace(True, "group", "dev", "r--")),
        context=SelinuxContext(type="type", user="name", range=SelinuxRange(2, 3, (0, 2, 3, 4, 6))),
        owner="bob",
        group="dev",
    )
    builder = InstructionBuilder()
    builder.set_permissions("testfile.txt", permission, origin="p")
    file = f"{cwd}/testfile.txt"
    assert install_json_bytes(builder.instructions).decode() == json.dumps(
        {
            "instructions": [
                {"type": "chmod", "mode": "744", "file": file},
                {"type": "setfacl", "acl": ["user:bob:rwx", "default:group:dev:r--"], "file": file},
                {
                    "type": "semanage",
                    "context": {
                        "user": "name",
                        "role": None,
                        "type": "type",
                        "range": "s2-s3:c0,c2.c4,c6",
                    },
                    "file": file,
                },
                {"type": "chown", "owner": "bob", "group": "dev", "file": file},
            ]
        },
        separators=(",", ":"),
    )


@pytest.mark.parametrize(
    ("owner", "group"), [("bob", None), (None, "dev")], ids=["owner-only", "group-only"]
)
def test_chown_may_carry_only_owner_or_only_group(
    cwd: str, owner: str | None, group: str | None
) -> None:
    """A chown with only an owner (or only a group) records the other as null."""
    builder = InstructionBuilder()
    permission = Permission(object="testfile.txt", owner=owner, group=group)
    builder.set_permissions("testfile.txt", permission, origin="p")
    assert as_json(builder) == {
        "instructions": [
            {"type": "chown", "owner": owner, "group": group, "file": f"{cwd}/testfile.txt"}
        ]
    }


def test_context_without_range_serialises_null_range(cwd: str) -> None:
    """A context without range is recorded with `"range":null` (the real agent crashes)."""
    builder = InstructionBuilder()
    permission = Permission(object="f", context=SelinuxContext(type="httpd_sys_content_t"))
    builder.set_permissions("f", permission, origin="p")
    assert as_json(builder) == {
        "instructions": [
            {
                "type": "semanage",
                "context": {
                    "user": None,
                    "role": None,
                    "type": "httpd_sys_content_t",
                    "range": None,
                },
                "file": f"{cwd}/f",
            }
        ]
    }


def test_find_matches_selects_files_by_type_pattern_and_except(cwd: str) -> None:
    """File matching honours type, pattern and except (Ruby "match the file" cases)."""
    builder = InstructionBuilder()
    builder.mkdir("directory/target")
    builder.copy("file_target", "directory/target/file_target")
    target = f"{cwd}/directory/target"
    file_target = f"{target}/file_target"

    def matches(
        types: set[PermissionType], pattern: str, excepts: tuple[str, ...] = ()
    ) -> list[str]:
        permission = Permission(
            object=target, types=frozenset(types), pattern=pattern, except_=excepts
        )
        return builder.find_matches(permission)

    assert matches({"file"}, "file*") == [file_target]
    assert matches({"directory"}, "file*") == []
    assert matches({"file"}, "filefile*") == []
    assert matches({"file"}, "file*", ("*target",)) == []


def test_find_matches_selects_directories_by_type_pattern_and_except(cwd: str) -> None:
    """Directory matching honours type, pattern and except (Ruby "match the directory")."""
    builder = InstructionBuilder()
    builder.mkdir("directory/target")
    builder.copy("file_target", "directory/target/file_target")
    obj = f"{cwd}/directory/"
    target = f"{cwd}/directory/target"

    def matches(
        types: set[PermissionType], pattern: str, excepts: tuple[str, ...] = ()
    ) -> list[str]:
        permission = Permission(
            object=obj, types=frozenset(types), pattern=pattern, except_=excepts
        )
        return builder.find_matches(permission)

    assert matches({"directory"}, "tar*") == [target]
    assert matches({"file"}, "tar*") == []
    assert matches({"directory"}, "tarr*") == []
    assert matches({"directory"}, "tar*", ("*et",)) == []


def test_find_matches_lists_files_before_directories_in_creation_order(cwd: str) -> None:
    """`**` selects every descendant: copies first, then mkdirs, each in creation order."""
    builder = InstructionBuilder()
    builder.mkdir("app")
    builder.copy("s/b", "app/b")
    builder.mkdir("app/sub")
    builder.copy("s/a", "app/sub/a")
    assert builder.find_matches(Permission(object="app")) == [
        f"{cwd}/app/b",
        f"{cwd}/app/sub/a",
        f"{cwd}/app/sub",
    ]


def test_default_ace_on_a_matched_file_is_refused(cwd: str) -> None:
    """A default ACE in a permission that selects a file fails with the exact message."""
    builder = InstructionBuilder()
    builder.mkdir("app")
    builder.copy("s/a", "app/a")
    permission = Permission(object="app", acls=(Ace(True, "user", "bob", "rwx"),))
    with pytest.raises(InstallError) as err:
        builder.find_matches(permission)
    assert str(err.value) == (
        "The deployment failed because the -d parameter has been specified to apply an acl "
        "setting to a file. This parameter is supported for directories only. Update the AppSpec "
        "file, and then try again."
    )
    only_dirs = Permission(
        object="app", types=frozenset({"directory"}), acls=(Ace(True, "user", "bob", "rwx"),)
    )
    builder.mkdir("app/sub")
    assert builder.find_matches(only_dirs) == [f"{cwd}/app/sub"]


def test_non_utf8_name_is_escaped_in_install_json(cwd: str) -> None:
    """A file name that is not UTF-8 is written as a \\udcXX escape that round-trips."""
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    builder = InstructionBuilder()
    builder.copy(f"/archive/{name}", f"/srv/{name}")
    data = install_json_bytes(builder.instructions)
    assert b'"destination":"/srv/caf\\udce9"' in data
    data.decode("utf-8")  # valid UTF-8
    parsed = json.loads(data)
    assert parsed["instructions"][0]["destination"].encode("utf-8", "surrogateescape") == (
        b"/srv/caf\xe9"
    )


def test_newline_in_a_destination_is_refused(cwd: str) -> None:
    """A destination containing a newline cannot be recorded in the cleanup file: refused."""
    builder = InstructionBuilder()
    with pytest.raises(InstallError) as err:
        builder.copy("/archive/a\nb", "/srv/a\nb")
    assert str(err.value) == (
        "The deployment failed because the path '/srv/a\\nb' contains a newline character, which "
        "the cleanup file cannot record. Rename the file in the revision, and then try again."
    )
