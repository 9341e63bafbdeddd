"""How the kiosk (service mode) talks to ``cnap agent`` over loopback: the token from the instance
folder, short timeouts, and one exception for "cannot get an answer", so a screen can say
"agent unavailable" instead of failing."""
from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any, Mapping

from monitoring.agent import read_token, token_path

MAX_ANSWER_BYTES = 4 * 1024 * 1024


class AgentUnavailable(Exception):
    """No usable answer from the agent; ``str()`` says why, for the log and the screen.
    ``maybe_done``: the request went out but no answer came back in time, so a command may have
    been carried out all the same (the screen says to check the state rather than "not sent")."""

    def __init__(self, reason: str, maybe_done: bool = False):
        super().__init__(reason)
        self.maybe_done = maybe_done


class AgentClient:
    def __init__(self, host: str, port: int, token_file: Path, timeout_s: float = 3.0):
        self.host, self.port, self.token_file, self.timeout_s = host, port, Path(token_file), timeout_s

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "AgentClient":
        return cls(settings["AGENT_HOST"], settings["AGENT_PORT"], token_path(settings),
                   settings["AGENT_TIMEOUT_S"])

    def status(self) -> dict:
        answer = self._request("GET", "/status")
        if not isinstance(answer.get("controllers"), dict):
            raise AgentUnavailable("the agent's status has no controllers")
        return answer

    def command(self, controller: str, action: str, args: dict[str, Any]) -> dict:
        """The controller's ``{"ok", "message"}``; a refusal by the agent (400/404) comes back as
        ok False with the agent's reason."""
        answer = self._request("POST", f"/command/{controller}", {"action": action, "args": args},
                               refusals=(400, 404))
        if "error" in answer:
            return {"ok": False, "message": str(answer["error"])}
        return {"ok": answer.get("ok") is True, "message": str(answer.get("message", ""))}

    def _request(self, method: str, path: str, body: Any = None, refusals: tuple[int, ...] = ()) -> dict:
        token = read_token(self.token_file)
        if token is None:
            raise AgentUnavailable(f"no agent token in {self.token_file} (has the agent ever run?)")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        sent = False
        try:
            connection.request(method, path, body=data, headers=headers)
            sent = True
            response = connection.getresponse()
            raw = response.read(MAX_ANSWER_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:   # refused, timed out, cut off
            raise AgentUnavailable(f"no answer from the agent at {self.host}:{self.port}: "
                                   f"{type(exc).__name__}: {exc}", maybe_done=sent and method == "POST") from None
        finally:
            connection.close()
        if len(raw) > MAX_ANSWER_BYTES:
            raise AgentUnavailable("the agent's answer is too large")
        if response.status != 200 and response.status not in refusals:
            raise AgentUnavailable(f"the agent answered {response.status} {response.reason}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise AgentUnavailable("the agent's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise AgentUnavailable("the agent's answer is not a JSON object")
        return answer
