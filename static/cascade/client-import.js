// Progress while the client file uploads; without JavaScript the form posts as usual.
(function () {
  "use strict";

  if (!window.FormData || !window.DOMParser) return;
  // On the document, not the form: the answer replaces the page's body (and with it the
  // form), while this script, loaded from <head>, runs once.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "import-form" || event.defaultPrevented) return;
    event.preventDefault();
    var box = document.getElementById("import-progress");
    var bar = box.querySelector("progress");
    var text = box.querySelector("span");
    var button = form.querySelector("button[type=submit]");
    box.hidden = false;
    button.disabled = true;
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.round((100 * e.loaded) / e.total);
      bar.value = percent;
      text.textContent = interpolate(gettext("Uploading… %s%%"), [percent]);
    });
    xhr.upload.addEventListener("load", function () {
      bar.removeAttribute("value");  // indeterminate: the server is checking the rows
      text.textContent = gettext("Checking and importing…");
    });
    xhr.addEventListener("load", function () {
      // The answer is a whole page (the result, or the errors): show it in place.
      var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
      document.title = page.title;
      document.body.replaceWith(page.body);
      window.scrollTo(0, 0);
    });
    xhr.addEventListener("error", function () {
      text.textContent = gettext("The upload failed; check the connection and try again.");
      button.disabled = false;
    });
    xhr.send(new FormData(form));
  });
})();
