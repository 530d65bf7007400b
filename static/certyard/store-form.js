// The add-store form: show only the chosen store type's properties, and beside the path
// the type's example and the chosen orchestrator's store roots. Without this script every
// type's group shows and the server still uses only the chosen type's; the path is
// checked by the server either way (the agent's own rule and message).
(function () {
  "use strict";

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) { return {}; }
    try { return JSON.parse(node.textContent) || {}; } catch (e) { return {}; }
  }

  function init() {
    var form = document.querySelector("form[data-store-form]");
    if (!form) { return; }
    var typeSelect = form.querySelector("select[name=store_type]");
    var orchestratorSelect = form.querySelector("select[name=orchestrator]");
    var context = document.getElementById("store-path-context");
    var roots = readJson("store-roots-data");
    var hints = readJson("store-path-hints");
    var groups = form.querySelectorAll("fieldset[data-store-type]");

    function showGroups() {
      var chosen = typeSelect ? typeSelect.value : "";
      groups.forEach(function (group) {
        var on = group.getAttribute("data-store-type") === chosen;
        group.hidden = !on;
        // A hidden group's fields are not sent: the server ignores them anyway, and an
        // error in a field nobody sees would block the form.
        group.disabled = !on;
      });
    }

    function showContext() {
      if (!context) { return; }
      var parts = [];
      var hint = typeSelect ? hints[typeSelect.value] : "";
      if (hint) { parts.push("For example: " + hint + "."); }
      if (orchestratorSelect && orchestratorSelect.value) {
        var name = orchestratorSelect.options[orchestratorSelect.selectedIndex].text;
        var known = roots[orchestratorSelect.value];
        if (known === null || known === undefined) {
          parts.push(name + " has not reported its store roots (an older agent): only an absolute path without '..' is checked here.");
        } else if (known.length === 0) {
          parts.push(name + " has no store roots configured: its agent refuses every store.");
        } else {
          parts.push(name + " may read stores under: " + known.join(", ") + ".");
        }
      }
      context.textContent = parts.join(" ");  // text, never markup: names and roots are the agent's
    }

    if (typeSelect) {
      typeSelect.addEventListener("change", function () { showGroups(); showContext(); });
    }
    if (orchestratorSelect) { orchestratorSelect.addEventListener("change", showContext); }
    showGroups();
    showContext();
    var note = form.querySelector("[data-testid=properties-note]");
    if (note) { note.hidden = true; }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
