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

  // A fragment swapped into the dialog opens it; an empty swap closes it.
  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = modal();
    if (!dialog || event.detail.target !== dialog) { return; }
    if (dialog.innerHTML.trim() === "") {
      if (dialog.open) { dialog.close(); }
    } else if (!dialog.open) {
      dialog.showModal();
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
      if (row) { row.remove(); }
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

  // Clear the dialog when it closes, so stale forms never reappear.
  document.addEventListener("close", function (event) {
    if (event.target === modal()) { event.target.innerHTML = ""; }
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
