/* cnap-kiosk shared behaviour: idle reset (WCAG 2.2.1) and the on-screen keyboard.
   No inline scripts anywhere (the CSP forbids them); pages opt in through data- attributes. */
(function () {
  "use strict";

  // ---- Idle reset --------------------------------------------------------------------
  // After data-idle-timeout seconds without a touch, a warning counts down data-idle-warning
  // seconds (at least 20) with a large Continue button, then the kiosk forgets the visitor.
  // A page that must not be interrupted (money in flight) sets data-idle="off" on <body>.
  function setupIdle() {
    var body = document.body;
    var timeout = parseInt(body.dataset.idleTimeout || "90", 10) * 1000;
    var warning = Math.max(20, parseInt(body.dataset.idleWarning || "30", 10));
    var dialog = document.getElementById("idle-dialog");
    var text = document.getElementById("idle-body");
    var button = document.getElementById("idle-continue");
    if (!dialog || !button) return;
    var idleTimer = null, countdown = null, remaining = 0, lastFocus = null;

    function idleAllowed() { return body.dataset.idle !== "off"; }
    function schedule() {
      clearTimeout(idleTimer);
      if (idleAllowed()) idleTimer = setTimeout(warn, timeout);
    }
    // The catalogue (i18n.js) is in long before the first warning; until then the page's own
    // text, rendered with the full warning time, stays.
    function render() {
      if (window.cnapI18n && window.cnapI18n.loaded()) text.textContent = window.cnapI18n.gettext("idle.body", { seconds: remaining });
    }
    function warn() {
      if (!idleAllowed()) { schedule(); return; }
      remaining = warning;
      render();
      lastFocus = document.activeElement;
      dialog.hidden = false;
      button.focus();
      countdown = setInterval(function () {
        remaining -= 1;
        if (remaining <= 0) {
          clearInterval(countdown);
          resetVisitor();
          return;
        }
        render();
      }, 1000);
    }
    // The reset changes state (ends a payment, a staff session): a POST carrying the page's
    // CSRF token, never a plain navigation.
    function resetVisitor() {
      var form = document.createElement("form");
      form.method = "post";
      form.action = body.dataset.resetUrl;
      var meta = document.querySelector('meta[name="csrf-token"]');
      var token = document.createElement("input");
      token.type = "hidden";
      token.name = "csrf_token";
      token.value = meta ? meta.content : "";
      form.appendChild(token);
      document.body.appendChild(form);
      form.submit();
    }
    function stay() {
      clearInterval(countdown);
      dialog.hidden = true;
      if (lastFocus && lastFocus.focus) lastFocus.focus();
      schedule();
    }
    button.addEventListener("click", stay);
    ["pointerdown", "keydown", "input", "wheel", "touchstart"].forEach(function (name) {
      document.addEventListener(name, function () { if (dialog.hidden) schedule(); }, { passive: true });
    });
    // Pages may switch idle handling on and off as their state changes.
    new MutationObserver(schedule).observe(body, { attributes: true, attributeFilter: ["data-idle"] });
    window.cnapIdle = { reset: schedule, warnNow: warn };
    schedule();
  }

  // ---- On-screen keyboard -------------------------------------------------------------
  function setupKeyboard() {
    var osk = document.getElementById("osk");
    if (!osk) return;
    var target = null, shift = false;
    var layouts = Array.prototype.slice.call(osk.querySelectorAll(".osk-layout"));
    var letterLayouts = ["uk", "en"];
    var current = osk.dataset.lang === "en" ? "en" : "uk";
    var layoutName = osk.querySelector(".osk-layout-name");
    var shiftKey = osk.querySelector('[data-action="shift"]');

    function show(name) {
      current = name;
      layouts.forEach(function (l) { l.hidden = l.dataset.layout !== name; });
      if (layoutName) layoutName.textContent = name === "en" ? "ENG" : name === "uk" ? "УКР" : "123";
    }
    function open(input) {
      target = input;
      var wanted = input.dataset.osk;
      show(wanted === "digits" ? "digits" : (letterLayouts.indexOf(current) >= 0 ? current : "uk"));
      osk.hidden = false;
      // Room to scroll any field above the keyboard, whatever its height at this text size.
      document.documentElement.style.setProperty("--osk-room", osk.offsetHeight + "px");
      document.body.classList.add("osk-open");
      requestAnimationFrame(function () { reveal(input); });
    }
    // The field being typed into stays in view above the keyboard (with large text it would be
    // covered); main's bottom padding (the keyboard's own height) leaves room to scroll.
    function reveal(input) {
      if (osk.hidden) return;
      var room = osk.getBoundingClientRect().top;
      var box = input.getBoundingClientRect();
      var shift = box.top < 0 || box.height + 16 > room ? box.top - 8 : Math.max(0, box.bottom + 8 - room);
      if (shift) window.scrollBy(0, shift);
    }
    function close() { osk.hidden = true; document.body.classList.remove("osk-open"); }
    function emit() { target.dispatchEvent(new Event("input", { bubbles: true })); }
    function insert(text) {
      if (!target) return;
      var max = target.maxLength > 0 ? target.maxLength : Infinity;
      var start = target.selectionStart == null ? target.value.length : target.selectionStart;
      var end = target.selectionEnd == null ? target.value.length : target.selectionEnd;
      var next = target.value.slice(0, start) + text + target.value.slice(end);
      if (next.length > max) return;
      target.value = next;
      try { target.setSelectionRange(start + text.length, start + text.length); } catch (e) { /* type=number */ }
      emit();
    }
    function backspace() {
      if (!target) return;
      var start = target.selectionStart == null ? target.value.length : target.selectionStart;
      var end = target.selectionEnd == null ? target.value.length : target.selectionEnd;
      if (start === end && start > 0) start -= 1;
      target.value = target.value.slice(0, start) + target.value.slice(end);
      try { target.setSelectionRange(start, start); } catch (e) { /* type=number */ }
      emit();
    }

    function wants(el) { return el && el.matches && el.matches("input[data-osk], textarea[data-osk]"); }
    document.addEventListener("focusin", function (ev) { if (wants(ev.target)) open(ev.target); });
    // A field focused before this script ran (autofocus), or tapped again after "Hide".
    document.addEventListener("click", function (ev) { if (wants(ev.target) && osk.hidden) open(ev.target); });
    if (wants(document.activeElement)) open(document.activeElement);
    // Keep focus (and the caret) in the field while keys are pressed.
    osk.addEventListener("mousedown", function (ev) { ev.preventDefault(); });
    osk.addEventListener("click", function (ev) {
      var key = ev.target.closest(".osk-key");
      if (!key) return;
      if (key.dataset.key) {
        insert(shift ? key.dataset.key.toUpperCase() : key.dataset.key);
        if (shift) { shift = false; shiftKey.setAttribute("aria-pressed", "false"); }
      } else {
        switch (key.dataset.action) {
          case "space": insert(" "); break;
          case "backspace": backspace(); break;
          case "clear": if (target) { target.value = ""; emit(); } break;
          case "shift": shift = !shift; shiftKey.setAttribute("aria-pressed", String(shift)); break;
          case "layout": show(current === "uk" ? "en" : current === "en" ? (target && target.dataset.osk === "digits" ? "digits" : "uk") : "uk"); break;
          case "hide": close(); break;
        }
      }
      if (target && key.dataset.action !== "hide") target.focus();
    });
    document.querySelectorAll("[data-osk-toggle]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var input = document.getElementById(btn.dataset.oskToggle);
        if (osk.hidden && input) { input.focus(); open(input); } else { close(); }
      });
    });
    window.cnapKeyboard = { open: open, close: close, show: show };
  }

  // No pinch zoom on a public kiosk (WebKit cannot switch it off): the text-size control is
  // the accessible way to enlarge, and it reflows instead of panning.
  function blockPinch(ev) { if (ev.touches && ev.touches.length > 1) ev.preventDefault(); }
  document.addEventListener("touchstart", blockPinch, { passive: false });
  document.addEventListener("touchmove", blockPinch, { passive: false });
  document.addEventListener("gesturestart", function (ev) { ev.preventDefault(); });

  // A table wider than the screen scrolls inside its .table-scroll wrapper; a keyboard user
  // (service mode on a desk PC) reaches that scroll only if the wrapper can take focus.
  function markScrollableTables() {
    document.querySelectorAll(".table-scroll").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
      else box.removeAttribute("tabindex");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupIdle();
    setupKeyboard();
    markScrollableTables();
    window.addEventListener("resize", markScrollableTables);
  });
})();
