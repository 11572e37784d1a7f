// The follow-up calls (回访) that are due: read from the gateway (GET /api/v1/follow-ups) at
// login, every 30 s, and shortly after any work order changed (a resolution starts the 48 h,
// a follow-up recorded elsewhere ends one). The header's count and the follow-ups page both
// show this one copy.

import { api, errorText } from "./api.js";
import * as store from "./store.js";

const EVERY = 30000;

export const state = {
  due: [],        // FollowUpItem: {order, due_at, overdue_at, overdue, attempts}
  upcoming: [],
  overdue: 0,
  now: null,      // the gateway's time of the answer
  loaded: false,
  error: null,    // the last refusal, in the gateway's words; null when the read worked
};

const listeners = new Set();
let timer = null;
let soonTimer = null;
let stopFeed = null;
let running = false;
let reading = null;
let again = false;

/** Calls back whenever the lists were read again. */
export function subscribe(callback) {
  listeners.add(callback);
  return () => listeners.delete(callback);
}

export function start() {
  running = true;
  stopFeed = store.subscribe((topic) => { if (topic === "orders") soon(); });
  read();
}

export function stop() {
  running = false;
  again = false;
  clearTimeout(timer);
  clearTimeout(soonTimer);
  if (stopFeed) stopFeed();
  stopFeed = null;
  Object.assign(state, { due: [], upcoming: [], overdue: 0, now: null, loaded: false,
    error: null });
}

function soon() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(read, 400);
}

/** Reads the lists now (the page's refresh button, after a follow-up was recorded); a read
 * asked for while one is under way follows it (that one may have started before the
 * change). */
export function read() {
  if (!running) return Promise.resolve();
  if (reading) {
    again = true;
    return reading;
  }
  clearTimeout(timer);
  reading = (async () => {
    try {
      const answer = await api("GET", "/api/v1/follow-ups");
      if (answer.ok) {
        Object.assign(state, { due: answer.data.due || [], upcoming: answer.data.upcoming || [],
          overdue: answer.data.overdue || 0, now: answer.data.now || null, loaded: true,
          error: null });
      } else if (answer.status !== 401) {
        state.error = errorText(answer);
      }
    } catch {
      state.error = "";  // unreachable: the connection banner says so
    } finally {
      reading = null;
      if (running) timer = setTimeout(read, EVERY);
    }
    if (running) for (const callback of listeners) callback();
    if (again && running) {
      again = false;
      read();
    }
  })();
  return reading;
}
