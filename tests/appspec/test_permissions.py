"""The permissions section: entries, modes, ACLs, SELinux contexts (reference §3.5, §10.3 16-19)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from codedeploy_agent.appspec import (
    check_appspec,
    check_file_permission,
    parse_ace,
    parse_appspec,
    parse_context,
    parse_mode,
    parse_range,
)
from codedeploy_agent.appspec.model import Ace, Mode, Permission, SelinuxContext, SelinuxRange
from codedeploy_agent.errors import AppSpecError

SpecText = Callable[[str], str]

UPDATE = "Update the permissions section of the AppSpec file, and then try again."
ACL = (
    "The deployment failed because of a problem with the acls permission settings in the "
    "application specification file."
)


def invalid_ace(ace: str) -> str:
    return f"{ACL} Invalid acl entry ({ace})."


def fail(text: str) -> AppSpecError:
    with pytest.raises(AppSpecError) as info:
        parse_appspec(text)
    return info.value


def permissions(spec_text: SpecText, body: str) -> tuple[Permission, ...]:
    return parse_appspec(spec_text("permissions:\n" + body)).permissions


# --- entries (item 16) --------------------------------------------------------------------------


def test_permission_without_object(spec_text: SpecText) -> None:
    """An entry with no object fails with the real agent's message."""
    err = fail(spec_text("permissions:\n  - pattern: test\n"))
    assert str(err) == (
        "The deployment failed because a permission listed in the application specification file "
        f"has no object value. {UPDATE}"
    )
    assert err.path == "permissions[0].object"


def test_blank_object_is_no_object(spec_text: SpecText) -> None:
    """An object that is blank after stripping counts as missing."""
    assert fail(spec_text("permissions:\n  - object: '  '\n")).path == "permissions[0].object"


def test_list_object_is_one_error(spec_text: SpecText) -> None:
    """An object given as a list is a single error saying a single value is expected."""
    report = check_appspec(spec_text("permissions:\n  - object: [a, b]\n"), filename="appspec.yml")
    assert [(e.path, e.message) for e in report.errors] == [
        (
            "permissions[0].object",
            (
                "The deployment failed because an object in the application specification file must "
                'be a single value, not a list (["a", "b"]). Correct the AppSpec file, and then try '
                "again."
            ),
        )
    ]


def test_defaults_of_an_entry(spec_text: SpecText) -> None:
    """pattern `**`, no except, both types, nothing else set."""
    (perm,) = permissions(spec_text, "  - object: '/'\n    pattern: '**'\n")
    assert perm == Permission(object="/")
    assert perm.types == frozenset({"file", "directory"})


def test_multiple_permissions_keep_order(spec_text: SpecText) -> None:
    """Entries keep file order; objects are stripped text."""
    perms = permissions(spec_text, "  - object: '/'\n  - object: ' test '\n  - object: more\n")
    assert [p.object for p in perms] == ["/", "test", "more"]


def test_full_entry(spec_text: SpecText) -> None:
    """Every field of the real agent's 'valid permission object' test is decoded."""
    (perm,) = permissions(
        spec_text,
        """\
          - object: 'test'
            pattern: 'prefix*'
            except: ['*ReadMe', '*.tmp']
            type: ['file']
            owner: 'bob'
            group: 'dev'
            mode: 6763
            acls:
              - 'u:henry:7'
              - 'd:g:manager:rw'
            context:
              name: 'user_u'
              type: 'unconfined_t'
              range: 's3-s5:c0.c7,c13'
        """,
    )
    assert perm == Permission(
        object="test",
        pattern="prefix*",
        except_=("*ReadMe", "*.tmp"),
        types=frozenset({"file"}),
        owner="bob",
        group="dev",
        mode=Mode("6763"),
        acls=(Ace(False, "user", "henry", "rwx"), Ace(True, "group", "manager", "rw-")),
        context=SelinuxContext(
            type="unconfined_t",
            user="user_u",
            range=SelinuxRange(3, 5, (0, 1, 2, 3, 4, 5, 6, 7, 13)),
        ),
    )


