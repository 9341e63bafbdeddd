"""No input gives a 500: every route of the app (every rule, every method) gets arbitrary text in
its path segments, query, form fields, files and JSON bodies — Unicode digits and superscripts,
bidi and other format characters, NUL, huge strings, deep JSON — anonymously, as a logged-in
admin (with a valid CSRF token, so requests reach the view code), as a registered tablet and as
the local monitoring agent (its bearer token).

Routes and field names are read from the app and its templates at collection time, so a new
route or a new form field is fuzzed without anyone listing it here."""
from __future__ import annotations

import os
import inspect
import io
import logging
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings, strategies as st

import terminal
from monitoring.agent import ensure_token, token_path
from terminal import close_app, create_app
from tests.terminal.limits_helpers import csrf_token, log_in_admin, register_tablet
from terminal.state import state

EXAMPLES_PER_ROUTE = int(os.environ.get("CNAP_FUZZ_EXAMPLES", "40"))   # more for a deeper local hunt
SOURCE = Path(terminal.__file__).parent
CONFIG = {"TESTING": True, "SECRET_KEY": "fuzz", "BILL_VALIDATOR_URL": "", "CARD_TERMINAL_URL": "",
          "PRINTER_URL": ""}
_PLACEHOLDER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _field_names() -> list[str]:
    """Every parameter name a view reads or a template's form sends."""
    names = set()
    for path in SOURCE.rglob("*.py"):
        names |= set(re.findall(r"""(?:form|args|values|files)\.get\(\s*["']([^"']+)["']""", path.read_text()))
    for path in (SOURCE / "templates").rglob("*.html"):
        names |= set(re.findall(r'\bname="([A-Za-z_][\w-]*)"', path.read_text()))
    names.discard("csrf_token")
    return sorted(names)


_NAME_READ = re.compile(r"""(?:form|args|values|files)\.get\(\s*["']([^"']+)["']""")
_TEMPLATE = re.compile(r"""render_template\(\s*["']([^"']+)["']""")
_FORM_NAME = re.compile(r'\bname="([A-Za-z_][\w-]*)"')


def _route_names(view) -> list[str]:
    """The parameter names one view reads — in its own code, the functions, classes and app
    modules it calls (two levels), and the forms of the templates it renders."""
    seen, names = set(), set()

    def visit(obj, depth):
        if depth > 2 or id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            return
        names.update(_NAME_READ.findall(source))
        for template in _TEMPLATE.findall(source):
            path = SOURCE / "templates" / template
            if path.is_file():
                names.update(_FORM_NAME.findall(path.read_text()))
        code = getattr(obj, "__code__", None)
        scope = getattr(obj, "__globals__", {})
        for name in code.co_names if code else ():
            target = scope.get(name)
            if inspect.isfunction(target) or inspect.isclass(target) or (
                    inspect.ismodule(target) and target.__name__.startswith("terminal.")):
                visit(target, depth + 1)
        if inspect.isclass(obj):
            for member in vars(obj).values():
                visit(getattr(member, "__func__", member), depth + 1)

    visit(inspect.unwrap(view), 0)
    names.discard("csrf_token")
    return sorted(names)


def _collect():
    """Routes and some real ids (a path segment that exists leads deeper into a view)."""
    folder = tempfile.mkdtemp(prefix="cnap-fuzz-collect-")
    app = create_app({**CONFIG, "INSTANCE_PATH": folder})
    try:
        routes = sorted({(rule.rule, method, tuple(_route_names(app.view_functions[rule.endpoint])))
                         for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}})
        catalogue = state(app).catalogue
        ids = ["default", "new", "kiosk.css", "tablet.js"]
        for attr in ("services", "packages", "categories", "branches"):
            items = getattr(catalogue, attr, None) or ()
            items = list(items.values()) if hasattr(items, "values") else list(items)
            ids += [str(getattr(item, "id", item)) for item in items[:2]]
        return routes, ids
    finally:
        close_app(app)
        shutil.rmtree(folder, ignore_errors=True)


ROUTES, REAL_IDS = _collect()
FIELDS = _field_names()
# Keys the survey API and the agent's API read from their JSON bodies (answers, batches, shift
# starts, forwarded UUIDs, the out-of-service switch).
JSON_KEYS = sorted({key for path in (SOURCE / "surveys" / "store.py", SOURCE / "views" / "survey.py",
                                     SOURCE / "views" / "internal.py")
                    for key in re.findall(r"""\bget\(\s*["']([a-z_]+)["']""", path.read_text())})

