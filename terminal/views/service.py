"""Service mode: staff log in with a PIN; each area adds its sections for the roles it trusts;
every action is written to the audit log.

Other blueprints use:
    from terminal.views.service import register_section, require_role, audit
    register_section(app, "pay.encashment", "service.section.encashment", roles=("cashier", "admin"))
    @require_role("cashier", "admin")
    def encashment(): ...; audit("encashment.done", cassette=...)
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from flask import (Blueprint, Flask, abort, current_app, g, redirect, render_template, request,
                   session, url_for)

from terminal import i18n
from terminal.staff import ROLES, StaffMember, StaffStore

bp = Blueprint("service", __name__, url_prefix="/service")

i18n.register({
    "service.title": ("Сервісний режим", "Service mode"),
    "service.login.prompt": ("Введіть PIN-код працівника", "Enter your staff PIN"),
    "service.login.pin": ("PIN-код", "PIN"),
    "service.login.submit": ("Увійти", "Log in"),
    "service.login.wrong": ("Неправильний PIN-код.", "Wrong PIN."),
    "service.login.locked": ("Забагато спроб. Зачекайте {seconds} с.", "Too many attempts. Wait {seconds} s."),
    "service.logout": ("Вийти з сервісного режиму", "Leave service mode"),
    "service.logged_in_as": ("Ви увійшли як: {role}", "Logged in as: {role}"),
    "service.sections": ("Розділи", "Sections"),
    "service.no_sections": ("Для вашої ролі розділів немає.", "No sections for your role."),
    "service.section.audit": ("Журнал дій працівників", "Staff audit log"),
    "service.audit.when": ("Коли", "When"),
    "service.audit.who": ("Хто", "Who"),
    "service.audit.action": ("Дія", "Action"),
    "service.audit.detail": ("Подробиці", "Details"),
    "service.section.staff": ("Працівники та PIN-коди", "Staff and PINs"),
    "service.staff.name": ("Ім'я", "Name"),
    "service.staff.role": ("Роль", "Role"),
    "service.staff.state": ("Стан", "State"),
    "service.staff.active": ("активний", "active"),
    "service.staff.inactive": ("вимкнений", "inactive"),
    "service.staff.new_pin": ("Новий PIN-код (4–12 цифр)", "New PIN (4–12 digits)"),
    "service.staff.set_pin": ("Змінити PIN", "Change PIN"),
    "service.staff.deactivate": ("Вимкнути", "Deactivate"),
    "service.staff.activate": ("Увімкнути", "Activate"),
    "service.staff.add": ("Додати працівника", "Add a staff member"),
    "service.staff.saved": ("Збережено.", "Saved."),
    "service.staff.bad_pin": ("PIN-код має містити від 4 до 12 цифр.", "A PIN must have 4 to 12 digits."),
    "service.staff.pin_taken": ("Такий PIN-код уже має інший працівник.", "Another staff member has this PIN."),
    "service.staff.bad_name": ("Вкажіть ім'я (до 60 символів).", "Enter a name (up to 60 characters)."),
    "service.staff.last_admin": ("Останнього адміністратора вимкнути не можна.", "The last administrator cannot be deactivated."),
    "service.forbidden": ("Ця дія недоступна для вашої ролі.", "Your role cannot do this."),
    "role.admin": ("адміністратор", "administrator"),
    "role.cashier": ("касир", "cashier"),
    "role.technician": ("технік", "technician"),
    "role.manager": ("керівник", "manager"),
})


@dataclass(frozen=True)
class Section:
    endpoint: str
    title_key: str
    roles: tuple[str, ...]
    order: int


def init_app(app: Flask) -> None:
    path = os.path.join(app.instance_path, app.config["SERVICE_DB"])
    store = StaffStore(path)
    store.seed(app.config["SERVICE_PINS"])
    app.extensions["cnap_staff"] = store
    app.extensions["cnap_service_sections"] = []
    register_section(app, "service.staff", "service.section.staff", roles=("admin",), order=890)
    register_section(app, "service.audit_log", "service.section.audit", roles=("admin",), order=900)


def register_section(app: Flask, endpoint: str, title_key: str, roles=("admin",), order: int = 100) -> None:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)} for {endpoint}")
    app.extensions["cnap_service_sections"].append(Section(endpoint, title_key, tuple(roles), order))


def staff_store() -> StaffStore:
    return current_app.extensions["cnap_staff"]


def current_staff() -> StaffMember | None:
    data = session.get("staff")
    if not data:
        return None
    if time.time() - data.get("seen", 0) > current_app.config["SERVICE_SESSION_S"]:
        session.pop("staff", None)
        return None
    data["seen"] = time.time()
    session["staff"] = data
    return StaffMember(data["id"], data["name"], data["role"])


def audit(action: str, **detail) -> None:
    staff_store().audit(current_staff(), action, **detail)


def require_role(*roles: str):
    """Service-mode views: log in first; admin may do everything."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            staff = current_staff()
            if staff is None:
                return redirect(url_for("service.login", next=request.path))
            if staff.role not in roles and staff.role != "admin":
                staff_store().audit(staff, "forbidden", endpoint=request.endpoint)
                abort(403)
            g.staff = staff
            return view(*args, **kwargs)
        return wrapper
    return decorator


