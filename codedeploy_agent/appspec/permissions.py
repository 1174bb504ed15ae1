"""The `permissions` section: modes, ACL entries, SELinux contexts and ranges (reference §3.5).

Semantics and messages are the real agent's (`mode_info.rb`, `ace_info.rb`, `range_info.rb`,
`context_info.rb`, `linux_permission_info.rb`). The leaf parsers (`parse_mode`, `parse_ace`,
`parse_range`, `parse_context`) raise AppSpecError with `path` set; `parse_permission` reports
through an `Issues` collector so that the checker can see every problem of an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, cast

from codedeploy_agent.appspec._values import (
    RUBY_WHITESPACE,
    Issues,
    describe,
    is_absent,
    is_scalar,
    join_index,
    join_key,
    ruby_inspect,
    ruby_to_s,
)
from codedeploy_agent.appspec.model import (
    Ace,
    AceType,
    Mode,
    Permission,
    PermissionType,
    SelinuxContext,
    SelinuxRange,
)
from codedeploy_agent.errors import AppSpecError

NO_OBJECT: Final = (
    "The deployment failed because a permission listed in the application specification file "
    "has no object value. Update the permissions section of the AppSpec file, and then try again."
)
_UPDATE: Final = "Update the permissions section of the AppSpec file, and then try again."
_ACL_PROBLEM: Final = (
    "The deployment failed because of a problem with the acls permission settings in the "
    "application specification file."
)
PERMISSION_KEYS: Final = (
    "object",
    "pattern",
    "except",
    "type",
    "owner",
    "group",
    "mode",
    "acls",
    "context",
)
_CONTEXT_KEYS: Final = ("name", "type", "range")
_TYPES: Final[tuple[PermissionType, ...]] = ("file", "directory")
_MAX_CATEGORY: Final = 1023
_MAX_DIGITS: Final = 100


# --- mode ---------------------------------------------------------------------------------------


def parse_mode(value: object, *, path: str = "") -> Mode:
    """`to_s` of the YAML value, left-padded with 0 to 3 chars; 4 chars at most, octal digits only.

    `12` -> "012", `0000` (YAML int 0) -> "000", `6763` keeps setuid/setgid.
    """
    mode = ruby_to_s(value).rjust(3, "0")
    if len(mode) > 4:
        raise AppSpecError(
            f"The deployment failed because the length of a permissions mode ({mode}) in the "
            "application specification file is invalid. Permissions modes must be between one "
            f"and four characters long. {_UPDATE}",
            path,
        )
    for char in mode:
        if not "0" <= char <= "7":
            raise AppSpecError(
                f"The deployment failed because the permissions mode ({mode}) in the application "
                f"specification file contains an invalid character ({char}). {_UPDATE}",
                path,
            )
    return Mode(mode)


# --- ACL entries --------------------------------------------------------------------------------

_TYPE_WORDS: Final[dict[str, AceType]] = {
    "m": "mask",
    "mask": "mask",
    "o": "other",
    "other": "other",
    "g": "group",
    "group": "group",
    "u": "user",
    "user": "user",
}
_DEFAULT_WORDS: Final = ("d", "default")


def parse_ace(text: str, *, path: str = "") -> Ace:
    """One `acls` entry: `[d|default:][u|user|g|group|m|mask|o|other:]<name>:<perms>`.

    Split on `:` into 2 to 4 parts; `perms` is one octal digit or a string of `r`, `w`, `x`, `-`.
    A 2-part entry whose first part is not `m`/`o` names a user (`bob:0`); `u:mask:7` is the user
    called "mask". Base entries (`u::7`, `g::7`, `o:7`) are refused: mode sets them.
    """
    invalid = f"{_ACL_PROBLEM} Invalid acl entry ({text})."
    parts = text.split(":")[::-1]  # perms first, as the real agent reads them
    if not 2 <= len(parts) <= 4:
        raise AppSpecError(invalid, path)
    default = False
    ace_type: AceType | None = None
    name = ""
    if len(parts) == 4:
        if parts[3] not in _DEFAULT_WORDS:
            raise AppSpecError(invalid, path)
        default = True
    if len(parts) >= 3:
        if parts[2] in _DEFAULT_WORDS:
            if default:
                raise AppSpecError(invalid, path)
            default = True
        elif parts[2] in _TYPE_WORDS:
            ace_type = _TYPE_WORDS[parts[2]]
        else:
            raise AppSpecError(invalid, path)
    qualifier = parts[1]
    if _TYPE_WORDS.get(qualifier) in ("mask", "other"):
        # `m`/`o` is the type when no type was given yet, else the (odd) name of a user or group.
        if ace_type is None:
            ace_type = _TYPE_WORDS[qualifier]
        else:
            name = _TYPE_WORDS[qualifier]
    else:
        ace_type = ace_type or "user"
        name = qualifier
    if ace_type in ("mask", "other") and name:
        raise AppSpecError(invalid, path)
    if not default and ace_type != "mask" and not name:
        raise AppSpecError(
            f"{_ACL_PROBLEM} Use mode to set the base acl entry ({text}). {_UPDATE}", path
        )
    return Ace(default, ace_type, name, _parse_perms(parts[0], text, path))


def _parse_perms(perms: str, ace: str, path: str) -> str:
    if len(perms) == 1 and "0" <= perms <= "7":
        bits = int(perms)
        read, write, execute = bool(bits & 4), bool(bits & 2), bool(bits & 1)
    else:
        read = write = execute = False
        for char in perms:
            if char == "r":
                read = True
            elif char == "w":
                write = True
            elif char == "x":
                execute = True
            elif char != "-":
                raise AppSpecError(
                    f"The deployment failed because the access control list (ACL) named {ace} in "
                    f"the application specification file contains an invalid character ({char}). "
                    "Correct the ACL in the hooks section of the AppSpec file, and then try again.",
                    path,
                )
    return ("r" if read else "-") + ("w" if write else "-") + ("x" if execute else "-")


# --- SELinux ------------------------------------------------------------------------------------


def parse_range(text: str, *, path: str = "") -> SelinuxRange:
    """An MLS range `sN[-sM][:cA[.cB],cC...]` (categories c0..c1023, no duplicates).

    Messages are the real agent's terse ones (`invalid range part s3-`, `invalid sensitivity s`,
    `invalid category c1024`, `invalid category range c2.c1`, `duplicate categories`).
    """
    parts = _ensure_parts(text, ":", path)
    sensitivities = _ensure_parts(parts[0], "-", path)
    low = _number(sensitivities[0], "s", "sensitivity", path)
    high = low
    if len(sensitivities) == 2:
        high = _number(sensitivities[1], "s", "sensitivity", path)
        if high < low:
            raise AppSpecError(
                "The deployment failed because of a problem with the SELinux range specified "
                f"({text}) for the context parameter in the permissions section of the "
                "application specification file. Make corrections in the permissions section of "
                "the AppSpec file, and then try again.",
                path,
            )
    categories: list[int] = []
    if len(parts) == 2:
        pieces = parts[1].split(",")
        while pieces and not pieces[-1]:
            pieces.pop()  # Ruby's split drops trailing empty fields
        for piece in pieces:
            if "." in piece:
                first, last = _ensure_parts(piece, ".", path)
                start = _number(first, "c", "category", path)
                stop = _number(last, "c", "category", path)
                if stop < start:
                    raise AppSpecError(f"invalid category range {first}.{last}", path)
                categories.extend(range(start, stop + 1))
            else:
                categories.append(_number(piece, "c", "category", path))
        categories.sort()
        if len(set(categories)) != len(categories):
            raise AppSpecError("duplicate categories", path)
    return SelinuxRange(low, high, tuple(categories))


def _ensure_parts(text: str, separator: str, path: str) -> list[str]:
    parts = text.split(separator, 1)
    expected = 2 if separator in text else 1
    if len(parts) != expected or not all(parts):
        raise AppSpecError(f"invalid range part {text}", path)
    return parts


def _number(text: str, prefix: str, what: str, path: str) -> int:
    digits = text[1:]
    if len(text) < 2 or not text.startswith(prefix) or not all("0" <= c <= "9" for c in digits):
        raise AppSpecError(f"invalid {what} {text}", path)
    # Hundreds of digits are no MLS level (and Python refuses to convert thousands of them).
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise AppSpecError(f"invalid {what} {text}", path)
    value = int(digits)
    if what == "category" and value > _MAX_CATEGORY:
        raise AppSpecError(f"invalid {what} {text}", path)
    return value


def parse_context(raw: object, *, path: str = "", issues: Issues | None = None) -> SelinuxContext:
    """A permission's `context`: `type` (required), optional `name` (SELinux user) and `range`.

    The real agent reads the user from `name`; a `user` or `role` key is ignored (warned about
    when `issues` is given).
    """
    if not isinstance(raw, Mapping) or raw.get("type") is None or not is_scalar(raw["type"]):
        raise AppSpecError(
            "The deployment failed because the application specification file specifies an "
            f"invalid context type ({ruby_inspect(raw)}). {_UPDATE}",
            join_key(path, "type") if isinstance(raw, Mapping) else path,
        )
    context = cast("Mapping[object, object]", raw)
    if issues is not None:
        if "user" in context:
            issues.warn(
                "context.user is ignored by CodeDeploy: the SELinux user is read from 'name'",
                join_key(path, "user"),
            )
        if "role" in context:
            issues.warn("an SELinux role is not supported and is ignored", join_key(path, "role"))
        issues.check_keys(
            {k: v for k, v in context.items() if k not in ("user", "role")}, _CONTEXT_KEYS, path
        )
    user = context.get("name")
    range_raw = context.get("range")
    return SelinuxContext(
        type=ruby_to_s(context["type"]),
        user=None
        if user is None
        else scalar_text(user, join_key(path, "name"), "the context name"),
        range=None
        if range_raw is None
        else parse_range(
            scalar_text(range_raw, join_key(path, "range"), "the context range"),
            path=join_key(path, "range"),
        ),
    )


# --- one entry ----------------------------------------------------------------------------------


def scalar_text(value: object, path: str, what: str) -> str:
    """`to_s` of a single value; a list or mapping (which the real agent crashes on) is an error."""
    if is_scalar(value):
        return ruby_to_s(value)
    raise AppSpecError(
        f"The deployment failed because {what} in the application specification file must be a "
        f"single value, not {describe(value)} ({ruby_inspect(value)}). Correct the AppSpec file, "
        "and then try again.",
        path,
    )


def _text_list(raw: object, path: str, what: str, issues: Issues) -> list[str] | None:
    if not isinstance(raw, list):
        issues.error(
            f"The deployment failed because {what} in the application specification file must be "
            f"a list, not {describe(raw)} ({ruby_inspect(raw)}). {_UPDATE}",
            path,
        )
        return None
    items: list[str] = []
    for index, item in enumerate(raw):
        text = issues.attempt(scalar_text, item, join_index(path, index), what)
        if text is not None:
            items.append(text)
    return items


def _parse_types(raw: object, path: str, issues: Issues) -> frozenset[PermissionType] | None:
    if is_absent(raw):
        return frozenset(_TYPES)
    items = raw if isinstance(raw, list) else None
    if items is None:
        issues.error(
            "The deployment failed because the type of a permission in the application "
            f"specification file must be a list such as [file, directory], not {describe(raw)} "
            f"({ruby_inspect(raw)}). {_UPDATE}",
            path,
        )
        return None
    types: set[PermissionType] = set()
    for index, item in enumerate(items):
        if item in _TYPES:
            types.add(cast("PermissionType", item))
        else:
            issues.error(
                # "filespecifies" (sic) is the real agent's text.
                "The deployment failed because the application specification filespecifies a "
                "permission for an object type not supported for permissions "
                f"({ruby_to_s(item)}). {_UPDATE}",
                join_index(path, index),
            )
    if not items:
        issues.warn("an empty type list makes this permission apply to nothing", path)
    return frozenset(types)


def parse_permission(raw: object, path: str, issues: Issues) -> Permission | None:
    """One `permissions` entry, checked in the real agent's order; None when it has errors."""
    if not isinstance(raw, Mapping):
        issues.error(
            "The deployment failed because an entry of the permissions section of the application "
            f"specification file is {describe(raw)} ({ruby_inspect(raw)}), not a mapping with an "
            f"object key. {_UPDATE}",
            path,
        )
        return None
    entry = cast("Mapping[object, object]", raw)
    issues.check_keys(entry, PERMISSION_KEYS, path)
    errors_before = len(issues.errors)
    obj_raw = entry.get("object")
    if obj_raw is None:
        issues.error(NO_OBJECT, join_key(path, "object"))
    pattern_raw = entry.get("pattern")
    pattern = (
        "**"
        if pattern_raw is None or pattern_raw == "**"
        else issues.attempt(scalar_text, pattern_raw, join_key(path, "pattern"), "a pattern")
    )
    except_raw = entry.get("except")
    excepts = (
        []
        if is_absent(except_raw)
        else _text_list(except_raw, join_key(path, "except"), "the except list", issues)
    )
    types = _parse_types(entry.get("type"), join_key(path, "type"), issues)
    owner = _optional_text(entry.get("owner"), join_key(path, "owner"), "the owner", issues)
    group = _optional_text(entry.get("group"), join_key(path, "group"), "the group", issues)
    mode_raw = entry.get("mode")
    mode = None if mode_raw is None else issues.attempt(parse_mode, mode_raw, path=f"{path}.mode")
    aces = _parse_acls(entry.get("acls"), join_key(path, "acls"), issues)
    context_raw = entry.get("context")
    context = (
        None
        if context_raw is None
        else issues.attempt(parse_context, context_raw, path=f"{path}.context", issues=issues)
    )
    obj = ""
    text = (
        None
        if obj_raw is None
        else issues.attempt(scalar_text, obj_raw, f"{path}.object", "an object")
    )
    if text is not None:
        obj = text.strip(RUBY_WHITESPACE)
        if not obj:
            issues.error(NO_OBJECT, join_key(path, "object"))
    if len(issues.errors) > errors_before or pattern is None or excepts is None or types is None:
        return None
    return Permission(
        object=obj,
        pattern=pattern,
        except_=tuple(excepts),
        types=types,
        owner=owner,
        group=group,
        mode=mode,
        acls=aces,
        context=context,
    )