@pytest.mark.parametrize(
    ("raw", "shown"), [("['file', 'link']", "link"), ("[1]", "1"), ("[File]", "File")]
)
def test_unsupported_type(spec_text: SpecText, raw: str, shown: str) -> None:
    """A type other than file/directory fails with the real agent's text ("filespecifies" sic)."""
    err = fail(spec_text(f"permissions:\n  - object: /a\n    type: {raw}\n"))
    assert str(err) == (
        "The deployment failed because the application specification filespecifies a permission "
        f"for an object type not supported for permissions ({shown}). {UPDATE}"
    )
    assert err.path.startswith("permissions[0].type[")


def test_type_given_as_a_string_is_refused(spec_text: SpecText) -> None:
    """`type: file` (the real agent crashes on it) is an error that shows the list form."""
    err = fail(spec_text("permissions:\n  - object: /a\n    type: file\n"))
    assert "must be a list such as [file, directory]" in str(err)
    assert err.path == "permissions[0].type"


def test_owner_and_group_numbers_become_text(spec_text: SpecText) -> None:
    """Numeric owner/group values are kept as their text, as Ruby's to_s would print them."""
    (perm,) = permissions(spec_text, "  - object: /a\n    owner: 1000\n    group: 100\n")
    assert (perm.owner, perm.group) == ("1000", "100")


def test_context_without_range(spec_text: SpecText) -> None:
    """Quirk fixed: a context without range is valid (the real agent crashed serialising it)."""
    (perm,) = permissions(
        spec_text, "  - object: /a\n    context:\n      type: httpd_sys_content_t\n"
    )
    assert perm.context == SelinuxContext(type="httpd_sys_content_t")


def test_context_without_type_shows_the_context(spec_text: SpecText) -> None:
    """A context without type prints the context with Ruby's Hash#inspect."""
    err = fail(spec_text("permissions:\n  - object: 'test/'\n    context:\n      name: 'name'\n"))
    assert str(err) == (
        "The deployment failed because the application specification file specifies an invalid "
        f'context type ({{"name"=>"name"}}). {UPDATE}'
    )
    assert err.path == "permissions[0].context.type"


def test_error_paths_of_nested_values(spec_text: SpecText) -> None:
    """Errors inside an entry carry the path of the offending value."""
    assert fail(
        spec_text("permissions:\n  - object: /a\n  - object: /b\n    acls: [u:a:7, u:b:7, bad]\n")
    ).path == ("permissions[1].acls[2]")
    assert (
        fail(spec_text("permissions:\n  - object: /a\n    mode: 9\n")).path == "permissions[0].mode"
    )
    assert fail(
        spec_text("permissions:\n  - {object: /a, context: {type: t, range: s}}\n")
    ).path == ("permissions[0].context.range")


def test_fields_are_checked_in_the_real_agents_order(spec_text: SpecText) -> None:
    """Within an entry: object presence, then type, mode, acls, context; a blank object last."""
    text = spec_text(
        "permissions:\n  - {object: ' ', type: [x], mode: 9, acls: [z], context: {}}\n"
    )
    assert fail(text).path == "permissions[0].type[0]"
    text = spec_text("permissions:\n  - {object: ' ', mode: 9, acls: [z], context: {}}\n")
    assert fail(text).path == "permissions[0].mode"
    text = spec_text("permissions:\n  - {object: ' ', context: {type: t}}\n")
    assert fail(text).path == "permissions[0].object"


# --- file-only rules (item 16) ------------------------------------------------------------------


def test_pattern_on_a_file_permission(spec_text: SpecText) -> None:
    """A pattern other than `**` is refused when the object turns out to be a file."""
    (perm,) = permissions(spec_text, "  - object: '/'\n    pattern: 'glob'\n")
    with pytest.raises(AppSpecError) as info:
        check_file_permission(perm, path="permissions[0]")
    assert str(info.value) == (
        "The deployment failed because the application specification file includes an object (/) "
        "with an invalid pattern (glob), such as a pattern for a file applied to a directory. "
        "Correct the permissions section of the AppSpec file, and then try again."
    )
    assert info.value.path == "permissions[0].pattern"