@bp.get("/")
def index():
    staff = current_staff()
    if staff is None:
        return redirect(url_for("service.login"))
    g.staff = staff
    sections = sorted((s for s in current_app.extensions["cnap_service_sections"]
                       if staff.role in s.roles or staff.role == "admin"), key=lambda s: s.order)
    return render_template("service/index.html", staff=staff, sections=sections)


@bp.route("/login", methods=["GET", "POST"])
def login():
    store = staff_store()
    message = None
    if request.method == "POST":
        locked = store.locked_for()
        pin = request.form.get("pin", "").strip()
        staff = None if locked else store.authenticate(pin)
        if staff:
            session["staff"] = {"id": staff.id, "name": staff.name, "role": staff.role, "seen": time.time()}
            store.audit(staff, "login")
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/service") else url_for("service.index"))
        store.audit(None, "login.failed")
        locked = store.locked_for()
        message = (i18n.gettext("service.login.locked", seconds=locked) if locked
                   else i18n.gettext("service.login.wrong"))
    return render_template("service/login.html", message=message), (401 if message else 200)


@bp.post("/logout")
def logout():
    staff = current_staff()
    if staff:
        staff_store().audit(staff, "logout")
    session.pop("staff", None)
    return redirect(url_for("catalogue.home"))


@bp.get("/audit")
@require_role("admin")
def audit_log():
    return render_template("service/audit.html", entries=staff_store().audit_log())


@bp.route("/staff", methods=["GET", "POST"])
@require_role("admin")
def staff():
    store = staff_store()
    message, ok = None, False
    if request.method == "POST":
        action = request.form.get("action", "")
        pin = request.form.get("pin", "").strip()
        try:
            target = int(request.form.get("staff_id", "0") or 0)
        except ValueError:
            abort(400)
        if action in ("add", "set_pin") and not (pin.isdigit() and 4 <= len(pin) <= 12):
            message = "service.staff.bad_pin"
        elif action in ("add", "set_pin") and store.pin_in_use(pin, except_id=target or None):
            message = "service.staff.pin_taken"
        elif action == "add":
            name = " ".join(request.form.get("name", "").split())
            role = request.form.get("role", "")
            if not name or len(name) > 60 or role not in ROLES:
                message = "service.staff.bad_name"
            else:
                member = store.add(name, role, pin)
                audit("staff.add", staff_id=member.id, role=role)
                message, ok = "service.staff.saved", True
        elif action == "set_pin":
            try:
                store.set_pin(target, pin)
            except ValueError:
                abort(404)
            audit("staff.set_pin", staff_id=target)
            message, ok = "service.staff.saved", True
        elif action in ("activate", "deactivate"):
            try:
                store.set_active(target, action == "activate")
            except ValueError as exc:
                if "no such" in str(exc):
                    abort(404)
                message = "service.staff.last_admin"
            else:
                audit(f"staff.{action}", staff_id=target)
                message, ok = "service.staff.saved", True
        else:
            abort(400)
    return render_template("service/staff.html", members=store.members(), roles=ROLES,
                           message=message, ok=ok), (200 if ok or message is None else 400)
