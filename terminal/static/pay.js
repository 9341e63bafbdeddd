/* Fee payment screens. No inline scripts (CSP); the server computes every amount, this file
   only shows what the status endpoint says. Live progress is a long poll: the server answers
   as soon as the payment changes, so a credited bill shows within a few milliseconds. */
(function () {
  "use strict";

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el && el.textContent !== text) el.textContent = text;
  }
  function show(id, visible) {
    var el = document.getElementById(id);
    if (el) el.hidden = !visible;
  }

  // Forms marked data-once submit once: a second tap is ignored (the server also refuses it).
  function guardForms() {
    document.querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (form.dataset.sent) { ev.preventDefault(); return; }
        form.dataset.sent = "1";
        // keep the clicked button's name/value: disable the buttons only after the submit
        setTimeout(function () {
          form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
        }, 0);
      });
    });
  }

  // The payer form: the number field's keyboard follows the document kind.
  function payerForm() {
    var input = document.getElementById("id_value");
    if (!input) return;
    document.querySelectorAll('input[name="id_kind"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        var passport = radio.value === "passport" && radio.checked;
        input.dataset.osk = passport ? "text" : "digits";
        input.inputMode = passport ? "text" : "numeric";
      });
    });
    var errors = document.getElementById("pay-errors");
    if (errors) errors.focus();
  }

  function progress() {
    var box = document.getElementById("pay-progress");
    if (!box) return;
    var url = box.dataset.statusUrl;
    var version = parseInt(box.dataset.version || "0", 10);
    var stopped = false;

    function render(s) {
      setText("pay-total", s.total);
      setText("pay-credited", s.credited);
      setText("pay-remaining", s.remaining);
      setText("pay-message", s.message);
      setText("pay-fault", s.fault);
      show("pay-fault", !!s.fault);
      setText("pay-card-error", s.card_error);
      show("pay-card-error", !!s.card_error);
      setText("pay-bills", s.bills.length ? window.cnapI18n.gettext("pay.bills") + ": " + s.bills.join(", ") : "");
      show("pay-retry", s.status === "new");
      show("pay-cancel-form", !s.final && s.status !== "card");
      // only on a change: every write restarts kiosk.js's idle timer (MutationObserver), and a
      // status answer arrives at least every long-poll period, so the idle reset would never come
      var idle = s.idle_ok ? "on" : "off";
      if (document.body.dataset.idle !== idle) document.body.dataset.idle = idle;
      box.dataset.credited = String(s.credited_kop);
      if (s.done && s.next_url) {
        stopped = true;
        window.location.assign(s.next_url);
      }
    }

    function poll() {
      if (stopped) return;
      var request = new XMLHttpRequest();
      request.open("GET", url + "?since=" + version);
      request.setRequestHeader("Accept", "application/json");
      request.timeout = 15000;
      request.onload = function () {
        if (request.status === 200) {
          var s = JSON.parse(request.responseText);
          version = s.version;
          render(s);
          setTimeout(poll, 0);
        } else {
          setTimeout(poll, 500);
        }
      };
      request.onerror = request.ontimeout = function () { setTimeout(poll, 500); };
      request.send();
    }
    // The first status is rendered with the page's catalogue (the bills label); i18n.js has it
    // from the browser cache at once, and polling starts anyway should it fail.
    window.cnapI18n.ready.then(poll);

    // Cancel without leaving the page: the answer is the new status.
    var form = document.getElementById("pay-cancel-form");
    if (form) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var button = document.getElementById("pay-cancel");
        if (button) button.disabled = true;
        var request = new XMLHttpRequest();
        request.open("POST", form.action);
        request.setRequestHeader("Accept", "application/json");
        // The CSRF token the server checks: the form's own hidden field, and the page's meta tag.
        var meta = document.querySelector('meta[name="csrf-token"]');
        if (meta) request.setRequestHeader("X-CSRFToken", meta.content);
        request.onload = function () {
          if (button) button.disabled = false;
          if (request.status === 200) render(JSON.parse(request.responseText));
        };
        request.send(new FormData(form));
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    guardForms();
    payerForm();
    progress();
  });
})();