def test_except_on_a_file_permission(spec_text: SpecText) -> None:
    """A non-empty except list is refused for a file, printed as a Ruby array."""
    (perm,) = permissions(spec_text, "  - object: '/'\n    except:\n      - 'glob'\n")
    with pytest.raises(AppSpecError) as info:
        check_file_permission(perm)
    assert str(info.value) == (
        "The deployment failed because the except parameter for a pattern in the permissions "
        'section (["glob"]) for the object named / contains an invalid format. Update the AppSpec '
        "file, and then try again."
    )


def test_plain_permission_passes_the_file_rules(spec_text: SpecText) -> None:
    """An entry with the defaults and a non-default ACE is fine on a file."""
    (perm,) = permissions(spec_text, "  - object: '/'\n    acls: ['user:name:rwx']\n")
    check_file_permission(perm)


def test_directory_only_permission_skips_the_file_rules(spec_text: SpecText) -> None:
    """With `type: [directory]` the file rules do not apply."""
    (perm,) = permissions(
        spec_text,
        "  - object: '/'\n    pattern: glob\n    except: [x]\n"
        "    acls: ['d:u:a:7']\n    type: [directory]\n",
    )
    check_file_permission(perm)


def test_default_ace_on_a_file(spec_text: SpecText) -> None:
    """A default ACE on a file fails with the -d message."""
    (perm,) = permissions(spec_text, "  - object: '/'\n    acls:\n      - 'd:user:name:rwx'\n")
    with pytest.raises(AppSpecError) as info:
        check_file_permission(perm)
    assert str(info.value) == (
        "The deployment failed because the -d parameter has been specified to apply an acl "
        "setting to a file. This parameter is supported for directories only. Update the AppSpec "
        "file, and then try again."
    )
    assert info.value.path == "acls[0]"


# --- mode (item 17) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("6763", "6763"),
        ("12", "012"),
        ("7777", "7777"),
        ("0000", "000"),
        ("777", "777"),
        ("0644", "420"),
        ('"0644"', "0644"),
        ("''", "000"),
        ("7", "007"),
    ],
)
def test_valid_modes(spec_text: SpecText, raw: str, digits: str) -> None:
    """to_s of the YAML value, padded to 3: `12` -> 012, `0000` (int 0) -> 000, `0644` -> 420."""
    (perm,) = permissions(spec_text, f"  - object: test/\n    mode: {raw}\n")
    assert perm.mode == Mode(digits)


def test_mode_6763_bits() -> None:
    """6763 is setuid + setgid, owner rwx, group rw-, world -wx."""
    assert parse_mode(6763).value == 0o6763


def test_mode_too_long() -> None:
    """Five characters is a length error quoting the mode."""
    with pytest.raises(AppSpecError) as info:
        parse_mode(12345, path="permissions[0].mode")
    assert str(info.value) == (
        "The deployment failed because the length of a permissions mode (12345) in the "
        "application specification file is invalid. Permissions modes must be between one and "
        f"four characters long. {UPDATE}"
    )
    assert info.value.path == "permissions[0].mode"


@pytest.mark.parametrize(
    ("raw", "mode", "char"),
    [
        ("12a", "12a", "a"),
        (8, "008", "8"),
        (-1, "0-1", "-"),
        (6.4, "6.4", "."),
        (True, "true", "t"),
    ],
)
def test_mode_invalid_character(raw: object, mode: str, char: str) -> None:
    """The first character outside 0-7 is named, with the padded mode."""
    with pytest.raises(AppSpecError) as info:
        parse_mode(raw)
    assert str(info.value) == (
        f"The deployment failed because the permissions mode ({mode}) in the application "
        f"specification file contains an invalid character ({char}). {UPDATE}"
    )


