// Starts Swagger UI on a gateway docs page (gateway/http/swagger.py). The page's #swagger-ui
// element names the OpenAPI document (data-url). On the page of a private API a form asks for
// an API key first: it is sent, as X-API-Key, with the request for the document, and
// pre-authorizes the document's ApiKey scheme for "Try it out". It stays in this page's
// memory: nothing is stored, and no address holds it. A key refused asks again.
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  const documentUrl = new URL(root.dataset.url, location.href).href;
  const form = document.getElementById("wasmgate-key");
  let key = "";

  function start() {
    const ui = SwaggerUIBundle({
      url: documentUrl,
      dom_id: "#swagger-ui",
      validatorUrl: null,
      persistAuthorization: false,
      requestInterceptor: function (request) {
        if (request.loadSpec && key) {
          request.headers["X-API-Key"] = key;
        }
        return request;
      },
      responseInterceptor: function (response) {
        if (form !== null && response.url === documentUrl && !response.ok) {
          form.querySelector("output").value = "That key was refused (" + response.status + ").";
          form.hidden = false;
        }
        return response;
      },
      onComplete: function () {
        if (key) {
          ui.preauthorizeApiKey("ApiKey", key);
        }
      },
    });
    window.ui = ui;
  }

  if (form === null) {
    start();
    return;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    key = form.elements.key.value;
    form.hidden = true;
    start();
  });
})();
