#!/usr/bin/env python3
"""A real WebSocket client (the `websockets` package) for transport_cli.rs.

usage: ws_client.py URL MODE [ARG]

Modes:
  text            offer the `nkcluster` subprotocol, send one text message
  binary N        offer it, send N random (seeded) bytes as one binary message
  no-subprotocol  offer no subprotocol (the server must refuse the upgrade)

Prints one JSON object per line:
  {"event": "open", "subprotocol": ..., "local_port": ...}
  {"event": "closed", "code": ..., "reason": ..., "binary_messages": N}
      code/reason of the close frame the server sent; null when the connection ended
      without one (an abnormal closure, 1006)
  {"event": "rejected", "status": HTTP status}   when the upgrade was refused
  {"event": "timeout"}                            the server kept the connection open

Exit status 0 whenever one of these outcomes was printed; 2 for bad usage; 3 when the
websockets package is missing.
"""

import json
import random
import sys

try:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect
except ImportError as e:  # pragma: no cover - reported by the Rust test
    print(f"the python websockets package is missing ({e}): pip install websockets",
          file=sys.stderr)
    sys.exit(3)

TIMEOUT_S = 20


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, mode = sys.argv[1], sys.argv[2]
    subprotocols = None if mode == "no-subprotocol" else ["nkcluster"]
    try:
        ws = connect(url, subprotocols=subprotocols, open_timeout=TIMEOUT_S,
                     close_timeout=TIMEOUT_S, max_size=None)
    except InvalidStatus as e:
        emit(event="rejected", status=e.response.status_code)
        return 0
    with ws:
        emit(event="open", subprotocol=ws.subprotocol, local_port=ws.local_address[1])
        if mode == "text":
            ws.send("hello, this is not nkcluster")
        elif mode == "binary":
            n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
            ws.send(random.Random(1972).randbytes(n))
        elif mode == "no-subprotocol":
            pass
        else:
            print(f"unknown mode {mode!r}", file=sys.stderr)
            return 2
        binaries = 0
        while True:
            try:
                msg = ws.recv(timeout=TIMEOUT_S)
            except TimeoutError:
                emit(event="timeout")
                return 0
            except ConnectionClosed as e:
                rcvd = e.rcvd
                emit(event="closed",
                     code=None if rcvd is None else int(rcvd.code),
                     reason=None if rcvd is None else rcvd.reason,
                     binary_messages=binaries)
                return 0
            if isinstance(msg, bytes):
                binaries += 1


if __name__ == "__main__":
    sys.exit(main())
