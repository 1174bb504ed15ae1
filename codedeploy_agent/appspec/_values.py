"""Shared plumbing of the appspec parsers: loading text, Ruby value semantics, problem collection.

The real agent decodes the appspec with Ruby's `YAML.load` and then applies Ruby conversions
(`to_s`, `to_i`, truthiness, `inspect`) to whatever values it finds. Our parsers get the same
results from the same documents by using the helpers here, so that e.g. `timeout: "30"` is 30,
`sudo: 0` is true and error messages quote values the way the real agent prints them.

`Issues` lets one parser serve two callers: `parse_*` functions stop at the first error (the real
agent's behaviour, and the first error is the one it would report), while `check_appspec` keeps
going and collects every error and warning.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping
from typing import Final, ParamSpec, TypeVar

import yaml

from codedeploy_agent.errors import AppSpecError

P = ParamSpec("P")
T = TypeVar("T")

#: Ruby's `String#strip` removes these (not the wider Unicode set Python's `str.strip` uses).
RUBY_WHITESPACE: Final = " \t\n\v\f\r\0"

#: Values quoted in messages are cut here: an appspec may hold huge or self-referencing data.
_INSPECT_BUDGET: Final = 500
#: `String#to_i` results saturate here (about 3e10 years of seconds): Python refuses to convert
#: very long digit strings, and no timeout needs more.
MAX_TO_I: Final = 10**18


def join_key(path: str, key: str) -> str:
    """`hooks` + `X` -> `hooks.X`; the empty path is the document root."""
    return f"{path}.{key}" if path else key


def join_index(path: str, index: int) -> str:
    """`files` + 3 -> `files[3]`."""
    return f"{path}[{index}]"


class Issues:
    """Collects the errors and warnings of one parse.

    With `collect=False` the first error is raised at once (the parsers' fail-fast mode, where the
    first error in the real agent's evaluation order is the one reported); with `collect=True`
    every error is recorded and parsing continues with the next field or entry.
    """

    def __init__(self, *, collect: bool) -> None:
        self.collect = collect
        self.errors: list[AppSpecError] = []
        self.warnings: list[AppSpecError] = []

    def error(self, message: str, path: str) -> None:
        """Record (or raise, in fail-fast mode) an error at `path`."""
        err = AppSpecError(message, path)
        if not self.collect:
            raise err
        self.errors.append(err)

    def warn(self, message: str, path: str) -> None:
        """Record a warning: something the agent accepts but that is probably not meant."""
        self.warnings.append(AppSpecError(message, path))

    def attempt(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T | None:
        """Call `fn`; in collect mode an AppSpecError is recorded and None returned instead."""
        try:
            return fn(*args, **kwargs)
        except AppSpecError as err:
            if not self.collect:
                raise
            self.errors.append(err)
            return None

    def check_keys(self, raw: Mapping[object, object], known: tuple[str, ...], path: str) -> None:
        """Warn about keys CodeDeploy ignores, suggesting a known key that differs only in case."""
        by_lower = {k.lower(): k for k in known}
        for key in raw:
            if isinstance(key, str) and key in known:
                continue
            name = ruby_to_s(key)
            hint = by_lower.get(name.lower().replace("-", "_"))
            suffix = f"; did you mean '{hint}'?" if hint else f" (known keys: {', '.join(known)})"
            self.warn(
                f"unknown key '{name}' is ignored by CodeDeploy{suffix}", join_key(path, name)
            )


def load_document(text: str, *, filename: str) -> object:
    """Decode appspec text (YAML 1.1, or JSON) into plain Python data.

    Text that starts with `{` or `[` is read as JSON first (the service accepts JSON appspecs and
    a few valid JSON texts are not valid YAML 1.1); otherwise, and when that fails, YAML with
    PyYAML's SafeLoader, which has the YAML 1.1 semantics of Ruby's `YAML.load` (`0644` is 420).
    Every failure becomes an AppSpecError that names the line and column where they are known.
    """
    body = text.removeprefix("\ufeff")
    if not body.strip():
        return None  # blank text (tabs included, which YAML would refuse) is an empty document
    json_error: ValueError | None = None
    if body.lstrip().startswith(("{", "[")):
        try:
            return json.loads(body)
        except ValueError as err:  # JSONDecodeError, or an integer beyond Python's digit limit
            json_error = err
        except RecursionError:
            raise AppSpecError(_syntax_message(filename, "it is nested too deeply")) from None
    try:
        return yaml.load(body, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        problem = _yaml_problem(err)
    except RecursionError:
        problem = "it is nested too deeply"
    # PyYAML's constructors leak ValueError, AttributeError, OverflowError... for scalars such as
    # `2001-13-01` or `!!int x`; any failure to decode is the same user problem: invalid YAML.
    except Exception as err:  # noqa: BLE001
        problem = f"{type(err).__name__}: {err}"
    if json_error is not None:  # the text looked like JSON: its JSON error is the useful one
        problem = _json_problem(json_error)
    raise AppSpecError(_syntax_message(filename, problem))


def _syntax_message(filename: str, problem: str) -> str:
    return (
        f"The deployment failed because the application specification file ({filename}) is not "
        f"valid YAML or JSON: {problem}. Correct the syntax of the AppSpec file, and then try "
        "again."
    )


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    problem = err.problem or err.context or "invalid syntax"
    mark = err.problem_mark or err.context_mark
    if mark is None:
        return problem
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def _json_problem(err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} (line {err.lineno}, column {err.colno})"
    return str(err)


def describe(value: object) -> str:
    """A short name for the kind of a decoded value, for messages ("a list", "a string")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return f"a {type(value).__name__}"


def is_scalar(value: object) -> bool:
    """True for the values Ruby's `to_s` turns into a plain word (not a list or a mapping)."""
    return not isinstance(value, Mapping | list | tuple | set | frozenset)


def is_absent(value: object) -> bool:
    """Ruby's `value || default` takes the default for nil *and* false."""
    return value is None or value is False


def ruby_truthy(value: object) -> bool:
    """Ruby truthiness: everything except nil and false is true (`0` and `"false"` too)."""
    return not is_absent(value)


def ruby_to_s(value: object) -> str:
    """`value.to_s` as Ruby prints YAML-decoded values (`nil` -> "", `1e16` -> "1.0e+16")."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return _ruby_number(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.date):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) else str(value)
    return ruby_inspect(value)


def ruby_inspect(value: object) -> str:
    """`value.inspect` (`["a", 1]`, `{"name"=>"x"}`), cut after a few hundred characters."""
    out: list[str] = []
    _inspect_into(value, out, [_INSPECT_BUDGET], set())
    return "".join(out)


def _inspect_into(value: object, out: list[str], budget: list[int], seen: set[int]) -> None:
    if budget[0] <= 0:
        out.append("...")
        return
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if id(value) in seen:  # YAML anchors can make a list contain itself
            out.append("{...}" if isinstance(value, Mapping) else "[...]")
            return
        seen.add(id(value))
        if isinstance(value, Mapping):
            out.append("{")
            for i, (key, item) in enumerate(value.items()):
                if i and budget[0] <= 0:
                    out.append(", ...")
                    break
                if i:
                    out.append(", ")
                _inspect_into(key, out, budget, seen)
                out.append("=>")
                _inspect_into(item, out, budget, seen)
            out.append("}")
        else:
            out.append("[")
            for i, item in enumerate(value):
                if i and budget[0] <= 0:
                    out.append(", ...")
                    break
                if i:
                    out.append(", ")
                _inspect_into(item, out, budget, seen)
            out.append("]")
        seen.discard(id(value))
        return
    text = "nil" if value is None else _inspect_scalar(value)
    budget[0] -= len(text)
    out.append(text)


def _inspect_scalar(value: object) -> str:
    if isinstance(value, str):
        return _inspect_string(value)
    if isinstance(value, bytes):
        return _inspect_string(value.decode("utf-8", "replace"))
    if isinstance(value, datetime.date):
        return ruby_to_s(value)
    if isinstance(value, bool | int | float):
        return _ruby_number(value)
    return str(value)


_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\f": "\\f",
    "\v": "\\v",
    "\a": "\\a",
    "\b": "\\b",
    "\x1b": "\\e",
}


def _inspect_string(text: str) -> str:
    parts = ['"']
    for i, char in enumerate(text):
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif char == "#" and text[i + 1 : i + 2] in ("{", "$", "@"):
            parts.append("\\#")  # Ruby escapes what would start an interpolation
        elif not char.isprintable() and char != " ":
            parts.append(f"\\u{ord(char):04X}" if ord(char) <= 0xFFFF else f"\\u{{{ord(char):X}}}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def _ruby_number(value: bool | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    # Python's repr switches to exponent form at the same thresholds as Ruby's Float#to_s; Ruby
    # always keeps a fractional part in the mantissa ("1.0e+16", Python "1e+16").
    text = repr(value)
    mantissa, sep, exponent = text.partition("e")
    if sep and "." not in mantissa:
        return f"{mantissa}.0e{exponent}"
    return text


def ruby_str_to_i(text: str) -> int:
    """Ruby's `String#to_i`: leading blanks, a sign, digits (single `_` between them); else 0."""
    i, end = 0, len(text)
    while i < end and text[i] in " \t\n\v\f\r":
        i += 1
    sign = 1
    if i < end and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    digits: list[str] = []
    underscore = False
    while i < end:
        char = text[i]
        if "0" <= char <= "9":
            digits.append(char)
            underscore = False
        elif char == "_" and digits and not underscore:
            underscore = True
        else:
            break
        i += 1
    if not digits:
        return 0
    if len(digits) > len(str(MAX_TO_I)):
        return sign * MAX_TO_I
    return sign * min(int("".join(digits)), MAX_TO_I)


def ruby_to_i(value: object) -> int | None:
    """Ruby's `to_i` on a YAML value, or None where Ruby has no `to_i` (and would crash)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if not math.isfinite(value) else int(value)  # truncates, like Ruby
    if isinstance(value, str):
        return ruby_str_to_i(value)
    return None
