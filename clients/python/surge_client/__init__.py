"""A client for surge, the flash-sale order engine: the binary protocol of docs/PROTOCOL.md in
the standard library only.

    from surge_client import Client
    with Client(["10.0.0.1:7600", "10.0.0.2:7600"], client_id=42) as surge:
        placed = surge.place_order(user=7, lines=[(1000, 1)])
"""

from .client import Client, ConnectionClosed, Rejected, SurgeError, Unavailable
from .codes import MOVE_ON, Code
from .feed import Feed, FeedError
from . import wire

__all__ = ["Client", "Code", "ConnectionClosed", "Feed", "FeedError", "MOVE_ON", "Rejected",
           "SurgeError", "Unavailable", "wire"]
