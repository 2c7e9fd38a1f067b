// The session: an access token kept in memory only, the refresh token in an HttpOnly
// cookie the page cannot read (browser mode of /v1/auth/email/verify). Tokens are
// refreshed a minute before they expire and whenever the server turns one down; a
// refresh the server refuses means the session is over (signed out here, elsewhere, or
// everywhere), and the app says so.
import { ApiError, networkError, problemOf, useTokenSource, type Tokens } from "../api/client";
import { Store } from "./store";

export interface User {
  id: string;
  email: string;
}
export interface Session {
  user: User;
  token: string;
  expiresAt: number; // ms since the epoch
}

/** undefined while the session is being restored at start, null when signed out. */
export const session = new Store<Session | null | undefined>(undefined);
/** Why the last session ended when the user did not ask for it (shown on the sign-in page). */
export const sessionNotice = new Store<"expired" | null>(null);

// A hint that this browser holds a refresh cookie, so a first visit does not ask the
// server for a session it cannot have. Also how tabs tell each other about sign-in/out.
const HINT = "nimbus.signed-in";
const EARLY = 60_000; // refresh this long before expiry
let timer: ReturnType<typeof setTimeout> | undefined;
let inflight: Promise<boolean> | null = null;

function store(tokens: Tokens): void {
  const expiresAt = Date.now() + tokens.expires_in * 1000;
  session.set({ user: tokens.user, token: tokens.access_token, expiresAt });
  sessionNotice.set(null);
  try {
    localStorage.setItem(HINT, "1");
  } catch {
    // storage off (private mode): reloads sign the user out; nothing else changes
  }
  clearTimeout(timer);
  timer = setTimeout(() => void refresh(), Math.max(5_000, expiresAt - Date.now() - EARLY));
}

function end(notice: "expired" | null): void {
  clearTimeout(timer);
  const had = session.get();
  session.set(null);
  if (had && notice) sessionNotice.set(notice);
  try {
    localStorage.removeItem(HINT);
  } catch {
    // nothing to forget
  }
}

async function post(path: string, body: unknown, token?: string): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/json", Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  } catch {
    throw networkError();
  }
}

/**
 * A new token pair from the cookie; one request at a time per tab (tabs racing each
 * other get the same successor from the server). False when the session is over.
 */
export function refresh(): Promise<boolean> {
  inflight ??= (async () => {
    try {
      const response = await post("/v1/auth/refresh", {});
      if (response.ok) {
        store((await response.json()) as Tokens);
        return true;
      }
      const problem = await problemOf(response);
      if (problem.status === 401 || problem.status === 422) {
        end("expired");
        return false;
      }
      throw problem;
    } catch (e) {
      // Network down, gateway limit, 503: the session may well be fine; try again soon.
      clearTimeout(timer);
      timer = setTimeout(() => void refresh(), 10_000);
      if (session.get() === undefined) session.set(null);
      if (e instanceof ApiError) return false;
      throw e;
    } finally {
      inflight = null;
    }
  })();
  return inflight;
}

export async function restore(): Promise<void> {
  let hinted = false;
  try {
    hinted = localStorage.getItem(HINT) === "1";
  } catch {
    hinted = false;
  }
  if (hinted) await refresh();
  else session.set(null);
}

export async function startSignIn(email: string): Promise<void> {
  const response = await post("/v1/auth/email/start", { email });
  if (!response.ok) throw await problemOf(response);
}

export async function verifyCode(email: string, code: string): Promise<void> {
  const response = await post("/v1/auth/email/verify", { email, code, cookie: true });
  if (!response.ok) throw await problemOf(response);
  store((await response.json()) as Tokens);
}

/** Signs out this browser ("local") or every session of the account ("global"). */
export async function signOut(scope: "local" | "global"): Promise<void> {
  const current = session.get();
  if (current) {
    const response = await post("/v1/auth/logout", { scope }, current.token);
    // A token the server already refuses is as good as signed out.
    if (!response.ok && response.status !== 401) throw await problemOf(response);
  }
  end(null);
}

/** The access token to send now, refreshed first when about to expire. */
export async function accessToken(): Promise<string | null> {
  const current = session.get();
  if (!current) return null;
  if (current.expiresAt - Date.now() < 10_000) {
    if (!(await refresh().catch(() => false))) return session.get()?.token ?? null;
  }
  return session.get()?.token ?? null;
}

/** After the server refused the token: a refresh decides whether the session lives on. */
export async function renew(): Promise<boolean> {
  if (!session.get()) return false;
  return refresh().catch(() => false);
}

useTokenSource({ token: accessToken, renew });

if (typeof window !== "undefined") {
  // Another tab signed in or out.
  window.addEventListener("storage", (event) => {
    if (event.key !== HINT) return;
    if (event.newValue === null && session.get()) end(null);
    else if (event.newValue === "1" && !session.get()) void refresh();
  });
  // Timers sleep with a background tab; catch up when it is shown again.
  document.addEventListener("visibilitychange", () => {
    const current = session.get();
    if (document.visibilityState === "visible" && current && current.expiresAt - Date.now() < EARLY) void refresh();
  });
}
