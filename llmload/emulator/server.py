"""Running emulators: in the foreground (``llmload emulate``) or as a managed subprocess (tests, the plugin).

A subprocess is the default for the Locust plugin and the tests: the emulator then has its own interpreter and
never competes with the load generator for the GIL, which would blur both sides' timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from aiohttp import web

from llmload.emulator.config import MockConfiguration
from llmload.emulator.core import Emulator, Protocol, build_app
from llmload.errors import ConfigError

READY_PREFIX = "llmload-emulator listening on "
PARENT_WATCH_ENV = "LLMLOAD_EMULATOR_PARENT_WATCH"


def protocol_classes(name: str) -> list[type[Protocol]]:
    """Protocol classes for ``name`` (``openai``, ``anthropic``, ``bedrock``, ``ollama`` or ``all``)."""
    from llmload.emulator import PROTOCOLS

    if name == "all":
        return list(PROTOCOLS.values())
    try:
        return [PROTOCOLS[name]]
    except KeyError:
        raise ConfigError(f"unknown emulator protocol {name!r}; choose one of: all, {', '.join(PROTOCOLS)}") from None


async def serve(protocol: str, config: MockConfiguration, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until cancelled or signalled; prints one ready line with the URL (port 0 picks a free port)."""
    from llmload.quality import answer_for

    app = build_app(Emulator(config, answer_for=answer_for), protocol_classes(protocol))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    sockets = site._server.sockets if site._server is not None else []  # aiohttp exposes no getter for the bound port
    bound_port = sockets[0].getsockname()[1] if sockets else port
    print(f"{READY_PREFIX}http://{host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if os.environ.get(PARENT_WATCH_ENV):
        # Managed by EmulatorProcess: stdin closes when the parent dies, however it dies; never outlive it.
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run_forever(protocol: str, config: MockConfiguration, host: str = "127.0.0.1", port: int = 0) -> None:
    try:
        import uvloop

        uvloop.run(serve(protocol, config, host, port))
    except ImportError:
        asyncio.run(serve(protocol, config, host, port))


class EmulatorProcess:
    """An emulator in a child process. Use as a context manager; ``url`` is its base URL once started."""

    def __init__(self, protocol: str = "all", config: MockConfiguration | None = None, host: str = "127.0.0.1") -> None:
        self.protocol = protocol
        self.config = config or MockConfiguration()
        self.host = host
        self.url = ""
        self.started_at = 0.0
        """Unix time the emulator reported ready: the origin of ``MockConfiguration.outage``."""
        self._proc: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 20.0) -> EmulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "llmload",
            "emulate",
            self.protocol,
            "--host",
            self.host,
            "--port",
            "0",
            "--config-json",
            json.dumps(self.config.to_dict()),
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", PARENT_WATCH_ENV: "1"},
            start_new_session=True,
        )
        line = _readline_with_timeout(self._proc, timeout_s)
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise ConfigError(f"emulator did not start: {line.strip() or 'no output'}")
        self.url = line[len(READY_PREFIX) :].strip()
        self.started_at = time.time()
        return self

    def truth(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The emulator's ground-truth records (what it sent, and when)."""
        with urllib.request.urlopen(f"{self.url}/_llmload/truth?since={since}", timeout=30) as resp:
            return json.loads(resp.read())["truth"]

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/_llmload/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        # Taken first: a second stop() while this one waits (two signals in a row) finds nothing left to do.
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _readline_with_timeout(proc: subprocess.Popen[str], timeout_s: float) -> str:
    import selectors

    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout_s):
            return ""
        return proc.stdout.readline()
    finally:
        selector.close()
