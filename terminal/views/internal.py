"""The kiosk's loopback API for ``cnap agent`` (monitoring/kiosk_client.py is its client): the
agent reports the kiosk's devices and forwards survey answers to the hub, and carries the hub's
"out of service" command to the kiosk, without ever importing the kiosk.

- ``GET  /internal/devices`` → ``{"devices": {name: fields}}``: for each device of
  monitoring/topics.DEVICES the fields of its payload model (BillValidatorState, PrinterState,
  CardTerminalState) without ``v`` and ``ts`` (the agent stamps them), from the kiosk's one
  device verdict (payments/health.py through ``Till.device_health``)
- ``GET  /internal/survey-answers?limit=N`` → ``{"answers": [SurveyAnswer fields], "unfit": n}``:
  the forwarding outbox (terminal/surveys/forwarding.py), oldest first; no staff ids or other
  columns the hub does not take; comments are masked by the survey store already
- ``POST /internal/survey-answers/forwarded`` ``{"uuids": [...]}`` → ``{"marked": n}``
- ``GET  /internal/out-of-service`` → the switch's state (terminal/out_of_service.py)
- ``POST /internal/out-of-service`` ``{"on": bool, "reason": word, "by": account}`` →
  ``{"ok": true, "message": …}``
- ``GET  /internal/internet`` → the fields of monitoring/topics.InternetState without ``v`` and
  ``ts``: today's visitor browsing counters (terminal/internet/store.py), hosts only

Only this machine reaches it (terminal/limits.py area ``internal``: never the tablets' listener,
never the service networks), and only with ``Authorization: Bearer <the agent's token>`` (the
file ``cnap agent`` writes, monitoring/agent.py). No cookie is read or needed, so the POSTs are
exempt from CSRF (terminal/__init__.py). Errors are JSON ``{"error": …}``.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import datetime, timezone
from typing import Annotated

from flask import Blueprint, Flask, abort, current_app, jsonify, request
from pydantic import Field, TypeAdapter, ValidationError
from werkzeug.exceptions import HTTPException

from monitoring import topics
from monitoring.agent import read_token, token_path
from payments.health import NOT_CONFIGURED
from terminal import out_of_service
from terminal.limits import ascii_int, body_limit, json_body
from terminal.state import current_state

log = logging.getLogger("cnap.internal")

bp = Blueprint("internal", __name__, url_prefix="/internal")

MAX_ANSWERS = 500                 # per request, both ways
MAX_FORWARDED_BODY = 64 * 1024    # 500 UUIDs in JSON are about 20 kB
UUIDS = TypeAdapter(Annotated[list[topics.Uuid], Field(max_length=MAX_ANSWERS)])
_NOT_A_WORD = re.compile(r"[^a-z0-9_]+")
# Device states that mean "not talking to us" (payments/health.py and payments/device_status.py).
OFFLINE_STATES = frozenset({"offline", "error", "unknown", NOT_CONFIGURED})
PAPER = {"ok": "ok", "near_end": "near_end", "out": "out"}   # anything else: "unknown"
MAX_CASSETTE = 100000   # BillValidatorState's bound
ANSWER_FIELDS = ("uuid", "tablet_id", "branch_id", "desk", "survey_id", "version", "main", "score", "scale",
                 "path", "nps", "comment", "lang", "counted", "flag", "review")


def init_app(app: Flask) -> None:
    out_of_service.init_app(app)


@bp.before_request
def _only_the_agent():
    # The area rule (terminal/limits.py) has refused other machines already; this is the token.
    token = read_token(token_path(current_app.config))
    if token is None:
        abort(401, description="no agent token on this kiosk yet: start `cnap agent` once")
    given = request.headers.get("Authorization", "").encode("utf-8", "replace")
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        abort(401, description="a valid agent token is required")


@bp.errorhandler(HTTPException)
def _json_error(error: HTTPException):
    response = jsonify({"error": error.description})
    response.status_code = error.code or 400
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="cnap-kiosk"'
    return response


# --- devices ---------------------------------------------------------------------------------------
def word(value) -> str:
    """A state word as topics.Word takes it."""
    text = _NOT_A_WORD.sub("_", str(value).lower()).strip("_")[:40]
    return text or "unknown"


def device_fields(name: str, verdict, *, cassette_bills: int = 0, cassette_capacity: int = 1) -> dict:
    """One device's payload fields (without v and ts) from its verdict (payments/health.py)."""
    state = word(verdict.state)
    fields = {"online": verdict.configured and state not in OFFLINE_STATES, "state": state,
              "alerts": [] if verdict.ok or not verdict.configured else [state]}
    if name == "bill_validator":
        capacity = min(max(1, int(cassette_capacity)), MAX_CASSETTE)
        if cassette_bills > capacity:   # the count says more than the profile holds: say so, stay in bounds
            fields["alerts"] = [*fields["alerts"], "cassette_over_capacity"]
        fields.update(cassette_bills=min(max(0, int(cassette_bills)), capacity), cassette_capacity=capacity)
    elif name == "printer":
        fields.update(paper=PAPER.get(verdict.detail.get("paper"), "unknown"),
                      cover_open=bool(verdict.detail.get("cover_open")))
    return fields


