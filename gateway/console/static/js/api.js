// Talking to the gateway: same origin only, the session cookie, and the CSRF token on every
// request that changes something.

import { observe } from "./clock.js";

let csrfToken = "";
let onUnauthorized = null;

export function setCsrf(token) { csrfToken = token || ""; }

/** Called when the gateway answers 401 to a logged-in request (the session ended). */
export function whenUnauthorized(callback) { onUnauthorized = callback; }

/**
 * One request. Never throws for an HTTP error: the answer says what happened.
 * `extra` adds request headers (e.g. an Idempotency-Key).
 * @returns {Promise<{ok: boolean, status: number, data: any, headers: Headers}>}
 * Throws only when the gateway cannot be reached at all.
 */
export async function api(method, path, body, extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  const sentAt = Date.now();
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  observe(response.headers.get("X-Gateway-Time"), sentAt, Date.now());
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (response.status === 401 && path !== "/api/v1/session" && onUnauthorized) onUnauthorized();
  return { ok: response.ok, status: response.status, data, headers: response.headers };
}

/** The gateway's reason for a refusal, as one line (its own words, in English). */
export function errorText(answer) {
  const data = answer.data;
  if (data && typeof data === "object" && !Array.isArray(data) && data.error) {
    return String(data.error);
  }
  if (Array.isArray(data)) {  // a request the API's models refused: one entry per field
    return data.map((e) => [Array.isArray(e.loc) ? e.loc.join(".") : "", e.msg]
      .filter(Boolean).join(": ")).join("; ");
  }
  if (typeof data === "string" && data) return data.slice(0, 300);
  return `HTTP ${answer.status}`;
}

/** A random key for one user intention (Idempotency-Key): the same key on a retry or a second
 * click makes one order, not two. crypto.randomUUID needs a secure context (https or
 * localhost); getRandomValues does not, and a control room may open the console over plain
 * http on its own network. */
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
