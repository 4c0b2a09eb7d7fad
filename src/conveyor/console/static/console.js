// Conveyor's console: live updates by server-sent events, and a confirmation before every
// action. No framework; everything here is also usable without JavaScript (pages reload).
"use strict";

function live(element) {
  const url = element.dataset.live;
  if (!url || !window.EventSource) return;
  const source = new EventSource(url);
  // Only an element that says so takes HTML (the board, rendered and escaped by the server);
  // everything else (logs) takes text only.
  if (element.hasAttribute("data-live-html")) {
    source.addEventListener("replace", (event) => {
      element.innerHTML = event.data;
    });
  }
  // A log keeps its last `data-keep` lines, one text node each: a log followed for hours
  // does not grow the page without end.
  const keep = Number(element.dataset.keep || 0);
  if (keep) {
    const lines = element.textContent.split(/(?<=\n)/).filter((line) => line);
    element.replaceChildren(...lines.slice(-keep).map((line) => document.createTextNode(line)));
  }
  source.addEventListener("append", (event) => {
    const atEnd = element.scrollTop + element.clientHeight >= element.scrollHeight - 4;
    element.appendChild(document.createTextNode(event.data + "\n"));
    while (keep && element.childNodes.length > keep) element.firstChild.remove();
    if (atEnd) element.scrollTop = element.scrollHeight;
  });
  source.addEventListener("state", (event) => {
    const state = document.getElementById("state");
    if (state) {
      const [name, ...rest] = event.data.split(": ");
      state.className = "state " + name;
      state.textContent = event.data;
    }
  });
  source.addEventListener("done", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(live);
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.dataset && form.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
});
