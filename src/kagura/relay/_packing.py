"""Commands packed by hiredis, for redis-py's asyncio connections.

redis-py's sync client packs commands with hiredis (C) when it is installed; its asyncio
client always packs them in Python, about 10 µs a command, which a relay's producer pays
for every append and its readers for every ``XREAD``. :func:`hiredis_packing` gives a
connection class that packs as the sync client does (the same bytes).

>>> from redis.asyncio.connection import Connection
>>> packing = hiredis_packing(Connection)
>>> packing is hiredis_packing(Connection), issubclass(packing, Connection)
(True, True)
>>> packing().pack_command("XADD", "k", "*", "d", b"x", 5)
[b'*6\\r\\n$4\\r\\nXADD\\r\\n$1\\r\\nk\\r\\n$1\\r\\n*\\r\\n$1\\r\\nd\\r\\n$1\\r\\nx\\r\\n$1\\r\\n5\\r\\n']
>>> args = ("CLIENT SETNAME", bytearray(b"n"))
>>> packing().pack_command(*args) == Connection().pack_command(*args)
True
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

__all__ = ["hiredis_packing"]


@functools.cache
def hiredis_packing(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """``base`` with ``pack_command``/``pack_commands`` by hiredis (``base`` itself if
    hiredis is not installed). Strings are encoded as UTF-8, strictly, as redis-py's
    defaults do: use it only with those."""
    try:
        import hiredis
    except ImportError:  # pragma: no cover - hiredis comes with kagura[relay]
        return base
    from redis.exceptions import DataError

    def pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
        # As redis-py: a command name of several words ("CLIENT SETNAME") is several args.
        name = args[0]
        if isinstance(name, str):
            if " " in name:
                args = (*name.encode().split(), *args[1:])
        elif b" " in name:
            args = (*name.split(), *args[1:])
        try:
            return [cast(bytes, hiredis.pack_command(args))]  # pyright: ignore[reportUnknownMemberType]
        except TypeError:
            pass  # a bytearray, which redis-py takes; or a value it refuses too
        args = tuple(bytes(a) if isinstance(a, bytearray) else a for a in args)
        try:
            return [cast(bytes, hiredis.pack_command(args))]  # pyright: ignore[reportUnknownMemberType]
        except TypeError as exc:  # what redis-py's packer raises for a value it cannot send
            raise DataError(str(exc)) from None

    def pack_commands(self: AbstractConnection, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(pack_command(self, *command)[0] for command in commands)]

    namespace = {"pack_command": pack_command, "pack_commands": pack_commands}
    return cast("type[AbstractConnection]", type(f"Hiredis{base.__name__}", (base,), namespace))
