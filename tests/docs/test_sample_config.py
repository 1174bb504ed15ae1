"""packaging/codedeployagent.yml, the config the packages ship: it loads cleanly, its values are
the defaults, and its commented-out `#key: value` lines are every section's real keys at their
real defaults (uncommenting them changes nothing), so an operator can trust what it shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from codedeploy_agent.config import _SECTIONS, AgentConfig, load_config

SAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "codedeployagent.yml"
#: `#key: value` (no space after the #): a setting shown at its default.
DEFAULT_LINE = re.compile(r"^(\s*)#(?=[:a-z])", re.MULTILINE)
#: mqtt keys the sample shows as `# key: value` examples (no default to show).
MQTT_EXAMPLES = ("thing_name", "ca_file", "cert_file", "key_file", "username", "password_file")


def uncommented() -> str:
    """The sample with every `#key: value` line made active."""
    return DEFAULT_LINE.sub(r"\1", SAMPLE.read_text(encoding="utf-8"))


def test_shipped_sample_loads_as_the_defaults() -> None:
    """As shipped: no warning, and every setting equals the built-in default."""
    config, warnings = load_config(SAMPLE)
    assert warnings == []
    assert config == AgentConfig(source=SAMPLE)


def test_commented_defaults_are_the_real_defaults(tmp_path: Path) -> None:
    """Uncommenting every `#key: value` line: still no warning, still exactly the defaults."""
    path = tmp_path / "codedeployagent.yml"
    text = uncommented()
    assert text != SAMPLE.read_text(encoding="utf-8")
    path.write_text(text)
    config, warnings = load_config(path)
    assert warnings == []
    assert config == AgentConfig(source=path)


def test_every_section_and_key_is_shown() -> None:
    """Each config section appears with all its keys: as a default, or (mqtt) as an example."""
    document: dict[str, Any] = yaml.safe_load(uncommented())
    assert sorted(name for name in _SECTIONS if name not in document) == []
    text = SAMPLE.read_text(encoding="utf-8")
    for name, section in _SECTIONS.items():
        shown = set(document[name] or {})
        if name == "mqtt":
            for key in MQTT_EXAMPLES:
                assert re.search(rf"^  # {key}: \S", text, re.MULTILINE), key
            shown |= set(MQTT_EXAMPLES)
        missing = sorted(set(section.keys) - shown)
        assert missing == [], f"{SAMPLE} does not show {name}: {', '.join(missing)}"
