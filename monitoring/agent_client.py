"""How the kiosk (service mode) talks to ``cnap agent`` over loopback: the token from the instance
folder, short timeouts, and one exception for "cannot get an answer", so a screen can say
"agent unavailable" instead of failing."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from monitoring.agent import read_token, token_path
from monitoring.loopback import Unavailable, request_json


class AgentUnavailable(Unavailable):
    """No usable answer from the agent (see monitoring.loopback.Unavailable: ``maybe_done``)."""


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
        return request_json(self.host, self.port, method, path, token=token, body=body, timeout_s=self.timeout_s,
                            refusals=refusals, peer="the agent", error=AgentUnavailable)
