// The lmevoip status page: polls /api/status, /api/lines, /api/flows and
// /api/registrations every second, follows /api/events (server-sent events, read with fetch so
// that a bearer token can be sent), and draws each keep-alive flow's idle
// time against the NAT session time as an SVG plot. No framework, no build
// step, nothing from another origin. Server data is only ever put in the
// page as text (textContent), never as markup.
"use strict";

const POLL_MS = 1000;
const WINDOW_S = 60;
const MAX_EVENTS = 50;
const SVG_NS = "http://www.w3.org/2000/svg";
const KIND_NAMES = {
  "voice": "voice",
  "rtp-keepalive": "silence keep-alive",
  "options-keepalive": "OPTIONS keep-alive",
  "crlf-keepalive": "CRLF keep-alive",
  "signalling": "other SIP",
};

// A token given as status page URL fragment (#token=...) is sent as
// "Authorization: Bearer"; fragments never reach the server or its logs.
const token = new URLSearchParams(location.hash.slice(1)).get("token");

function headers(extra) {
  const result = Object.assign({}, extra || {});
  if (token) {
    result["Authorization"] = "Bearer " + token;
  }
  return result;
}

async function getJson(path) {
  const response = await fetch(path, {headers: headers(), cache: "no-store"});
  if (!response.ok) {
    throw new Error(path + ": HTTP " + response.status);
  }
  return response.json();
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({"Content-Type": "application/json"}),
    body: JSON.stringify(body || {}),
  });
  return {status: response.status, body: await response.json()};
}

function el(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, value);
  }
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  return node;
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function seconds(value, digits) {
  return value === null || value === undefined ? "–" : value.toFixed(digits === undefined ? 1 : digits) + " s";
}

function duration(total) {
  total = Math.max(0, Math.round(total));
  const h = Math.floor(total / 3600), m = Math.floor(total / 60) % 60, s = total % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
}

function address(value) {
  return value ? value.host + ":" + value.port : "–";
}

// -- status, settings, lines -------------------------------------------------

function showStatus(status) {
  const uptime = status.startedAt ? " · up " + duration(status.now - status.startedAt) : "";
  document.getElementById("engine").textContent =
    "sip:" + status.user + "@" + address(status.sipAddress) + " · " + status.lines + " lines · " +
    (status.running ? "running" : "stopped") + uptime;
  const ka = status.keepAlive;
  const kinds = [ka.sip ? "SIP (OPTIONS)" : null, ka.rtp ? "RTP (silence)" : null].filter(Boolean);
  document.getElementById("keepalive").textContent = kinds.length ?
    kinds.join(" and ") + " for a NAT session time of " + (ka.natSessionTimeMs / 1000) + " s" : "off";
  const gate = status.noiseGate;
  document.getElementById("noisegate").textContent = (gate.enabled ? "on" : "off") +
    ", threshold " + gate.threshold + ", decay " + gate.decayMs + " ms";
  document.getElementById("public").textContent =
    status.publicAddress ? address(status.publicAddress) : "not known yet (learned from responses)";
}

function showLines(lines, now) {
  const body = document.querySelector("#lines tbody");
  body.replaceChildren();
  for (const line of lines) {
    const idle = line.state === "Idle";
    const row = el("tr", {"class": idle ? "idle" : "busy", "data-line": line.line, "data-state": line.state});
    row.append(el("td", {}, line.line));
    const state = el("td");
    state.append(el("span", {"class": "badge " + line.state}, line.state));
    row.append(state);
    row.append(el("td", {}, line.direction || ""));
    row.append(el("td", {"class": "remote"}, line.remoteParty || ""));
    row.append(el("td", {}, line.codec || ""));
    const hold = [line.localHold ? "we hold" : null, line.remoteHold ? "held by peer" : null].filter(Boolean);
    row.append(el("td", {}, hold.join(", ")));
    row.append(el("td", {}, idle ? "" : duration(now - line.since)));
    const actions = el("td");
    if (line.state === "Incoming") {
      actions.append(actionButton("Answer", line.line, "answer"));
    }
    if (!idle) {
      actions.append(actionButton("Hang up", line.line, "hangup"));
    }
    row.append(actions);
    body.append(row);
  }
}

