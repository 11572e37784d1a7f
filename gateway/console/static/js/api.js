// Talking to the gateway: same origin only, the session cookie, and the CSRF token on every
// request that changes something.

let csrfToken = "";
let onUnauthorized = null;

export function setCsrf(token) { csrfToken = token || ""; }

/** Called when the gateway answers 401 to a logged-in request (the session ended). */
export function whenUnauthorized(callback) { onUnauthorized = callback; }

/**
 * One request. Never throws for an HTTP error: the answer says what happened.
 * @returns {Promise<{ok: boolean, status: number, data: any, headers: Headers}>}
 * Throws only when the gateway cannot be reached at all.
 */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
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