# --- ACL entries (item 18) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ace"),
    [
        ("d:u:bob:rwx", Ace(True, "user", "bob", "rwx")),
        ("default:g:dev:rw", Ace(True, "group", "dev", "rw-")),
        ("d:bob:rwx", Ace(True, "user", "bob", "rwx")),
        ("default::rw", Ace(True, "user", "", "rw-")),
        ("m::7", Ace(False, "mask", "", "rwx")),
        ("mask::7", Ace(False, "mask", "", "rwx")),
        ("g:dev:7", Ace(False, "group", "dev", "rwx")),
        ("group:dev:7", Ace(False, "group", "dev", "rwx")),
        ("u:bob:7", Ace(False, "user", "bob", "rwx")),
        ("user:bob:7", Ace(False, "user", "bob", "rwx")),
        ("u:mask:7", Ace(False, "user", "mask", "rwx")),
        ("u:other:7", Ace(False, "user", "other", "rwx")),
        ("u:m:7", Ace(False, "user", "mask", "rwx")),
        ("bob:0", Ace(False, "user", "bob", "---")),
        ("m:7", Ace(False, "mask", "", "rwx")),
        ("mask:", Ace(False, "mask", "", "---")),
        ("d:o:3", Ace(True, "other", "", "-wx")),
        ("d:m:7", Ace(True, "mask", "", "rwx")),
        ("d::3", Ace(True, "user", "", "-wx")),
        ("u:bob:x-r", Ace(False, "user", "bob", "r-x")),
        ("g:x:rrr", Ace(False, "group", "x", "r--")),
        ("d:d:7", Ace(True, "user", "d", "rwx")),
    ],
)
def test_ace_forms(text: str, ace: Ace) -> None:
    """The 2-, 3- and 4-part forms of the real agent's tests."""
    assert parse_ace(text) == ace


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("d:u:bob:7", "default:user:bob:rwx"), ("m:0", "mask::---"), ("bob:rw", "user:bob:rw-")],
)
def test_ace_canonical_form(text: str, canonical: str) -> None:
    """Canonical `[default:]type:name:rwx`, the form setfacl takes."""
    assert parse_ace(text).canonical() == canonical


@pytest.mark.parametrize(
    "text",
    [
        "7",
        "",
        "d:u:bob:7:rwx",
        "invalid:u:bob:7:rwx",
        "d:invalid:bob:7:rwx",
        "d:d:bob:7:rwx",
        "d:d:x:7",
        "x:bob:7",
        "mask:name:rwx",
        "d:other:name:rwx",
        "m:m:7",
        "o:o:7",
    ],
)
def test_invalid_ace(text: str) -> None:
    """Too few/many parts, bad first/second parts, `d:d:` and named mask/other are invalid."""
    with pytest.raises(AppSpecError) as info:
        parse_ace(text, path="permissions[0].acls[0]")
    assert str(info.value) == invalid_ace(text)
    assert info.value.path == "permissions[0].acls[0]"


@pytest.mark.parametrize("text", ["u::7", "g::7", "o:7", "other::7", "user::rwx"])
def test_base_entries_are_refused(text: str) -> None:
    """Base entries (no name, not default, not mask) must be set with mode."""
    with pytest.raises(AppSpecError) as info:
        parse_ace(text)
    assert str(info.value) == f"{ACL} Use mode to set the base acl entry ({text}). {UPDATE}"


@pytest.mark.parametrize(
    ("text", "char"),
    [("user:bob:rwxd", "d"), ("u:bob:8", "8"), ("u:bob:77", "7"), ("u:bob:R", "R")],
)
def test_invalid_perm_character(text: str, char: str) -> None:
    """A perms character outside r, w, x, - (or a lone octal digit) is named."""
    with pytest.raises(AppSpecError) as info:
        parse_ace(text)
    assert str(info.value) == (
        f"The deployment failed because the access control list (ACL) named {text} in the "
        f"application specification file contains an invalid character ({char}). Correct the ACL "
        "in the hooks section of the AppSpec file, and then try again."
    )


