// The campaign builder: the live audience count, and the segment or list fields for the
// chosen audience. The count's URL comes from the form's data-count-url.
(function () {
  "use strict";

  var form = document.getElementById("builder");
  if (!form) return;
  cascadeLive(form, form.getAttribute("data-count-url"), document.getElementById("audience-count"));

  function showAudience() {
    var kind = form.querySelector("input[name=audience_kind]:checked");
    var list = kind && kind.value === "list";
    document.getElementById("segment-fields").hidden = list;
    document.getElementById("list-fields").hidden = !list;
  }
  form.addEventListener("change", showAudience);
  showAudience();
})();
