"""The appliance's HTTP server: waitress (a production WSGI server: one process, a thread pool,
bounded connections) on a background thread, so the caller keeps its own thread for the native
window or a test. One process on purpose: the payment journal has one writer and the device
drivers live in this process."""
from __future__ import annotations

import threading


class BackgroundServer:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until ``stop()``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 8):
        from waitress.server import create_server

        self._server = create_server(app, host=host, port=port, threads=threads, ident="cnap-kiosk",
                                     clear_untrusted_proxy_headers=True)
        self.host = host
        self.port = self._server.effective_port
        self.url = f"http://{host}:{self.port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnap-http", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from waitress import wasyncore

        server = self._server
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map,
                               use_poll=server.adj.asyncore_use_poll, count=1)
        finally:
            # Closed here, on the loop's own thread: every listening and open connection goes,
            # so a stopped server refuses visitors' browsers as a switched-off one would.
            wasyncore.close_all(server._map)
            server.task_dispatcher.shutdown()

    def stop(self, timeout: float = 10) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self._server.trigger.pull_trigger()  # wake the loop now, not after its poll timeout
        except OSError:
            pass
        self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
