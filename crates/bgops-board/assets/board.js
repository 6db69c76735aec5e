// bgops board: follows the page's live stream (server-sent events) and updates the page.
// Values are written with textContent only, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const live = body.dataset.live;
  const base = body.dataset.base || "";
  const state = document.getElementById("live-state");
  if (!live || !window.EventSource) return;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function badge(status) {
    const s = el("span", status, "badge " + status);
    s.dataset.status = status;
    return s;
  }
  function setState(text, cls) {
    if (!state) return;
    state.textContent = text;
    state.className = cls;
  }

  const source = new EventSource(live);
  source.onopen = function () { setState("● live", "on"); };
  source.onerror = function () { setState("● reconnecting", "off"); };

  // Overview: counts, health, the latest sagas (re-rendered only when they change, so a
  // link is not replaced under the pointer at every update).
  let lastRecent = null;
  source.addEventListener("overview", function (msg) {
    const snap = JSON.parse(msg.data);
    const values = {
      health: snap.healthy ? "healthy" : "unreachable",
      latency_ms: snap.latency_ms === null ? "–" : snap.latency_ms.toFixed(2) + " ms",
      error: snap.error || "",
      idempotency_records: snap.idempotency_records === null ? "–" : snap.idempotency_records,
      locks: snap.locks === null ? "–" : snap.locks,
    };
    for (const [k, n] of snap.counts) values[k] = n;
    document.querySelectorAll("[data-k]").forEach(function (e) {
      const v = values[e.dataset.k];
      if (v !== undefined && e.textContent !== String(v)) {
        e.textContent = String(v);
        e.classList.add("changed");
        setTimeout(function () { e.classList.remove("changed"); }, 1200);
      }
    });
    const recent = document.getElementById("recent");
    const recentJson = JSON.stringify(snap.recent);
    if (recent && recentJson !== lastRecent) {
      recent.replaceChildren();
      for (const s of snap.recent) {
        const tr = el("tr");
        const a = el("a", s.saga_id, "mono");
        a.href = base + "/sagas/" + encodeURIComponent(s.saga_id);
        const td = el("td"); td.appendChild(a); tr.appendChild(td);
        tr.appendChild(el("td", s.workflow_type));
        tr.appendChild(el("td", s.tenant_id));
        const st = el("td"); st.appendChild(badge(s.status)); tr.appendChild(st);
        tr.appendChild(el("td", s.updated_at));
        recent.appendChild(tr);
      }
    }
    lastRecent = recentJson;
  });

  // A saga's timeline: one SagaEvent per message.
  function detail(e) {
    switch (e.type) {
      case "step_started": case "compensation_started": return "attempt " + e.attempt;
      case "step_succeeded": return JSON.stringify(e.output);
      case "step_retrying": case "compensation_retrying":
        return "attempt " + e.attempt + " failed: " + e.error + "; retry in " + e.delay_ms + " ms";
      case "step_failed": case "compensation_failed": case "aborted": return e.error;
      case "compensating": return e.reason;
      default: return "";
    }
  }
  function rowClass(type) {
    if (type === "step_failed" || type === "compensation_failed" || type === "aborted") return "ev bad new";
    if (type === "step_retrying") return "ev warn new";
    if (type.indexOf("compensat") >= 0) return "ev comp new";
    return "ev new";
  }
  source.onmessage = function (msg) {
    const e = JSON.parse(msg.data);
    const timeline = document.querySelector("#timeline tbody");
    if (!timeline) return;
    const tr = el("tr", undefined, rowClass(e.type));
    tr.dataset.type = e.type;
    tr.appendChild(el("td", e.at));
    tr.appendChild(el("td", e.fence, "num"));
    tr.appendChild(el("td", e.type));
    tr.appendChild(el("td", e.step_index === undefined ? "" : e.step_index + " " + e.name));
    tr.appendChild(el("td", detail(e)));
    const st = el("td"); st.appendChild(badge(e.status)); tr.appendChild(st);
    timeline.appendChild(tr);
    const status = document.getElementById("saga-status");
    if (status) status.replaceChildren(badge(e.status));
    if (e.step_index !== undefined) {
      const step = document.querySelector('#steps tr[data-step="' + e.step_index + '"]');
      if (step) step.classList.add("touched");
    }
  };
  source.addEventListener("gone", function () {
    setState("● saga deleted", "off");
    source.close();
  });
  source.addEventListener("store-error", function (msg) {
    setState("● store error: " + msg.data, "off");
  });
})();
