// What the page knows: the alarm board and the open work orders, kept current by the gateway's
// live feed (server-sent events on /api/v1/events).
//
// The feed is ordered and every alarm event carries the whole alarm as it is after the event.
// The board is read once (GET /api/v1/alarms) after the feed is open; events that arrive while
// that read is on its way are held and applied on top of it, in order, so nothing is lost and
// nothing older overwrites something newer. A network blip is bridged by the browser itself
// (EventSource reconnects and sends Last-Event-ID; the gateway replays what was missed). When
// the gateway cannot replay (restarted, or the page fell too far behind) it sends `resync`: the
// page reconnects from scratch and reads the board again.

import { api } from "./api.js";
import * as sound from "./sound.js";

export const state = {
  alarms: new Map(),     // alarm_id -> AlarmView
  flood: null,           // AlarmList.flood
  orders: new Map(),     // work-order id -> latest version seen
  loaded: false,
  connection: "connecting",  // connecting | live | reconnecting | down
  lastEventAt: 0,
};

const listeners = new Set();
let source = null;
let lastEventId = "";
let reading = null;    // the board read under way
let held = [];         // events that arrived during it
let readAgain = false; // the feed was re-opened during it: its snapshot may be too old
let generation = 0;    // feeds opened afresh (start, resync): a board read belongs to one
let readFor = -1;      // the generation the board was last read for
let retryTimer = null;
let refreshTimer = null;
let stopped = true;

/** Calls back with a topic ("alarms", "orders", "connection") whenever something changed. */
export function subscribe(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

function notify(topic) {
  if (topic === "alarms") sound.update([...state.alarms.values()]);
  for (const callback of listeners) callback(topic);
}

/** Whether the board shows an alarm in this state (the gateway's own rule). */
export function onBoard(alarm) {
  return alarm.state !== "normal" || alarm.active;
}

/** Whether an alarm is hidden from the operator's attention (shown apart). */
export function isHidden(alarm) {
  return alarm.state === "shelved" || alarm.state === "suppressed"
    || alarm.state === "out_of_service";
}

const PRIORITY_ORDER = { P0: 0, P1: 1, P2: 2, P3: 3 };

/** Life safety first, then the longest standing (the gateway's order). */
export function byPriorityThenTime(a, b) {
  return (PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority])
    || String(a.activated_at || "").localeCompare(String(b.activated_at || ""))
    || a.alarm_id.localeCompare(b.alarm_id);
}

export function sortedAlarms() {
  return [...state.alarms.values()].sort(byPriorityThenTime);
}

/** Starts following the gateway (after login). */
export function start() {
  stopped = false;
  state.loaded = false;
  generation += 1;
  connect();
}

/** Stops following it (logout). */
export function stop() {
  stopped = true;
  if (source) source.close();
  source = null;
  clearTimeout(retryTimer);
  clearTimeout(refreshTimer);
  state.alarms.clear();
  state.orders.clear();
  state.flood = null;
  state.loaded = false;
  lastEventId = "";
  sound.update([]);
}

function setConnection(value) {
  if (state.connection === value) return;
  state.connection = value;
  document.documentElement.dataset.feed = value;
  notify("connection");
}

function connect() {
  if (stopped) return;
  const url = lastEventId
    ? `/api/v1/events?last_event_id=${encodeURIComponent(lastEventId)}` : "/api/v1/events";
  const es = new EventSource(url);
  source = es;
  es.onopen = () => {
    if (source !== es) return;
    setConnection("live");
    if (readFor !== generation) readBoard();
  };
  es.onerror = () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // Refused (logged out, gateway trouble): the browser gives up; so not us.
      setConnection("down");
      source = null;
      retryTimer = setTimeout(recover, 3000);
    } else {
      setConnection("reconnecting");
    }
  };
  es.addEventListener("alarm", (e) => receive(es, e, applyAlarm));
  es.addEventListener("work_order", (e) => receive(es, e, applyOrder));
  es.addEventListener("resync", () => {
    if (source !== es) return;
    es.close();
    source = null;
    lastEventId = "";
    generation += 1;  // what was read before this point may have missed events
    connect();
  });
}

async function recover() {
  if (stopped) return;
  try {
    const answer = await api("GET", "/api/v1/session");
    if (answer.status === 401) return;  // the login page takes over (api.js)
  } catch {
    // the gateway is away: keep trying
  }
  connect();
}

