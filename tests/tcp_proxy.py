"""A TCP proxy in front of a real server, to fault the path to it the way a restart or a network
partition does: every open connection cut, new ones refused (the server is down) or accepted and
never answered (packets dropped), then back to normal."""
from __future__ import annotations

import asyncio
import contextlib

from tests.conftest import free_port


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "open"  # or "blackhole": accept, forward nothing
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._frozen = False
        self._answers_to_lose = 0

    def lose_answers(self, connections: int = 1) -> None:
        """The next `connections` connections carry their requests but lose every answer on the way
        back (the server did its work and answered; the client only sees silence)."""
        self._answers_to_lose = connections

    async def start(self) -> None:
        self.mode = "open"
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        """What clients see while the server restarts: connections cut, new ones refused."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cut()

    async def blackhole(self) -> None:
        """A partition: connections cut, new ones accepted and then never answered."""
        self.cut()
        self.mode = "blackhole"
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def freeze(self) -> None:
        """A silent partition: open connections stay open but carry nothing either way; new ones
        are accepted and never answered. Nobody gets an error, only silence."""
        self.mode = "blackhole"
        self._frozen = True

    async def up(self) -> None:
        """Back to normal (the server is up again, the partition healed)."""
        self.cut()
        self.mode, self._frozen = "open", False
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        await self.down()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode == "blackhole":
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        deaf = self._answers_to_lose > 0
        self._answers_to_lose -= deaf

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    if not self._frozen:  # frozen: what is sent is lost, silently
                        sink.write(data)
                        await sink.drain()
            sink.transport.abort()

        async def lose(source: asyncio.StreamReader) -> None:
            with contextlib.suppress(Exception):
                while await source.read(65536):
                    pass

        await asyncio.gather(pipe(reader, up_writer), lose(up_reader) if deaf else pipe(up_reader, writer))