def test_acls_in_the_appspec(spec_text: SpecText) -> None:
    """acls entries in a file become Ace values; an empty list is no ACL."""
    perms = permissions(
        spec_text,
        "  - object: test/\n    acls: ['bob:6', 'm:6', 'd:g::4']\n  - object: b\n    acls: []\n",
    )
    assert [a.canonical() for a in perms[0].acls] == [
        "user:bob:rw-",
        "mask::rw-",
        "default:group::r--",
    ]
    assert perms[1].acls == ()


def test_non_text_acl_entry(spec_text: SpecText) -> None:
    """A list inside acls is an invalid entry, printed like Ruby."""
    err = fail(spec_text("permissions:\n  - object: a\n    acls: [[u, bob]]\n"))
    assert str(err) == invalid_ace('["u", "bob"]')


# --- SELinux ranges (item 19) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3-:c0", "invalid range part s3-"),
        (":c0", "invalid range part :c0"),
        ("s0:", "invalid range part s0:"),
        ("s0:c2.", "invalid range part c2."),
        ("", "invalid range part "),
        ("s", "invalid sensitivity s"),
        ("s0-s-1", "invalid sensitivity s-1"),
        ("sd3", "invalid sensitivity sd3"),
        ("d3", "invalid sensitivity d3"),
        ("s0:c", "invalid category c"),
        ("s0:c-1", "invalid category c-1"),
        ("s0:c1024", "invalid category c1024"),
        ("s0:cd3", "invalid category cd3"),
        ("s0:d3", "invalid category d3"),
        ("s0:c0,,c1", "invalid category "),
        ("s0:c2.c1", "invalid category range c2.c1"),
        ("s0:c0.c2,c1", "duplicate categories"),
        ("s0:c1,c1", "duplicate categories"),
    ],
)
def test_invalid_ranges(text: str, message: str) -> None:
    """The real agent's terse range messages, exactly."""
    with pytest.raises(AppSpecError) as info:
        parse_range(text, path="permissions[0].context.range")
    assert str(info.value) == message
    assert info.value.path == "permissions[0].context.range"


def test_high_sensitivity_below_low(spec_text: SpecText) -> None:
    """s3-s2 fails with the long SELinux range message quoting the range."""
    err = fail(
        spec_text(
            "permissions:\n  - object: 'test/'\n"
            "    context: {name: n, type: t, range: 's3-s2:c0'}\n"
        )
    )
    assert str(err) == (
        "The deployment failed because of a problem with the SELinux range specified (s3-s2:c0) "
        "for the context parameter in the permissions section of the application specification "
        "file. Make corrections in the permissions section of the AppSpec file, and then try again."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s5", SelinuxRange(5, 5)),
        ("s0:c0.c1,c15,c7.c9", SelinuxRange(0, 0, (0, 1, 7, 8, 9, 15))),
        ("s3-s5:c0.c7,c13", SelinuxRange(3, 5, (0, 1, 2, 3, 4, 5, 6, 7, 13))),
        ("s0:c1023", SelinuxRange(0, 0, (1023,))),
        ("s0:c1,", SelinuxRange(0, 0, (1,))),
    ],
)
def test_valid_ranges(text: str, expected: SelinuxRange) -> None:
    """Sensitivities and the sorted, expanded category set."""
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["s3", "s3-s7:c5,c8.c10,c17", "s0:c0.c1023"])
def test_range_round_trips(text: str) -> None:
    """The canonical form of a canonical range is itself."""
    assert parse_range(text).canonical() == text


def test_parse_context_directly() -> None:
    """parse_context reads name/type/range from a mapping."""
    assert parse_context({"type": "t", "range": "s3"}) == SelinuxContext(
        "t", None, SelinuxRange(3, 3)
    )
