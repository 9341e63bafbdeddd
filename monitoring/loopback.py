"""One JSON request over loopback HTTP with a bearer token, for the clients of this machine's
small JSON endpoints: the kiosk asking ``cnap agent`` (monitoring/agent_client.py) and the agent
asking the kiosk (monitoring/kiosk_client.py). Short timeouts, a bounded answer, and one
exception for "cannot get a usable answer", so callers say "unavailable" instead of failing."""
from __future__ import annotations

import http.client
import json
from typing import Any

MAX_ANSWER_BYTES = 4 * 1024 * 1024


class Unavailable(Exception):
    """No usable answer; ``str()`` says why, for the log and the screen. ``maybe_done``: the
    request went out but no answer came back in time, so a command may have been carried out all
    the same (say to check the state rather than "not sent")."""

    def __init__(self, reason: str, maybe_done: bool = False):
        super().__init__(reason)
        self.maybe_done = maybe_done


def request_json(host: str, port: int, method: str, path: str, *, token: str, body: Any = None,
                 timeout_s: float, refusals: tuple[int, ...] = (), peer: str = "the server",
                 error: type[Unavailable] = Unavailable) -> dict:
    """The JSON object the server answers with status 200 (or one of ``refusals``); ``error``
    (an :class:`Unavailable`) for no answer, another status, or anything but a JSON object."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    sent = False
    try:
        connection.request(method, path, body=data, headers=headers)
        sent = True
        response = connection.getresponse()
        raw = response.read(MAX_ANSWER_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:   # refused, timed out, cut off
        raise error(f"no answer from {peer} at {host}:{port}: {type(exc).__name__}: {exc}",
                    maybe_done=sent and method == "POST") from None
    finally:
        connection.close()
    if len(raw) > MAX_ANSWER_BYTES:
        raise error(f"{peer}'s answer is too large")
    if response.status != 200 and response.status not in refusals:
        raise error(f"{peer} answered {response.status} {response.reason}")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise error(f"{peer}'s answer is not JSON") from None
    if not isinstance(answer, dict):
        raise error(f"{peer}'s answer is not a JSON object")
    return answer
