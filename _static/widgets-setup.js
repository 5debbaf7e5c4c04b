// Loaded before require.js on pages with widget snapshots (nb_ipywidgets_js in _config.yml).

// RequireJS takes a global `require` object as its configuration. Mapping the html-manager's module
// path to the vendored copy makes the manager fetch its fonts from _static/vendor/, not from a path
// relative to the page.
var require = {
  paths: {
    "@jupyter-widgets/html-manager/dist": new URL("vendor", document.currentScript.src).href,
  },
};

// The widgets typeset their labels through the MathJax 2 API (MathJax.Hub.Queue); the book loads
// MathJax 3. Translate, once MathJax 3 has replaced its configuration object (deferred script).
document.addEventListener("DOMContentLoaded", () => {
  const mathjax = window.MathJax;
  if (mathjax && mathjax.startup && !mathjax.Hub) {
    mathjax.Hub = {
      Queue: ([, , element]) => mathjax.startup.promise.then(() => mathjax.typesetPromise([element])),
    };
  }
});