NUMBERS = ["0", "1", "2", "5", "-1", "00", "+1", " 1", "1 ", "1.5", "1e3", "1_0", "0x1f", "9" * 19, "9" * 30,
           "1" * 5000, "²", "³", "٣", "١٢", "१", "１２", "𝟙", "½", "Ⅻ", "①", "\u202e1", "1\x00"]
DATES = ["0001-01-01", "9999-12-31", "0001-01-31", "9999-12-01", "2026-02-29", "2026-13-01", "2026-01-01",
         "2026-1-1", "20260101", "２０２６-01-01", "2026-01-01T10:00"]
WORDS = ["genuine", "excluded", "summary", "answers", "admin", "cashier", "manager", "technician", "add", "set_pin",
         "deactivate", "activate", "larger", "smaller", "contrast", "cash", "card", "voucher", "x", "z", "uk", "en",
         "desk", "branch", "admin", "central", "week", "month", "day", "new", "default", "true", "null", "NaN", "inf"]
TEXT = ["", "\u202e", "\u2066x\u2069", "\u200b", "\ufeff", "\x00", "a\x00b", "../../etc/passwd", "..", "/",
        "//evil.example/", "javascript:alert(1)", "<script>x</script>", "%00", "%", "x" * 100_000, "я" * 3000]
text_value = st.one_of(
    st.sampled_from(NUMBERS), st.sampled_from(DATES), st.sampled_from(WORDS + REAL_IDS), st.sampled_from(TEXT),
    st.text(max_size=40), st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    st.text(st.characters(categories=("Nd", "No", "Nl", "Cf", "Cc", "Zs", "Zl")), max_size=8),
)
field_name = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))


def fields_for(names) -> st.SearchStrategy[dict]:
    """The route's own parameters, each present or not, plus a few others."""
    own = st.fixed_dictionaries({}, optional={name: text_value for name in names})
    return st.tuples(own, st.dictionaries(field_name, text_value, max_size=3)).map(lambda t: {**t[1], **t[0]})


json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text_value)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.one_of(st.sampled_from(FIELDS + JSON_KEYS),
                                                            st.text(max_size=10)), inner, max_size=5)),
    max_leaves=25)
answer = st.fixed_dictionaries({}, optional={key: st.one_of(json_scalar, json_value) for key in JSON_KEYS})
batch = st.fixed_dictionaries({}, optional={"sent_at": json_scalar, "answers": st.lists(answer, max_size=4),
                                            "pin": json_scalar})
raw_json = st.one_of(st.just("[" * 50_000 + "]" * 50_000), st.just('{"pin": NaN}'), st.just("{"),
                     st.just('{"answers": ' + "[" * 30 + "]" * 30 + "}"), st.binary(max_size=200).map(bytes.hex))
file_upload = st.tuples(st.one_of(st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 32), st.binary(max_size=300),
                                  st.just(b"id: x\n").map(bytes), st.just("питання: ²\n".encode())),
                        st.one_of(st.sampled_from(["a.png", "a.yaml", "a.json", "a.webm", "a", "../a.png", ""]),
                                  st.text(max_size=20)))


def build_path(rule: str, draw) -> str:
    def segment(match: re.Match) -> str:
        converter = match.group(1) or "default"
        if converter == "int":
            value = draw(st.one_of(st.from_regex(r"[0-9]{1,25}", fullmatch=True), st.sampled_from(NUMBERS),
                                   text_value))
        else:
            value = draw(st.one_of(st.sampled_from(REAL_IDS), text_value))
        return quote(value, safe="/" if converter == "path" else "")
    return _PLACEHOLDER.sub(segment, rule)