function actionButton(label, line, action) {
  const button = el("button", {"type": "button"}, label);
  button.addEventListener("click", async () => {
    const result = await postJson("/api/lines/" + line + "/" + action);
    showResult(result);
    refresh();
  });
  return button;
}

function showResult(result) {
  const node = document.getElementById("call-result");
  node.textContent = (result.body.result || result.body.error) + ": " + result.body.message;
  node.className = "result" + (result.status === 200 ? "" : " error");
}

// -- registrations ----------------------------------------------------------------

function showRegistrations(snapshot) {
  const body = document.querySelector("#registrations tbody");
  const registrations = snapshot.registrations;
  body.replaceChildren();
  document.getElementById("registrations-empty").hidden = registrations.length > 0;
  document.getElementById("registrations").hidden = registrations.length === 0;
  for (const entry of registrations) {
    const row = el("tr", {"data-name": entry.name, "data-state": entry.state,
                          "class": entry.registered ? "registered" : "unregistered"});
    const name = el("td", {"class": "aor", "title": entry.aor || ""}, entry.name);
    if (entry.line !== null) {
      name.append(el("span", {"class": "muted"}, " (line " + entry.line + ")"));
    }
    row.append(name);
    row.append(el("td", {}, entry.registrar + (entry.outboundProxy ? " via " + entry.outboundProxy : "")));
    const state = el("td");
    state.append(el("span", {"class": "badge " + entry.state}, entry.state));
    row.append(state);
    const left = entry.bindingExpiresAt !== null ? entry.bindingExpiresAt - snapshot.now : null;
    row.append(el("td", {"class": "granted"}, entry.grantedExpires === null ? "–" :
      entry.grantedExpires + " s" + (left !== null && left > 0 ? " (" + duration(left) + " left)" : "")));
    row.append(el("td", {"class": "next"}, entry.nextAttemptAt === null ? "–" :
      "in " + duration(entry.nextAttemptAt - snapshot.now)));
    row.append(el("td", {"class": "contact", "title": entry.contact || ""},
      entry.publicAddress ? entry.publicAddress + " (NAT)" : (entry.contact || "–")));
    row.append(el("td", {"class": entry.failures ? "bad" : ""}, entry.failures));
    row.append(el("td", {"class": "muted"}, entry.lastEvent || ""));
    body.append(row);
  }
}

// -- flows -----------------------------------------------------------------------

function flowTitle(flow) {
  const what = flow.kind === "null" ? "NULL keep-alive" : "line " + flow.line + " · " + flow.kind.toUpperCase();
  return what + " → " + flow.remote;
}

function natSeconds(flow, nat) {
  const ms = flow.kind === "rtp" ? nat.rtp : flow.kind === "sip" ? nat.sip : null;
  return ms === null || ms === undefined ? null : ms / 1000;
}

function showFlows(snapshot) {
  const container = document.getElementById("flows");
  const flows = snapshot.flows.slice().sort((a, b) => (b.active - a.active) || (a.since - b.since));
  if (!flows.length) {
    if (!container.querySelector(".empty")) {
      container.replaceChildren(el("p", {"class": "empty"},
        "No flow yet: keep-alive flows appear when a call is connected."));
    }
    return;
  }
  container.replaceChildren();
  for (const flow of flows) {
    container.append(flowCard(flow, snapshot.now, natSeconds(flow, snapshot.natSessionTimeMs)));
  }
}

