"""``python -m fakeprovider --host 127.0.0.1 --port 8765``: run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from fakeprovider.server import start_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakeprovider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to bind, 0 = any free port (default %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--no-redirect-listener",
        action="store_true",
        help="do not listen on 127.0.0.2 for clients following redirects",
    )
    args = parser.parse_args(argv)

    server = start_server(
        args.host, args.port, verbose=args.verbose, redirect_listener=not args.no_redirect_listener
    )
    print(f"fakeprovider listening on {server.base_url}", flush=True)

    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        while not done.wait(0.2):  # a timed wait keeps the main thread responsive to signals
            pass
    finally:
        server.stop()
    print("fakeprovider stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
