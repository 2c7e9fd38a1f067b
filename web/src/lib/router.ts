// History-API routing: a handful of paths, matched in order. nginx answers every app
// path with index.html (SPA fallback), so any of them can be opened or reloaded.
import type { JSX } from "preact";
import { Store } from "./store";

export const location = new Store<URL>(new URL(window.location.href));

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const url = new URL(to, window.location.href);
  if (url.href === window.location.href && !options.replace) return;
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  location.set(url);
}

window.addEventListener("popstate", () => location.set(new URL(window.location.href)));

/** `pattern` like "/polls/:id" against a path: the captures, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split("/");
  const got = path.replace(/\/+$/, "").split("/");
  if (path === "/") got.splice(1);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith(":")) {
      if (!g) return null;
      params[w.slice(1)] = decodeURIComponent(g);
    } else if (w !== g) {
      return null;
    }
  }
  return params;
}

/** Left clicks on in-app links navigate without reloading the page. */
export function onLinkClick(event: JSX.TargetedMouseEvent<HTMLAnchorElement>): void {
  const a = event.currentTarget;
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (a.target || a.origin !== window.location.origin || a.hasAttribute("download")) return;
  event.preventDefault();
  navigate(a.pathname + a.search + a.hash);
}
