/* The widget manager (@jupyter-widgets/html-manager 1.0.6) typesets widget labels with the MathJax 2 call
   MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3, which has no Hub, so every widget
   raised "Cannot read properties of undefined (reading 'Queue')". This maps that one call onto MathJax 3. */
(function () {
  function install() {
    var mj = window.MathJax;
    if (!mj || mj.Hub) { return; }
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (!Array.isArray(job) || job[0] !== "Typeset") { return; }
          var ready = (window.MathJax.startup && window.MathJax.startup.promise) || Promise.resolve();
          ready.then(function () {
            if (window.MathJax.typesetPromise) { return window.MathJax.typesetPromise(job[2] ? [job[2]] : undefined); }
          }).catch(function () { /* a label that is not TeX stays as text */ });
        });
      }
    };
  }
  install();
  document.addEventListener("DOMContentLoaded", install);
  window.addEventListener("load", install);
})();
