"""How ``cnap agent`` talks to the kiosk's loopback API (terminal/views/internal.py) without
importing the kiosk: its devices, the survey answers waiting for the hub, and the hub's "out of
service" switch. The token is the agent's own (monitoring/agent.py ``ensure_token``); the kiosk
reads the same file. Every method raises :class:`KioskUnavailable` when the kiosk does not answer
or answers something that does not fit (answers are checked against monitoring/topics.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from monitoring import topics
from monitoring.loopback import Unavailable, request_json

MAX_LIMIT = 500   # the kiosk's bound per request (terminal/views/internal.py MAX_ANSWERS)


class KioskUnavailable(Unavailable):
    """No usable answer from the kiosk (see monitoring.loopback.Unavailable: ``maybe_done``)."""


class KioskClient:
    def __init__(self, base_url: str, token: str, timeout: float = 2.0):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the kiosk's base URL must be http://host:port, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.token, self.timeout = token, timeout

    def devices(self) -> dict[str, dict]:
        """For each device of topics.DEVICES, the fields of its payload model without ``v`` and
        ``ts`` (stamp them when publishing)."""
        answer = self._request("GET", "/internal/devices").get("devices")
        if not isinstance(answer, dict):
            raise KioskUnavailable("the kiosk's devices answer has no devices")
        now = datetime.now(timezone.utc)
        result = {}
        for name in topics.DEVICES:
            fields = answer.get(name)
            if not isinstance(fields, dict) or "ts" in fields or "v" in fields:
                raise KioskUnavailable(f"the kiosk's devices answer has no usable {name}")
            try:
                topics.device_model(name).model_validate({**fields, "ts": now})
            except ValidationError as exc:
                raise KioskUnavailable(f"the kiosk's {name} does not fit {topics.device_model(name).__name__}: "
                                       f"{exc.error_count()} error(s)") from None
            result[name] = fields
        return result

    def pending_answers(self, limit: int) -> list[dict]:
        """Survey answers the hub does not have yet, oldest first: the fields of
        topics.SurveyAnswer (``ts`` = when answered, ISO 8601). Call :meth:`mark_forwarded` once
        the hub has them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: 1 to {MAX_LIMIT}")
        answers = self._request("GET", f"/internal/survey-answers?limit={limit}").get("answers")
        if not isinstance(answers, list) or len(answers) > limit:
            raise KioskUnavailable("the kiosk's survey answers are not a list of at most the limit")
        for fields in answers:
            try:
                topics.SurveyAnswer.model_validate_json(json.dumps(fields))
            except ValidationError as exc:
                raise KioskUnavailable(f"a survey answer from the kiosk does not fit SurveyAnswer: "
                                       f"{exc.error_count()} error(s)") from None
        return answers

    def mark_forwarded(self, uuids: list[str]) -> int:
        """How many of ``uuids`` were waiting and are now marked as forwarded."""
        uuids = list(uuids)
        if len(uuids) > MAX_LIMIT:
            raise ValueError(f"at most {MAX_LIMIT} UUIDs at a time")
        marked = self._request("POST", "/internal/survey-answers/forwarded", {"uuids": uuids}).get("marked")
        if isinstance(marked, bool) or not isinstance(marked, int) or marked < 0:
            raise KioskUnavailable("the kiosk's answer has no count")
        return marked

    def set_out_of_service(self, on: bool, reason: str, by: str) -> dict:
        """``{"ok": bool, "message": str}``; a refusal by the kiosk (bad reason or account, the
        switch not saved) is ok False with the kiosk's reason."""
        answer = self._request("POST", "/internal/out-of-service", {"on": on, "reason": reason, "by": by},
                               refusals=(400, 503))
        if "error" in answer:
            return {"ok": False, "message": str(answer["error"])[:300]}
        return {"ok": answer.get("ok") is True, "message": str(answer.get("message", ""))[:300]}

    def out_of_service(self) -> dict:
        """``{"on": bool, "reason": str | None, "by": str | None, "since": float | None,
        "error": str | None}``"""
        answer = self._request("GET", "/internal/out-of-service")
        if not isinstance(answer.get("on"), bool):
            raise KioskUnavailable("the kiosk's out-of-service answer has no on/off")
        return answer

    def internet(self) -> dict:
        """Today's visitor browsing counters: the fields of topics.InternetState without ``v``
        and ``ts`` (stamp them when publishing)."""
        answer = self._request("GET", "/internal/internet")
        try:
            topics.InternetState.model_validate({**answer, "ts": datetime.now(timezone.utc)})
        except ValidationError as exc:
            raise KioskUnavailable(f"the kiosk's internet counters do not fit InternetState: "
                                   f"{exc.error_count()} error(s)") from None
        return answer

    def _request(self, method: str, path: str, body: Any = None, refusals: tuple[int, ...] = ()) -> dict:
        return request_json(self.host, self.port, method, self.prefix + path, token=self.token, body=body,
                            timeout_s=self.timeout, refusals=refusals, peer="the kiosk", error=KioskUnavailable)
