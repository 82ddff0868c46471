// Small glue the server-rendered pages need: confirmations and the shared <dialog>.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function modal() { return document.getElementById("modal"); }

  // Keyboard use of the shared <dialog> (WCAG 2.1.1, 2.4.3): focus moves into each step it shows, Tab
  // stays inside it, Escape closes it (the browser's own "cancel"), and focus goes back to what opened
  // it, found again by its id or htmx URL when a poll or a swap has replaced that element meanwhile.
  var FOCUSABLE = "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), " +
    "textarea:not([disabled]), summary, iframe, [tabindex]:not([tabindex='-1'])";
  var opener = null;   // what to focus when the dialog closes: {element, selector}
  var pendingReturn = null;

  function focusables(root) {
    return Array.prototype.filter.call(root.querySelectorAll(FOCUSABLE), function (el) {
      return el.getClientRects().length > 0 && !el.closest("[inert]");
    });
  }

  function describe(el) {
    // A selector that finds the same control again after htmx re-rendered it.
    if (!el || el === document.body) { return null; }
    if (el.id) { return "#" + CSS.escape(el.id); }
    var url = el.getAttribute("hx-get") || el.getAttribute("hx-post");
    if (url) {
      return "[" + (el.hasAttribute("hx-get") ? "hx-get" : "hx-post") + "=\"" + CSS.escape(url) + "\"]";
    }
    return null;
  }

  function rememberOpener(el) {
    opener = { element: el, selector: describe(el) };
  }

  function focusInto(dialog) {
    // The step's [autofocus] field first, then a field with an error, its first field, any control but the ✕.
    var all = focusables(dialog);
    var body = all.filter(function (el) { return !el.closest(".modal-head"); });
    var fields = body.filter(function (el) { return el.matches("input, select, textarea"); });
    var invalid = fields.filter(function (el) {
      return el.getAttribute("aria-invalid") === "true" || el.closest(".has-error");
    })[0];
    var auto = body.filter(function (el) { return el.hasAttribute("autofocus"); })[0];
    var target = auto || invalid || fields[0] || body[0] || all[0];
    if (target) { target.focus(); }
  }

  function returnFocus() {
    var el = pendingReturn.element;
    if (!el || !el.isConnected) {
      el = pendingReturn.selector ? document.querySelector(pendingReturn.selector) : null;
    }
    if (el && el.getClientRects().length) { el.focus(); }
  }

  // Remember what asked for a dialog that is not open yet, before the request replaces anything.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var dialog = modal();
    if (!dialog || dialog.open || event.detail.target !== dialog) { return; }
    var active = document.activeElement;
    rememberOpener(active && active !== document.body && !dialog.contains(active) ? active : event.detail.elt);
  });

  // A fragment swapped into the dialog opens it; an empty swap closes it.
  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = modal();
    if (!dialog || event.detail.target !== dialog) { return; }
    if (dialog.innerHTML.trim() === "") {
      if (dialog.open) { dialog.close(); }
    } else if (!dialog.open) {
      if (!opener) { rememberOpener(document.activeElement); }
      dialog.showModal();
    }
  });

  // Tab and Shift+Tab wrap around inside the open dialog instead of leaving it.
  document.addEventListener("keydown", function (event) {
    var dialog = modal();
    if (event.key !== "Tab" || !dialog || !dialog.open) { return; }
    var all = focusables(dialog);
    if (!all.length) { return; }
    var first = all[0], last = all[all.length - 1];
    var inside = dialog.contains(document.activeElement);
    if (event.shiftKey && (document.activeElement === first || !inside)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
      event.preventDefault();
      first.focus();
    }
  });

  // Once a step has settled in the dialog (after htmx's own [autofocus]), the focus goes into it. After a
  // swap that replaced the opener of a closed dialog (a saved step re-renders its section), focus its successor.
  document.addEventListener("htmx:afterSettle", function (event) {
    var dialog = modal();
    if (dialog && dialog.open && event.detail.target === dialog) {
      focusInto(dialog);
    } else if (pendingReturn && !(dialog && dialog.open)) {
      var lost = !document.activeElement || document.activeElement === document.body;
      if (lost && Date.now() < pendingReturn.until) { returnFocus(); }
      pendingReturn = null;
    }
  });

  // The server can close the dialog with the HX-Trigger header "closeModal" (it bubbles to document).
  document.addEventListener("closeModal", function () {
    var dialog = modal();
    if (dialog && dialog.open) { dialog.close(); }
  });

  // The trash icon on a mapping row removes just that row; nothing is saved until "Finish".
  document.addEventListener("click", function (event) {
    var trash = event.target.closest && event.target.closest("[data-remove-row]");
    if (trash) {
      var row = trash.closest(".mapping-row");
      if (!row) { return; }
      // The focus was on the trash icon: it goes to the row that takes this one's place.
      var neighbour = row.nextElementSibling && row.nextElementSibling.matches(".mapping-row") ? row.nextElementSibling
        : row.previousElementSibling && row.previousElementSibling.matches(".mapping-row") ? row.previousElementSibling : null;
      var hadFocus = row.contains(document.activeElement);
      row.remove();
      var dialog = modal();
      if (hadFocus && neighbour && focusables(neighbour).length) { focusables(neighbour)[0].focus(); }
      else if (hadFocus && dialog && dialog.open) { focusInto(dialog); }
    }
  });

  // "Copy" next to a value (a webhook URL): onto the clipboard, and the button says so for a moment.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    });
  });

  document.addEventListener("click", function (event) {
    var closer = event.target.closest && event.target.closest("[data-close-modal]");
    if (closer) {
      var dialog = modal();
      if (dialog && dialog.open) { dialog.close(); }
    }
  });

  // Clear the dialog when it closes, so stale forms never reappear, and give the focus back.
  document.addEventListener("close", function (event) {
    if (event.target !== modal()) { return; }
    event.target.innerHTML = "";
    pendingReturn = opener || { element: null, selector: null };
    pendingReturn.until = Date.now() + 2000;  // a swap answering the same request may still replace it
    opener = null;
    returnFocus();
  }, true);
})();

// Personalization tag picker: a click inserts the tag at the cursor of the field last focused
// (the email body when none was), so the marketer never retypes %STRIPE_INVOICE_URL%.
(function () {
  "use strict";
  var lastField = null;

  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-tag-target]")) { lastField = event.target; }
  });

  document.addEventListener("click", function (event) {
    var chip = event.target.closest && event.target.closest("[data-insert-tag]");
    if (!chip) { return; }
    var form = chip.closest("form") || document;
    var field = lastField && document.contains(lastField) && form.contains(lastField) ? lastField
      : form.querySelector("[data-tag-target-default]");
    if (!field) { return; }
    var tag = chip.getAttribute("data-insert-tag");
    var start = typeof field.selectionStart === "number" ? field.selectionStart : field.value.length;
    var end = typeof field.selectionEnd === "number" ? field.selectionEnd : start;
    field.value = field.value.slice(0, start) + tag + field.value.slice(end);
    field.focus();
    field.setSelectionRange(start + tag.length, start + tag.length);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
