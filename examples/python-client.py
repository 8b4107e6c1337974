"""The client API in a dozen lines: run `localagent serve` first, then this file."""

import asyncio

from localagent import Client


async def main() -> None:
    async with Client() as client:  # URL and token: $LOCALAGENT_URL/$LOCALAGENT_TOKEN or the config
        print(await client.request("ping"))
        replies = await asyncio.gather(*(client.request("echo", n) for n in range(3)))
        print(replies)


asyncio.run(main())