function flowCard(flow, now, nat) {
  const card = el("div", {"class": "flow" + (flow.active ? "" : " ended"), "data-flow": flow.id});
  const title = el("h3");
  title.append(el("span", {"class": "name"}, flowTitle(flow)));
  title.append(el("span", {"class": "badge " + (flow.active ? "on" : "")}, flow.active ? "active" : "ended"));
  const last = flow.lastSend === null ? "nothing sent yet" :
    "last send " + seconds((flow.endedAt || now) - flow.lastSend) + " ago (" + KIND_NAMES[flow.lastKind] + ")";
  title.append(el("span", {"class": "last"}, last));
  card.append(title);

  const stats = el("div", {"class": "stats"});
  const counts = Object.entries(flow.sends).filter(([kind, count]) => count > 0)
    .map(([kind, count]) => KIND_NAMES[kind] + ": " + count);
  const parts = [counts.length ? counts.join(" · ") : "no sends"];
  const ka = flow.keepAlive;
  if (ka && ka.enabled !== false && ka.interval !== null && ka.interval !== undefined) {
    parts.push("keep-alive after " + seconds(ka.interval, 2) + " idle, " + ka.sendCount + " sent, " +
      ka.failureCount + " failed" + (ka.lastRoundTrip ? ", last RTT " + (ka.lastRoundTrip * 1000).toFixed(0) + " ms" : ""));
  } else if (ka && ka.keepAliveSeconds) {
    parts.push("a CRLF every " + ka.keepAliveSeconds + " s, " + ka.sendCount + " sent, " + ka.failureCount + " failed");
  } else if (flow.kind !== "null" && flow.active) {
    parts.push("keep-alive off");
  }
  stats.append(document.createTextNode(parts.join("  |  ") + "  |  longest idle "));
  stats.append(el("b", {}, seconds(flow.longestIdle, 2)));
  if (nat !== null) {
    const ok = flow.longestIdle < nat;
    stats.append(document.createTextNode(" vs NAT " + seconds(nat) + " "));
    stats.append(el("span", {"class": ok ? "ok" : "bad"}, ok ? "✓ kept open" : "✗ would expire"));
  }
  card.append(stats);
  card.append(timeline(flow, now, nat));
  return card;
}

// The idle time of a flow over the window: it rises by one second per
// second and falls to zero at every send.
function idleSegments(flow, start, end) {
  const segments = [];  // [from, to, idleAtFrom]
  let previous = flow.since;
  for (const run of flow.timeline) {
    if (run[0] > start && run[0] > previous) {
      segments.push([previous, run[0]]);
    }
    previous = Math.max(previous, run[1]);
  }
  segments.push([previous, Math.min(end, flow.endedAt || end)]);
  return segments;
}

function timeline(flow, now, nat) {
  const width = Math.max(320, Math.round(document.getElementById("flows").clientWidth || 800));
  const height = 84, left = 44, right = 10, top = 8, bottom = 18;
  const start = now - WINDOW_S;
  const plotW = width - left - right, plotH = height - top - bottom;
  const segments = idleSegments(flow, start, now);
  let highest = 0;
  for (const [from, to] of segments) {
    if (to > start) {
      highest = Math.max(highest, to - from);
    }
  }
  const yMax = nat !== null ? nat * 1.4 : Math.max(5, highest * 1.15);
  const x = (t) => left + (Math.min(Math.max(t, start), now) - start) / WINDOW_S * plotW;
  const y = (v) => top + plotH - Math.min(v, yMax) / yMax * plotH;

  const root = svg("svg", {"class": "timeline", "viewBox": "0 0 " + width + " " + height,
                           "role": "img", "aria-label": "idle time of " + flowTitle(flow)});
  // The idle sawtooth, with the time above the NAT session time shaded.
  const points = [];
  for (const [from, to] of segments) {
    if (to <= start) {
      continue;
    }
    const a = Math.max(from, start);
    points.push([x(a), y(a - from)], [x(to), y(to - from)]);
    if (to < (flow.endedAt || now)) {
      points.push([x(to), y(0)]);
    }
    if (nat !== null && to - from > nat) {
      const over = Math.max(from + nat, start);
      root.append(svg("rect", {"class": "over", "x": x(over), "y": top, "width": Math.max(1, x(to) - x(over)),
                               "height": plotH}));
    }
  }
  if (points.length) {
    const path = points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    const fill = points[0][0].toFixed(1) + "," + y(0).toFixed(1) + " " + path + " " +
      points[points.length - 1][0].toFixed(1) + "," + y(0).toFixed(1);
    root.append(svg("polygon", {"class": "idle-fill", "points": fill}));
    root.append(svg("polyline", {"class": "idle", "points": path}));
  }
  // Axes and ticks.
  root.append(svg("line", {"class": "axis", "x1": left, "y1": y(0), "x2": width - right, "y2": y(0)}));
  root.append(svg("line", {"class": "axis", "x1": left, "y1": top, "x2": left, "y2": y(0)}));
  for (let ago = WINDOW_S; ago >= 0; ago -= 10) {
    const tx = x(now - ago);
    root.append(svg("text", {"class": "tick", "x": tx, "y": height - 4, "text-anchor": ago === 0 ? "end" : "middle"},
                    ago === 0 ? "now" : "-" + ago + "s"));
  }
  root.append(svg("text", {"class": "tick", "x": left - 4, "y": y(0) + 3, "text-anchor": "end"}, "0 s"));
  root.append(svg("text", {"class": "tick", "x": left - 4, "y": top + 8, "text-anchor": "end"},
                  yMax.toFixed(yMax < 10 ? 1 : 0) + " s"));
  // The NAT session time.
  if (nat !== null) {
    root.append(svg("line", {"class": "nat", "x1": left, "y1": y(nat), "x2": width - right, "y2": y(nat)}));
    root.append(svg("text", {"class": "nat-label", "x": left + 4, "y": y(nat) - 3},
                    "NAT session time " + nat + " s"));
  }
  // The sends: voice as bars on the axis, the others as dots.
  for (const [from, to, kind] of flow.timeline) {
    if (to < start) {
      continue;
    }
    if (kind === "voice") {
      root.append(svg("rect", {"class": "send voice", "x": x(from), "y": y(0) - 5,
                               "width": Math.max(2, x(to) - x(from)), "height": 5}));
    } else {
      root.append(svg("circle", {"class": "send " + kind, "cx": x(from), "cy": y(0), "r": 3.5}));
    }
  }
  return root;
}

