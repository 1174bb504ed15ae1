"""README's configuration references cannot fall behind the code: every key the agent and the
server accept is named in its table, and every key a table names is accepted.

A table row's first cell names keys in backticks: `section.key` or `key`; a bare name after a
dotted one in the same cell belongs to that section (`mqtt.ca_file`, `cert_file`, `key_file`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from codedeploy_agent.config import _SECTIONS, _TOP_KEYS, AgentConfig
from codedeploy_server import config as server_config
from codedeploy_server.config import BundleStoreConfig, RolloutConfig, ServerConfig

README = Path(__file__).resolve().parents[2] / "README.md"
AGENT_SECTION = "## Configure the agent"
SERVER_SECTION = "## Configure the control plane"
#: ServerConfig fields whose key in the file has another name.
SERVER_FIELD_KEYS = {"mqtt.embedded_listen": "mqtt.listen"}


def section_text(heading: str) -> str:
    """The README text from `heading` to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.find(f"\n{heading}\n")
    assert start >= 0, f"README.md has no '{heading}' section"
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end >= 0 else len(text)]


def documented_keys(heading: str) -> set[str]:
    """The keys named in the first column of the section's table(s)."""
    keys: set[str] = set()
    rows = [line for line in section_text(heading).splitlines() if line.startswith("| `")]
    assert rows, f"no configuration table under '{heading}' in README.md"
    for row in rows:
        first_cell = row.split(" | ", 1)[0]
        section = ""
        for name in re.findall(r"`([^`]+)`", first_cell):
            if "." in name:
                section, _, _ = name.rpartition(".")
                keys.add(name)
            else:
                keys.add(f"{section}.{name}" if section else name)
    return keys


def dataclass_keys(
    settings: type, prefix: str = "", skip: frozenset[str] = frozenset()
) -> set[str]:
    """Every field of a settings dataclass, nested settings dataclasses as `section.field`."""
    defaults = settings()  # every settings class has a default for every field
    keys: set[str] = set()
    for item in dataclasses.fields(defaults):
        if item.name in skip:
            continue
        value = getattr(defaults, item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            keys |= dataclass_keys(type(value), f"{prefix}{item.name}.")
        else:
            keys.add(f"{prefix}{item.name}")
    return keys


def agent_keys() -> set[str]:
    """What the agent's loader accepts: top-level keys and `section.key`."""
    return set(_TOP_KEYS) | {f"{name}.{key}" for name, s in _SECTIONS.items() for key in s.keys}


def server_keys() -> set[str]:
    """What the server's loader accepts (its key sets, and the fields of bundle_store/rollout)."""
    sections = {"mqtt", "bundle_store", "rollout"}
    keys = set(server_config._TOP_KEYS) - sections
    keys |= {f"mqtt.{key}" for key in server_config._MQTT_KEYS}
    keys |= dataclass_keys(BundleStoreConfig, "bundle_store.")
    keys |= dataclass_keys(RolloutConfig, "rollout.")
    return keys


def test_parser_reads_sections_and_bare_names() -> None:
    """The first-cell rule this test relies on, on the README's own rows."""
    keys = documented_keys(AGENT_SECTION)
    assert {"root_dir", "mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"} <= keys
    assert {"archive.max_members", "clock.warn_seconds"} <= keys
    assert "cert_file" not in keys
    assert "mqtt://127.0.0.1:1883" not in keys  # later cells are not keys


def test_every_agent_config_field_is_documented() -> None:
    """Each AgentConfig field, nested sections included, has a row in the agent table."""
    fields = dataclass_keys(AgentConfig, skip=frozenset({"source"}))
    missing = sorted(fields - documented_keys(AGENT_SECTION))
    assert missing == [], f"README.md '{AGENT_SECTION}' lacks rows for: {', '.join(missing)}"


def test_every_key_the_agent_accepts_is_documented() -> None:
    """The loader's tables, the real agent's ignored keys included, are all in the agent table."""
    missing = sorted(agent_keys() - documented_keys(AGENT_SECTION))
    assert missing == [], f"README.md '{AGENT_SECTION}' lacks rows for: {', '.join(missing)}"


def test_every_agent_key_the_readme_names_exists() -> None:
    """No row for a key the agent would reject as unknown."""
    unknown = sorted(documented_keys(AGENT_SECTION) - agent_keys())
    assert unknown == [], f"README.md '{AGENT_SECTION}' documents unknown keys: {unknown}"


def test_every_server_config_field_is_documented() -> None:
    """Each ServerConfig field, nested sections included, has a row in the control plane table."""
    fields = {
        SERVER_FIELD_KEYS.get(name, name)
        for name in dataclass_keys(ServerConfig, skip=frozenset({"source"}))
    }
    missing = sorted(fields - documented_keys(SERVER_SECTION))
    assert missing == [], f"README.md '{SERVER_SECTION}' lacks rows for: {', '.join(missing)}"


def test_every_key_the_server_accepts_is_documented() -> None:
    """The server loader's key sets (mqtt.embedded included) are all in the control plane table."""
    missing = sorted(server_keys() - documented_keys(SERVER_SECTION))
    assert missing == [], f"README.md '{SERVER_SECTION}' lacks rows for: {', '.join(missing)}"


def test_every_server_key_the_readme_names_exists() -> None:
    """No row for a key the server would reject as unknown."""
    unknown = sorted(documented_keys(SERVER_SECTION) - server_keys())
    assert unknown == [], f"README.md '{SERVER_SECTION}' documents unknown keys: {unknown}"