def _optional_text(raw: object, path: str, what: str, issues: Issues) -> str | None:
    return None if raw is None else issues.attempt(scalar_text, raw, path, what)


def _parse_acls(raw: object, path: str, issues: Issues) -> tuple[Ace, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        issues.error(
            f"{_ACL_PROBLEM} The acls value must be a list of entries such as 'u:bob:rwx', not "
            f"{describe(raw)} ({ruby_inspect(raw)}). {_UPDATE}",
            path,
        )
        return ()
    aces: list[Ace] = []
    for index, item in enumerate(raw):
        item_path = join_index(path, index)
        if not is_scalar(item):
            issues.error(f"{_ACL_PROBLEM} Invalid acl entry ({ruby_to_s(item)}).", item_path)
            continue
        ace = issues.attempt(parse_ace, ruby_to_s(item), path=item_path)
        if ace is not None:
            aces.append(ace)
    return tuple(aces)


# --- checks that need to know the object is a file ---------------------------------------------


def check_file_permission(permission: Permission, *, path: str = "") -> None:
    """The install-time rules for a permission whose `object` is a file copied by the deployment.

    Only when `type` includes `file` (as the installer calls it): the pattern must be `**`,
    `except` must be empty and no ACL entry may be a default one. Raises AppSpecError with the
    real agent's messages; `path` is the entry's key path (e.g. `permissions[2]`), if known.
    """
    if "file" not in permission.types:
        return
    if permission.pattern != "**":
        raise AppSpecError(
            "The deployment failed because the application specification file includes an object "
            f"({permission.object}) with an invalid pattern ({permission.pattern}), such as a "
            "pattern for a file applied to a directory. Correct the permissions section of the "
            "AppSpec file, and then try again.",
            join_key(path, "pattern"),
        )
    if permission.except_:
        raise AppSpecError(
            "The deployment failed because the except parameter for a pattern in the permissions "
            f"section ({ruby_inspect(list(permission.except_))}) for the object named "
            f"{permission.object} contains an invalid format. Update the AppSpec file, and then "
            "try again.",
            join_key(path, "except"),
        )
    for index, ace in enumerate(permission.acls):
        if ace.default:
            raise AppSpecError(
                "The deployment failed because the -d parameter has been specified to apply an "
                "acl setting to a file. This parameter is supported for directories only. Update "
                "the AppSpec file, and then try again.",
                join_index(join_key(path, "acls"), index),
            )
