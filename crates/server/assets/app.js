// Mobius web UI: live step logs over Server-Sent Events, ANSI colours, foldable groups.
// No framework and no build step; the page works without it, this only adds liveness.
"use strict";

const ANSI = /\x1b\[([0-9;]*)m/g;

// Appends one log line to `target`, turning SGR escape codes into styled spans.
function appendLine(target, text) {
  const line = document.createElement("div");
  line.className = "line";
  const stamp = /^(\d{4}-\d\d-\d\dT[0-9:.]+Z) /.exec(text);
  if (stamp) {
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = stamp[1].slice(11, 19) + " ";
    line.appendChild(time);
    text = text.slice(stamp[0].length);
  }
  let classes = [];
  let last = 0;
  const flush = (upto) => {
    if (upto > last) {
      const span = document.createElement("span");
      if (classes.length) span.className = classes.join(" ");
      span.textContent = text.slice(last, upto);
      line.appendChild(span);
    }
  };
  for (const match of text.matchAll(ANSI)) {
    flush(match.index);
    last = match.index + match[0].length;
    const codes = match[1] === "" ? [0] : match[1].split(";").map(Number);
    for (const code of codes) {
      if (code === 0) classes = [];
      else if (code === 1) classes.push("bold");
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) {
        classes = classes.filter((c) => !c.startsWith("fg")).concat("fg" + code);
      }
    }
  }
  flush(text.length);
  target.appendChild(line);
}

// The element that receives lines for a step: its log, or the open group inside it.
function sink(log) {
  return log.__group || log;
}

function appendLines(log, lines) {
  for (const raw of lines.split("\n")) {
    if (raw === "") continue;
    const body = raw.replace(/^\d{4}-\d\d-\d\dT[0-9:.]+Z /, "");
    if (body.startsWith("##[group]")) {
      const group = document.createElement("details");
      group.className = "group";
      const summary = document.createElement("summary");
      summary.textContent = body.slice(9);
      group.appendChild(summary);
      log.appendChild(group);
      log.__group = group;
    } else if (body.startsWith("##[endgroup]")) {
      log.__group = null;
    } else {
      appendLine(sink(log), raw);
    }
  }
}

function badge(el, state) {
  if (!el) return;
  el.className = "badge " + state;
  el.textContent = state;
}

// Finds (or creates) the elements of a step as the stream reports it.
function stepElements(data) {
  const key = data.job_id + "-" + data.number;
  let log = document.querySelector('[data-log="' + key + '"]');
  if (log) return { log, state: document.querySelector('[data-step-state="' + key + '"]') };
  let job = document.querySelector('[data-job-id="' + data.job_id + '"]');
  if (!job) {
    job = document.createElement("details");
    job.className = "job";
    job.open = true;
    job.dataset.jobId = data.job_id;
    job.innerHTML = '<summary><span class="badge in_progress">in_progress</span> </summary>';
    job.querySelector("summary").append(data.job);
    document.querySelector("section.jobs").appendChild(job);
  }
  const step = document.createElement("details");
  step.className = "step";
  step.dataset.step = key;
  step.innerHTML = '<summary><span class="badge in_progress" data-step-state="' + key + '">in_progress</span> </summary><div class="log" data-log="' + key + '"></div>';
  step.querySelector("summary").append(data.step);
  job.appendChild(step);
  return { log: step.querySelector(".log"), state: step.querySelector("[data-step-state]") };
}

function follow(live) {
  const source = new EventSource(live.dataset.stream);
  source.addEventListener("log", (event) => {
    const data = JSON.parse(event.data);
    appendLines(stepElements(data).log, data.lines);
  });
  source.addEventListener("step", (event) => {
    const data = JSON.parse(event.data);
    const els = stepElements(data);
    const state = data.conclusion || data.status;
    badge(els.state, state);
    if (state === "in_progress" || state === "failure") els.log.parentElement.open = true;
  });
  source.addEventListener("end", (event) => {
    const data = JSON.parse(event.data);
    source.close();
    badge(document.getElementById("run-state"), data.conclusion || data.status);
    document.getElementById("run").dataset.status = "completed";
    live.dataset.done = "true";
    // Job states, the graph, tests and artifacts are final now: show them.
    if (live.dataset.wasRunning === "true") setTimeout(() => location.reload(), 300);
  });
}

// Live lists: every element with `data-live` (and an id) is refreshed in place from
// the same page, fetched again every `data-live` seconds (1 by default) while the tab
// is visible. The server answers 304 when the page has not changed (ETag), so an idle
// list costs one small request a second.
function liveLists() {
  const regions = Array.from(document.querySelectorAll("[data-live][id]"));
  if (regions.length === 0) return;
  const every = Math.min(...regions.map((r) => Number(r.dataset.live) || 1)) * 1000;
  let etag = null;
  let busy = false;
  const refresh = async () => {
    if (busy || document.hidden) return;
    // Someone typing in a form inside a live region keeps what they typed.
    const active = document.activeElement;
    if (active && active.form && regions.some((r) => r.contains(active))) return;
    busy = true;
    try {
      const headers = { "X-Mobius-Live": "1" };
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(location.href, { headers, credentials: "same-origin", cache: "no-cache" });
      if (response.status !== 200) return;
      etag = response.headers.get("ETag");
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of regions) {
        const next = fresh.getElementById(region.id);
        if (next && next.innerHTML !== region.innerHTML) region.innerHTML = next.innerHTML;
      }
      document.body.dataset.liveAt = String(Date.now());
    } catch (_) {
      // The server is away for a moment (a restart): the next round tries again.
    } finally {
      busy = false;
    }
  };
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
}

document.addEventListener("DOMContentLoaded", () => {
  liveLists();
  const live = document.getElementById("live");
  if (live) {
    live.dataset.wasRunning = String(document.getElementById("run").dataset.status !== "completed");
    follow(live);
  }
});
