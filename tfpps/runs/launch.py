"""Multi-worker training on this machine: one ``python -m tfpps.train`` process per worker, each with its
``TF_CONFIG`` (worker 0 is the chief), their output streamed line by line prefixed with ``[w<i>]``; when one
fails the others are stopped (:func:`launch`). The command line: :mod:`tfpps.cli.launch`; the strategies:
:mod:`tfpps.runs.distribute`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


class LaunchError(ValueError):
    """A bad launcher argument; the message is one line."""


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct ports that were free on ``host`` a moment ago (bound to port 0 together, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_configs(workers: int, ports: list[int], host: str = HOST) -> list[str]:
    """The ``TF_CONFIG`` JSON of each worker."""
    cluster = {"worker": [f"{host}:{p}" for p in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(workers)]


def _strategy_value(item: str) -> str | None:
    """The strategy an override item (``strategy=X`` / ``train.strategy=X``, dashes allowed) sets, else None."""
    key, eq, value = item.partition("=")
    return value if eq and key.strip().replace("-", "_") in ("strategy", "train.strategy") else None


def worker_args(train_args: list[str]) -> list[str]:
    """``train_args`` with ``--strategy=multiworker`` (added if absent; any other strategy is an error)."""
    out, found, i = [], [], 0
    while i < len(train_args):
        arg = train_args[i]
        value = None
        if arg in ("--strategy", "--set") and i + 1 < len(train_args):
            value = train_args[i + 1] if arg == "--strategy" else _strategy_value(train_args[i + 1])
            if value is not None:
                i += 1
        elif arg.startswith("--set="):
            value = _strategy_value(arg[len("--set="):])
        elif arg.startswith("--"):
            value = _strategy_value(arg[2:])
        if value is None:
            out.append(arg)
        else:
            found.append(value)
        i += 1
    bad = [v for v in found if v != "multiworker"]
    if bad:
        raise LaunchError(f"--strategy={bad[0]}: the launcher starts multi-worker runs (--strategy=multiworker)")
    return out + ["--strategy=multiworker"]


def _pump(index: int, stream, lock: threading.Lock) -> None:
    prefix = f"[w{index}] "
    for line in iter(stream.readline, ""):
        with lock:
            sys.stdout.write(prefix + line if line.endswith("\n") else prefix + line + "\n")
            sys.stdout.flush()
    stream.close()


def _stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + grace
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def launch(workers: int, train_args: list[str], port: int | None = None, module: str = "tfpps.train",
           env: dict | None = None) -> int:
    """Run ``python -m module train_args`` as ``workers`` TF_CONFIG workers; the exit status (0 = all succeeded)."""
    if workers < 1:
        raise LaunchError(f"--workers={workers}: must be >= 1")
    args = worker_args(train_args)
    ports = list(range(port, port + workers)) if port else free_ports(workers)
    configs = tf_configs(workers, ports)
    base_env = dict(os.environ if env is None else env)
    base_env.setdefault("PYTHONUNBUFFERED", "1")
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"tfpps.launch: {workers} workers on {', '.join(f'{HOST}:{p}' for p in ports)}: python -m {module} {' '.join(args)}",
          flush=True)
    lock = threading.Lock()
    procs, pumps = [], []
    try:
        for i, config in enumerate(configs):
            proc = subprocess.Popen([sys.executable, "-m", module, *args], env={**base_env, "TF_CONFIG": config},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            procs.append(proc)
            pump = threading.Thread(target=_pump, args=(i, proc.stdout, lock), daemon=True)
            pump.start()
            pumps.append(pump)
        status = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                with lock:
                    print(f"tfpps.launch: worker {i} exited with status {status}; stopping the others", flush=True)
                _stop(procs)
                break
            if all(c == 0 for c in codes):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(procs)
        status = 130
    for pump in pumps:
        pump.join(timeout=5)
    if status < 0:  # killed by a signal: report it the shell's way
        status = 128 - status
    return status
