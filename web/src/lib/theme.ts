// Light, dark, or whatever the system prefers (the default): a data-theme attribute on
// <html> overrides the CSS's prefers-color-scheme.
import { Store } from "./store";

export type Theme = "system" | "light" | "dark";
const KEY = "nimbus.theme";

function saved(): Theme {
  try {
    const value = localStorage.getItem(KEY);
    if (value === "light" || value === "dark") return value;
  } catch {
    // no storage
  }
  return "system";
}

export const theme = new Store<Theme>(saved());

function apply(): void {
  const value = theme.get();
  if (value === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = value;
}
apply();
theme.subscribe(apply);

export function setTheme(value: Theme): void {
  theme.set(value);
  try {
    if (value === "system") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, value);
  } catch {
    // kept for this visit only
  }
}
