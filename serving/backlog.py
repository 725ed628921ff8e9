"""Closing a listener without resetting the connections waiting in its accept queue.

The kernel completes TCP handshakes on its own and queues the connections for whoever
accepts; when the last process holding the listener closes it, every connection still
queued is reset. A client that had already sent its request then sees the server hang
up without an answer. So a stop goes in two steps:

1. `refuse_new_connections`: from now on the kernel answers no new SYN (the client
   retries it a second later and then finds the port closed: refused, never reset);
   handshakes already under way still complete and join the queue.
2. `close_answering_the_backlog`: take every connection queued, hand each to a handler,
   and close the listener.

Without step 1 a handshake can complete in the microseconds between the accept that
finds the queue empty and the close (about 1 stop in 40 under steady new connections).
"""

import ctypes
import socket
import struct
import sys
from typing import Any

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value

# A classic BPF socket filter, run by the kernel on each TCP segment that reaches the
# listener, the TCP header at offset 0: drop a segment whose flags say SYN without ACK
# (a new handshake); keep everything else, such as the ACK that completes one.
_DROP_NEW_SYNS = (
    # (code, jump if true, jump if false, k)
    (0x30, 0, 0, 13),  # ldb [13]         the flags byte
    (0x54, 0, 0, 0x12),  # and #0x12      SYN | ACK
    (0x15, 1, 0, 0x02),  # jeq #0x02      only SYN: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1  keep the whole segment
    (0x06, 0, 0, 0),  # ret #0            drop
)


def refuse_new_connections(listener: Any) -> bool:
    """Make the kernel drop new connection attempts to `listener` (a listening TCP
    socket, shared with every process that holds it). False where this is not Linux or
    the kernel refuses the filter (seccomp, gVisor, a small optmem_max): the stop then
    goes on without it, as it did before this step existed."""
    if sys.platform != "linux":
        return False
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in _DROP_NEW_SYNS)
    code = ctypes.create_string_buffer(program)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HL", len(_DROP_NEW_SYNS), ctypes.addressof(code))
    try:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def close_answering_the_backlog(server: Any) -> None:
    """Stop a gevent StreamServer accepting, hand every connection already in its
    accept queue to a handler, and close the listening socket. Nothing yields between
    the accept that finds the queue empty and the close, so no connection joins the
    queue unseen in between."""
    server.stop_accepting()
    while (accepted := server.do_read()) is not None:
        server.do_handle(*accepted)
    server.close()
