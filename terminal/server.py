"""The appliance's HTTP server: waitress (a production WSGI server: one process, a thread pool,
bounded connections) on a background thread, so the caller keeps its own thread for the native
window or a test. One process on purpose: the payment journal has one writer and the device
drivers live in this process."""
from __future__ import annotations

import threading

from terminal.limits import (GUEST, KIOSK, LISTENER_HOST_KEY, LISTENER_KEY, ORIGINAL_PATH_KEY, TABLET,
                             guest_path)


def on_listener(app, name: str, host: str):
    """``app`` as served on one listener: the request carries which socket it came in on, so the
    app can refuse areas by listener (terminal.limits), whatever the client says in its headers."""
    def application(environ, start_response):
        environ[LISTENER_KEY] = name
        environ[LISTENER_HOST_KEY] = host
        if name == GUEST:   # every path a guest's phone asks for lands on the portal
            environ[ORIGINAL_PATH_KEY] = environ.get("PATH_INFO", "/")
            environ["PATH_INFO"] = guest_path(environ[ORIGINAL_PATH_KEY])
        return app(environ, start_response)
    return application


def largest_body(app) -> int | None:
    """The largest request body any route of a Flask ``app`` accepts (MAX_CONTENT_LENGTH, or a
    route's own terminal.limits.body_limit); None when unknown."""
    config = getattr(app, "config", None)
    if config is None or config.get("MAX_CONTENT_LENGTH") is None:
        return None
    routes = [getattr(view, "max_body_bytes", 0) for view in app.view_functions.values()]
    return max([config["MAX_CONTENT_LENGTH"], *routes])


class BackgroundServer:
    """Serve ``app`` on ``host:port`` (0 picks a free port) until ``stop()``; with ``tablet_host``,
    also on a second listener for desk tablets (``tablet_port``, 0: any free port), and with
    ``guest_host`` on a third for the guest Wi-Fi's captive portal. All share one event loop and
    one thread pool. Bodies larger than ``max_request_body_size`` (default: the
    largest any route of a Flask ``app`` takes) are refused before they are buffered."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 8,
                 tablet_host: str | None = None, tablet_port: int = 0,
                 max_request_body_size: int | None = None, guest_host: str | None = None,
                 guest_port: int = 0, guest_netns: str = ""):
        from waitress import wasyncore
        from waitress.server import create_server

        options = dict(threads=threads, ident="cnap-kiosk", clear_untrusted_proxy_headers=True)
        largest = max_request_body_size or largest_body(app)
        if largest is not None:
            # waitress buffers a whole body (to a temporary file) before the app sees it, up to 1 GB
            # by default: refuse at the door what no route would take.
            options["max_request_body_size"] = largest
        self._server = create_server(on_listener(app, KIOSK, host), host=host, port=port, **options)
        self._tablet_server = None
        if tablet_host:
            try:
                self._tablet_server = create_server(on_listener(app, TABLET, tablet_host), map=self._server._map,
                                                    _dispatcher=self._server.task_dispatcher,
                                                    host=tablet_host, port=tablet_port, **options)
            except OSError as exc:  # the main listener is open already: close it before saying why
                wasyncore.close_all(self._server._map)
                self._server.task_dispatcher.shutdown()
                exc.listen_address = (tablet_host, tablet_port)
                raise
        self._guest_server = None
        self.guest_error = ""
        if guest_host:
            # The captive portal's listener on the guest network's gateway address (inside
            # ``guest_netns`` when set: the socket keeps the namespace it was made in). A failure
            # leaves the kiosk running without it, and says why.
            from facility.uplinks.netns import in_netns
            try:
                with in_netns(guest_netns):
                    self._guest_server = create_server(on_listener(app, GUEST, guest_host), map=self._server._map,
                                                       _dispatcher=self._server.task_dispatcher,
                                                       host=guest_host, port=guest_port, **options)
            except OSError as exc:
                self.guest_error = f"{guest_host}:{guest_port}: {exc.strerror or exc}"
        self.guest_url = (f"http://{guest_host}:{self._guest_server.effective_port}"
                          if self._guest_server else None)
        self.host = host
        self.port = self._server.effective_port
        self.url = f"http://{host}:{self.port}"
        self.tablet_url = (f"http://{tablet_host}:{self._tablet_server.effective_port}"
                           if self._tablet_server else None)
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
