"""A minimal agent process for the last-will tests: `python will_agent.py ENDPOINT PROTOCOL`.

It connects with a retained last will `offline-by-will` on TOPIC, publishes a retained
`online` from on_connect, prints `online` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Literal, cast

from codedeploy_agent.config import MqttSettings
from codedeploy_agent.transport import Message, MqttSession, Will

TOPIC = "codedeploy/things/thing-1/presence"


async def main(endpoint: str, protocol: str) -> None:
    """Run the session until the process is killed."""
    session: MqttSession

    async def on_connect() -> None:
        await session.publish(TOPIC, b"online", retain=True)
        print("online", flush=True)

    async def ignore(_message: Message) -> None:
        return None

    session = MqttSession(
        MqttSettings(endpoint=endpoint, protocol=cast(Literal["5", "3.1.1"], protocol)),
        client_id="thing-1",
        subscriptions=[],
        will=Will(TOPIC, b"offline-by-will"),
        on_connect=on_connect,
    )
    await session.run(ignore)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