// -- events ---------------------------------------------------------------------

function addEvent(event) {
  const list = document.getElementById("events");
  const item = el("li", {"data-name": event.name});
  const time = new Date(event.time * 1000);
  item.append(el("span", {"class": "time"}, time.toLocaleTimeString()));
  item.append(el("span", {"class": "name"}, event.name));
  const details = [];
  if (event.line !== null) {
    details.push("line " + event.line);
  }
  for (const key of ["remoteParty", "status", "reason", "result"]) {
    if (event[key] !== null && event[key] !== undefined) {
      details.push(String(event[key]));
    }
  }
  const extra = Object.assign({}, event.details || {});
  if (extra.state) {
    details.push(extra.previous + " → " + extra.state);
    delete extra.state;
    delete extra.previous;
  }
  for (const [key, value] of Object.entries(extra)) {
    if (value !== null && value !== undefined) {
      details.push(key + " " + (typeof value === "object" ? JSON.stringify(value) : value));
    }
  }
  item.append(document.createTextNode(details.join(" · ")));
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) {
    list.lastElementChild.remove();
  }
}

function setLive(live) {
  const badge = document.getElementById("live");
  badge.textContent = live ? "events: live" : "events: reconnecting";
  badge.className = "badge " + (live ? "on" : "off");
}

async function followEvents() {
  for (;;) {
    try {
      const response = await fetch("/api/events", {headers: headers(), cache: "no-store"});
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      setLive(true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) {
          break;
        }
        buffer += decoder.decode(value, {stream: true});
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = chunk.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
          if (data.length) {
            const event = JSON.parse(data.join("\n"));
            addEvent(event);
            if (event.name === "SipLineStateChanged" || /^Sip(Un)?[Rr]egister/.test(event.name)) {
              refresh();
            }
          }
        }
      }
    } catch (error) {
      // The stream broke (server restart, network): try again shortly.
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// -- polling ----------------------------------------------------------------------

let refreshing = false;

async function refresh() {
  if (refreshing) {
    return;
  }
  refreshing = true;
  try {
    const [status, lines, flows, registrations] = await Promise.all(
      [getJson("/api/status"), getJson("/api/lines"), getJson("/api/flows"), getJson("/api/registrations")]);
    showStatus(status);
    showLines(lines.lines, status.now);
    showFlows(flows);
    showRegistrations(registrations);
  } catch (error) {
    document.getElementById("engine").textContent = "cannot reach the control API (" + error.message + ")";
  } finally {
    refreshing = false;
  }
}

function setUp() {
  document.getElementById("window").textContent = String(WINDOW_S);
  document.getElementById("call-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const line = document.getElementById("call-line").value || "0";
    const uri = document.getElementById("call-uri").value.trim();
    showResult(await postJson("/api/lines/" + encodeURIComponent(line) + "/call", {uri: uri}));
    refresh();
  });
  refresh();
  setInterval(refresh, POLL_MS);
  followEvents();
}

document.addEventListener("DOMContentLoaded", setUp);
