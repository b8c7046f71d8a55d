"""A TCP forwarder for the partition test: `python -m tests.celery.forward LISTEN TARGET ...`
with each argument `host:port`, in pairs. It runs until killed; a connection whose other end
is unreachable simply hangs, as across a real partition."""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen: str, target: str) -> asyncio.Server:
    target_host, target_port = target.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    host, port = listen.rsplit(":", 1)
    return await asyncio.start_server(handle, host, int(port), reuse_address=True)


async def main(pairs: list[str]) -> None:
    servers = [await _serve(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
    print("forwarding", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