function receive(es, event, apply) {
  if (source !== es) return;
  lastEventId = event.lastEventId || lastEventId;
  state.lastEventAt = Date.now();
  let data;
  try { data = JSON.parse(event.data); } catch { return; }
  if (reading) held.push([apply, data]);
  else apply(data);
}

/** Reads the board and the open work orders, then applies the events that came meanwhile. */
export async function readBoard() {
  if (reading) {
    readAgain = true;
    return reading;
  }
  held = [];
  const gen = generation;
  reading = (async () => {
    try {
      const [alarms, orders] = await Promise.all([
        api("GET", "/api/v1/alarms"), api("GET", "/api/v1/work-orders")]);
      if (alarms.ok) {
        state.alarms = new Map(alarms.data.alarms.map((a) => [a.alarm_id, a]));
        state.flood = alarms.data.flood;
        state.loaded = true;
        readFor = gen;
      }
      if (orders.ok) {
        state.orders = new Map(orders.data.orders.map((o) => [o.id, o]));
      }
    } catch {
      // unreachable: the feed's reconnect brings us back here
    } finally {
      const pending = held;
      held = [];
      reading = null;
      for (const [apply, data] of pending) apply(data, true);
      notify("alarms");
      notify("orders");
      if (readAgain) {
        readAgain = false;
        readBoard();
      }
    }
  })();
  return reading;
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => readBoard(), 300);
}

const RE_ANNOUNCED = new Set(["activated", "reactivated", "realarmed", "flood_released"]);

function applyAlarm(data, quiet) {
  const transition = data.transition || "";
  if (transition.startsWith("flood_")) {
    if (transition === "flood_ended") state.flood = null;
    refreshSoon();  // the flood's own numbers come with the board
  }
  const view = data.alarm;
  if (!view) {
    if (!String(data.alarm_id).startsWith("alarm_flood@")) state.alarms.delete(data.alarm_id);
  } else if (onBoard(view)) {
    const old = state.alarms.get(view.alarm_id);
    state.alarms.set(view.alarm_id, keepNewerOrder(old, view));
  } else {
    state.alarms.delete(view.alarm_id);
  }
  if (RE_ANNOUNCED.has(transition)) sound.unsilence(data.alarm_id);
  if (!quiet) notify("alarms");
}

function keepNewerOrder(old, view) {
  const had = old && old.work_order;
  const got = view.work_order;
  if (had && got && had.id === got.id && had.seq > got.seq) return { ...view, work_order: had };
  if (had && !got) return { ...view, work_order: had };
  return view;
}

/** The board's summary of a work order (the gateway's OrderLink), from a whole order. */
export function orderLink(order) {
  const esc = order.escalation;
  return {
    id: order.id, seq: order.seq, status: order.status, respond_by: order.respond_by,
    acknowledge_by: order.acknowledge_by,
    escalation_level: esc ? esc.level : null, escalation_levels: esc ? esc.levels : null,
    escalation_role: esc ? esc.role : null, escalation_name: esc ? esc.name : null,
    escalation_deadline: esc ? esc.deadline : null,
  };
}

const CLOSED = new Set(["resolved", "rejected"]);

function applyOrder(order, quiet) {
  const old = state.orders.get(order.id);
  if (!old || order.seq >= old.seq) state.orders.set(order.id, order);
  for (const id of [order.alarm_id, ...(order.joined_alarms || [])]) {
    const alarm = state.alarms.get(id);
    if (!alarm) continue;
    const link = alarm.work_order;
    const update = link
      ? (link.id === order.id ? order.seq >= link.seq
        : id === order.alarm_id && !CLOSED.has(order.status))
      : true;
    if (update) state.alarms.set(id, { ...alarm, work_order: orderLink(order) });
  }
  if (!quiet) {
    notify("orders");
    notify("alarms");
  }
}

/** Puts one alarm as the gateway answered an action, when the feed is not there to. */
export function putAlarm(view) {
  // With the feed live its own event is authoritative (and ordered); an answer that arrives
  // after a later event must not roll the alarm back.
  if (!view || !view.alarm_id || state.connection === "live") return;
  if (onBoard(view)) state.alarms.set(view.alarm_id, keepNewerOrder(
    state.alarms.get(view.alarm_id), view));
  else state.alarms.delete(view.alarm_id);
  notify("alarms");
}
