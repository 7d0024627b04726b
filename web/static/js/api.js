// The JSON API (/api/v1) as the agent inbox calls it.
// Every piece of data goes into the page as text (textContent / text nodes), never as HTML.

const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

// ---- the API -----------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API: a JSON body, or a Blob (a file) sent raw with its type; `keepalive` outlives the page. */
export async function api(method, path, body, { keepalive = false } = {}) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin", keepalive };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrfToken;
  if (body instanceof Blob) {
    init.headers["Content-Type"] = body.type || "application/octet-stream";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    window.location.assign("/login");
    throw new ApiError(401, "unauthenticated", "Your session ended; log in again.");
  }
  if (!response.ok) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

/** POST with retries on network errors and 5xx; the caller's idempotency key makes it safe. */
export async function postWithRetry(path, body, attempts = 4) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api("POST", path, body);
    } catch (error) {
      const transient = !(error instanceof ApiError) || error.status >= 500;
      if (!transient || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 400 * 2 ** attempt));
    }
  }
}