@bp.get("/devices")
def devices():
    kiosk_state = current_state()
    till, hardware = kiosk_state.till, kiosk_state.hardware
    if till is None:
        abort(503, description="payments are not running")
    verdicts = till.device_health()
    bills = sum(till.cassette_counts().values())
    capacity = getattr(hardware, "cassette_capacity", 1000)
    result = {}
    for name in topics.DEVICES:
        fields = device_fields(name, verdicts[name], cassette_bills=bills, cassette_capacity=capacity)
        # the models are the contract: a mapping that does not fit is our bug, caught here, not at the hub
        try:
            topics.device_model(name).model_validate({**fields, "ts": datetime.now(timezone.utc)})
        except ValidationError as exc:
            log.error("device %s does not fit the hub's model: %s", name, exc)
            abort(503, description=f"{name}: the kiosk's state does not fit the hub's model")
        result[name] = fields
    return jsonify({"devices": result})


# --- survey answers ----------------------------------------------------------------------------------
def answer_fields(row: dict) -> dict | None:
    """The SurveyAnswer fields of one outbox row (``ts`` is when it was answered, ISO 8601), or
    None when the row does not fit the model (logged by UUID only)."""
    fields = {key: row.get(key) for key in ANSWER_FIELDS}
    fields["counted"] = bool(fields["counted"])
    fields["path"] = [list(pair) for pair in fields["path"] or [] if isinstance(pair, (list, tuple))]
    try:
        fields["ts"] = datetime.fromtimestamp(float(row["answered_at"]), timezone.utc).isoformat()
        fields = {key: value for key, value in fields.items() if value is not None}
        topics.SurveyAnswer.model_validate_json(json.dumps(fields))
    except (ValueError, TypeError, OverflowError, ValidationError):
        log.warning("survey answer %s does not fit the hub's model: not forwarded", row.get("uuid"))
        return None
    return fields


@bp.get("/survey-answers")
def survey_answers():
    limit = ascii_int(request.args.get("limit"), 1, MAX_ANSWERS, default=100, name="limit")
    surveys = current_state().surveys
    if surveys is None:
        abort(503, description="surveys are not running")
    answers, unfit = [], 0
    for row in surveys.pending_for_forwarding(limit):
        fields = answer_fields(row)
        if fields is None:
            unfit += 1
        else:
            answers.append(fields)
    return jsonify({"answers": answers, "unfit": unfit})


@bp.post("/survey-answers/forwarded")
@body_limit(MAX_FORWARDED_BODY)
def survey_answers_forwarded():
    try:
        uuids = UUIDS.validate_python(json_body(kind=dict).get("uuids"), strict=True)
    except ValidationError:
        abort(400, description=f"uuids: a list of at most {MAX_ANSWERS} UUIDs (lower-case) is required")
    surveys = current_state().surveys
    if surveys is None:
        abort(503, description="surveys are not running")
    return jsonify({"marked": surveys.mark_forwarded(uuids)})


# --- out of service ----------------------------------------------------------------------------------
@bp.get("/out-of-service")
def out_of_service_state():
    return jsonify(current_state().out_of_service.current().as_dict())


@bp.post("/out-of-service")
@body_limit(4096)
def out_of_service_set():
    body = json_body(kind=dict)
    on, reason, by = body.get("on"), body.get("reason"), body.get("by")
    problem = out_of_service.check(on, reason, by)
    if problem:
        abort(400, description=problem)
    ok, message = current_state().out_of_service.set(on, reason, by)
    if not ok:   # the switch could not be saved: nothing changed
        abort(503, description=message)
    return jsonify({"ok": True, "message": message})


# --- internet: visitor browsing counters ----------------------------------------------------------
@bp.get("/internet")
def internet():
    browsing = current_state().internet
    if browsing is None:
        abort(503, description="internet browsing is not running")
    reason = browsing.unavailable_reason() if browsing.enabled else "disabled"
    today = browsing.store.day_counters(top=topics.MAX_TOP_BLOCKED)
    fields = {"enabled": browsing.enabled, "available": reason is None, "state": reason or "ok",
              "session_open": browsing.status()["open"], "day": today["day"],
              "sessions": today["sessions_started"], "ended": today["sessions_ended"],
              "minutes": today["minutes"], "blocked_hook": today["blocked"]["hook"],
              "blocked_proxy": today["blocked"]["proxy"], "top_blocked": today["top_blocked"]}
    try:
        topics.InternetState.model_validate({**fields, "ts": datetime.now(timezone.utc)})
    except ValidationError as exc:
        log.error("internet counters do not fit the hub's model: %s", exc)
        abort(503, description="the internet counters do not fit the hub's model")
    return jsonify(fields)
