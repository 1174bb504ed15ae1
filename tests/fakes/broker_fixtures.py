"""Pytest fixtures that start real brokers on 127.0.0.1 (see `tests/fakes/brokers.py`).

pytest only loads `conftest.py` files on a test's own path, so a test package that needs a
broker imports the fixtures into its conftest:

    from tests.fakes.broker_fixtures import amqtt_broker, mosquitto, mosquitto_factory  # noqa: F401

Every broker is started for one test and stopped when it ends; a test that fails prints the
broker's log (pytest shows captured stdout of failed tests), which is usually the explanation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.fakes.brokers import EmbeddedBroker, MosquittoBroker


class MosquittoFactory(Protocol):
    """Start a `MosquittoBroker(directory, **options)` in a fresh folder of the test's tmp_path."""

    def __call__(self, **options: Any) -> MosquittoBroker: ...


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[MosquittoFactory]:
    """Start Mosquitto brokers with chosen options; all of them stop when the test ends."""
    started: list[MosquittoBroker] = []

    def start(**options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"mosquitto-{len(started)}", **options)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in reversed(started):
        broker.stop()
    for broker in started:
        print(f"--- {broker.log_file}\n{broker.log_text()}")


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A Mosquitto broker with the defaults: anonymous login, persistence on, plain MQTT."""
    return mosquitto_factory()


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """The embedded amqtt broker (MQTT 3.1.1, a user name required, any name accepted)."""
    broker = EmbeddedBroker(tmp_path / "amqtt")
    broker.start()
    yield broker
    broker.stop()
    print(f"--- {broker.log_file}\n{broker.log_text()}")