class ServerErrors(logging.Handler):
    """Collects what the app logs as unhandled (its 500 handler logs the traceback)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(self.format(record))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = create_app({**CONFIG, "INSTANCE_PATH": str(tmp_path_factory.mktemp("fuzz") / "instance")})
    errors = ServerErrors()
    app.logger.addHandler(errors)
    app.extensions["fuzz_errors"] = errors
    yield app
    app.logger.removeHandler(errors)
    close_app(app)


@pytest.mark.parametrize("rule,method,names", ROUTES, ids=[f"{m} {r}" for r, m, _ in ROUTES])
def test_no_input_gives_a_server_error(fuzz_app, rule, method, names):
    app = fuzz_app
    fields = fields_for(names)
    _, tablet_token = register_tablet(app)
    agent_token = ensure_token(token_path(app.config))

    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(data=st.data())
    def one_request(data):
        client = FlaskClient(app, app.response_class, use_cookies=True)
        who = data.draw(st.sampled_from(["staff", "staff", "anonymous", "tablet", "agent"]), label="who")
        headers = {}
        if who == "staff":
            log_in_admin(client)
        if who == "tablet":
            headers["Authorization"] = f"Bearer {tablet_token}"
        if who == "agent":
            headers["Authorization"] = f"Bearer {agent_token}"
        path = build_path(rule, data.draw)
        query = data.draw(fields, label="query")
        kwargs = {"query_string": query, "headers": headers}
        if method != "GET":
            token = csrf_token(client) if data.draw(st.booleans(), label="with csrf") or who == "staff" else None
            if token:
                headers["X-CSRFToken"] = token
            body = data.draw(st.sampled_from(["form", "multipart", "json", "raw json", "bytes", "none"]), label="body")
            if body in ("form", "multipart"):
                form = dict(data.draw(fields, label="form"))
                if token:
                    form["csrf_token"] = token
                if body == "multipart":
                    for name in data.draw(st.lists(st.sampled_from(["file", "upload", "source"]), max_size=2)):
                        content, filename = data.draw(file_upload, label="file")
                        form[name] = (io.BytesIO(content), filename)
                    kwargs["content_type"] = "multipart/form-data"
                kwargs["data"] = form
            elif body == "json":
                kwargs["json"] = data.draw(st.one_of(batch, json_value), label="json")
            elif body == "raw json":
                kwargs["data"] = data.draw(raw_json, label="raw json")
                kwargs["content_type"] = "application/json"
            elif body == "bytes":
                kwargs["data"] = data.draw(st.binary(max_size=500), label="bytes")
                kwargs["content_type"] = data.draw(st.sampled_from(
                    ["application/octet-stream", "application/x-www-form-urlencoded", "multipart/form-data",
                     "multipart/form-data; boundary=x", "text/plain; charset=utf-7", "application/json"]))
        errors = app.extensions["fuzz_errors"].records
        errors.clear()
        response = client.open(path, method=method, **kwargs)
        response.get_data()  # a streamed body (CSV export) fails while it is read
        response.close()
        assert response.status_code != 500 and not errors, "\n".join(errors) or response.get_data(as_text=True)[:500]

    one_request()


# One value of each troublesome kind, in every parameter of every route, one at a time: random
# combinations above rarely put the one value a view chokes on into the one field that reads it.
TROUBLE = ["", "0", "-1", " 1", "²", "٣", "１２", "9" * 19, "9" * 30, "1" * 5000, "0001-01-01", "9999-12-31",
           "2026-13-01", "\x00", "\u202e", "x" * 100_000, "../x", "NaN", "1e999", "true"]


def _segments(rule: str) -> list[tuple[str, str]]:
    return [(m.group(1) or "default", m.group(2)) for m in _PLACEHOLDER.finditer(rule)]


def _path_with(rule: str, values: dict[str, str]) -> str:
    def segment(match: re.Match) -> str:
        converter, name = match.group(1) or "default", match.group(2)
        default = "1" if converter == "int" else (REAL_IDS[0] if REAL_IDS else "x")
        return quote(values.get(name, default), safe="/" if converter == "path" else "")
    return _PLACEHOLDER.sub(segment, rule)


@pytest.mark.parametrize("rule,method,names", ROUTES, ids=[f"{m} {r}" for r, m, _ in ROUTES])
def test_each_parameter_with_each_troublesome_value(fuzz_app, rule, method, names):
    app = fuzz_app
    errors = app.extensions["fuzz_errors"].records
    failures = []
    cases = [("path", name, value) for _, name in _segments(rule) for value in TROUBLE]
    cases += [("field", name, value) for name in names for value in TROUBLE]
    client = FlaskClient(app, app.response_class, use_cookies=True)
    # the agent's API answers its bearer token only: with it, the values reach the view code
    agent = {"Authorization": f"Bearer {ensure_token(token_path(app.config))}"} if rule.startswith("/internal/") else {}
    for where, name, value in cases:
        log_in_admin(client)
        token = csrf_token(client, "/service/login") if method != "GET" else None
        path = _path_with(rule, {name: value} if where == "path" else {})
        kwargs = {"headers": agent}
        if where == "field":
            kwargs["query_string"] = {name: value}
            if method != "GET":
                kwargs["data"] = {name: value, **({"csrf_token": token} if token else {})}
        elif token:
            kwargs["data"] = {"csrf_token": token}
        errors.clear()
        response = client.open(path, method=method, **kwargs)
        response.get_data()
        response.close()
        if response.status_code == 500 or errors:
            failures.append(f"{where} {name}={value[:20]!r}: {response.status_code}\n" + "\n".join(errors)[-1500:])
    assert not failures, "\n\n".join(failures)
