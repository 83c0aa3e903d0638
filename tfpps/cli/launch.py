"""Start a multi-worker training on this machine: ``python -m tfpps.launch --workers=2 [--port=P] -- ARGS``.

ARGS are ``python -m tfpps.train`` arguments (``--strategy=multiworker`` is added when absent). The
launcher picks free ports on 127.0.0.1 (or ``P``, ``P+1``, ...), gives each worker process its
``TF_CONFIG`` (cluster ``worker: [127.0.0.1:P0, 127.0.0.1:P1, ...]``, task ``worker`` i; worker 0 is the
chief), starts them, and streams their output line by line prefixed with ``[w<i>]``. When a worker fails
the others are stopped (SIGTERM, then SIGKILL) and the launcher exits with the failed worker's status;
Ctrl-C stops them all. Exit status 0 when every worker succeeded.

Example::

    python -m tfpps.launch --workers=2 -- --model=narm --dataset=ml-100k --batch_size=512

Multi-host clusters do not need the launcher: set ``TF_CONFIG`` on each host and run
``python -m tfpps.train --strategy=multiworker ...`` there (see :mod:`tfpps.runs.distribute`).
"""
from __future__ import annotations

import signal
import sys

from tfpps.cli.parser import OneLineParser
from tfpps.runs.launch import LaunchError, launch


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        split = argv.index("--")
        own, train_args = argv[:split], argv[split + 1:]
    else:
        own, train_args = argv, []
    p = OneLineParser(prog="python -m tfpps.launch", description=__doc__.split("\n\n")[0],
                                usage="python -m tfpps.launch --workers=N [--port=P] -- TRAIN_ARGS")
    p.add_argument("--workers", type=int, default=2, help="worker processes on 127.0.0.1 (default 2)")
    p.add_argument("--port", type=int, default=None, help="first port (P, P+1, ...); default: free ports")
    p.add_argument("--module", default="tfpps.train", help="the module each worker runs (default tfpps.train)")
    args = p.parse_args(own)
    if not train_args:
        print("tfpps.launch: error: give the tfpps.train arguments after --, e.g. -- --model=narm", file=sys.stderr)
        return 2
    def terminate(signum, frame):  # a SIGTERM to the launcher stops the workers too (as Ctrl-C does)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return launch(args.workers, train_args, port=args.port, module=args.module)
    except LaunchError as exc:
        print(f"tfpps.launch: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
