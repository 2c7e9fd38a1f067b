// The shell: header with navigation and settings, and the page for the current path.
import { useEffect } from "preact/hooks";
import { Link, Spinner } from "./components";
import { restore, session, sessionNotice, signOut } from "./lib/auth";
import { lang, setLang, t, type Lang } from "./lib/i18n";
import { resetPhotos } from "./lib/photos";
import { location, match, navigate } from "./lib/router";
import { useStore } from "./lib/store";
import { setTheme, theme, type Theme } from "./lib/theme";
import { NotFound } from "./pages/not-found";
import { PhotoView } from "./pages/photo-view";
import { Photos } from "./pages/photos";
import { PollList } from "./pages/poll-list";
import { PollNew } from "./pages/poll-new";
import { PollView } from "./pages/poll-view";
import { SignIn } from "./pages/sign-in";

void restore();

// Signed out (here, in another tab, or found out from the server): nothing of the
// account stays on screen.
session.subscribe(() => {
  if (session.get() === null) resetPhotos();
});

export function App() {
  useStore(lang);
  const url = useStore(location);
  const current = useStore(session);
  const notice = useStore(sessionNotice);
  const path = url.pathname;

  let page;
  let params: Record<string, string> | null;
  if (path === "/") page = <Redirect to="/polls" />;
  else if (match("/sign-in", path)) page = <SignIn />;
  else if (match("/polls", path)) page = <PollList />;
  else if (match("/polls/new", path)) page = <Gate>{() => <PollNew />}</Gate>;
  else if ((params = match("/polls/:id", path))) page = <PollView id={params.id!} />;
  else if (match("/photos", path)) page = <Gate>{() => <Photos />}</Gate>;
  else if ((params = match("/photos/:id", path))) {
    const id = params.id!;
    page = <Gate>{() => <PhotoView id={id} />}</Gate>;
  } else page = <NotFound />;

  return (
    <>
      <a class="skip" href="#main">
        {t("app.skip")}
      </a>
      <header class="top">
        <div class="bar">
          <Link class="brand" href="/polls">
            <svg aria-hidden="true" viewBox="0 0 24 24" width="24" height="24">
              <path fill="currentColor" d="M7 18a5 5 0 0 1-.6-9.96A6 6 0 0 1 18 9a4.5 4.5 0 0 1-.5 9H7Z" />
            </svg>
            {t("app.name")}
          </Link>
          <nav aria-label={t("nav.main")}>
            <ul>
              <li>
                <Link href="/polls" current={path.startsWith("/polls")}>
                  {t("nav.polls")}
                </Link>
              </li>
              <li>
                <Link href="/photos" current={path.startsWith("/photos")}>
                  {t("nav.photos")}
                </Link>
              </li>
            </ul>
          </nav>
          <div class="tools">
            <Settings />
            {current ? <Account email={current.user.email} /> : current === null && !path.startsWith("/sign-in") ? (
              <Link class="button small" href={`/sign-in?next=${encodeURIComponent(path + url.search)}`}>
                {t("nav.signIn")}
              </Link>
            ) : null}
          </div>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {notice === "expired" && !path.startsWith("/sign-in") ? (
          <p class="banner" role="alert">
            {t("signIn.expired")}{" "}
            <Link href={`/sign-in?next=${encodeURIComponent(path + url.search)}`}>{t("nav.signIn")}</Link>
          </p>
        ) : null}
        {page}
      </main>
    </>
  );
}

/** Pages for signed-in users: wait for the session, or go and sign in first. */
function Gate({ children }: { children: () => preact.ComponentChildren }) {
  const current = useStore(session);
  const url = location.get();
  useEffect(() => {
    if (current === null) navigate(`/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, { replace: true });
  }, [current]);
  if (!current) return <Spinner />;
  return <>{children()}</>;
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function Settings() {
  const currentLang = useStore(lang);
  const currentTheme = useStore(theme);
  return (
    <>
      <label class="select">
        <span class="visually-hidden">{t("settings.language")}</span>
        <select value={currentLang} onChange={(e) => setLang(e.currentTarget.value as Lang)}>
          <option value="en" lang="en">
            English
          </option>
          <option value="ko" lang="ko">
            한국어
          </option>
        </select>
      </label>
      <label class="select">
        <span class="visually-hidden">{t("settings.theme")}</span>
        <select value={currentTheme} onChange={(e) => setTheme(e.currentTarget.value as Theme)}>
          <option value="system">{t("theme.system")}</option>
          <option value="light">{t("theme.light")}</option>
          <option value="dark">{t("theme.dark")}</option>
        </select>
      </label>
    </>
  );
}

function Account({ email }: { email: string }) {
  const out = async (scope: "local" | "global") => {
    try {
      await signOut(scope);
    } finally {
      navigate("/sign-in", { replace: true });
    }
  };
  return (
    <details class="menu">
      <summary>
        <span class="avatar" aria-hidden="true">
          {email.slice(0, 1).toUpperCase()}
        </span>
        <span class="visually-hidden">{t("account.menu")}: </span>
        <span class="email">{email}</span>
      </summary>
      <div class="menu-body">
        <p class="muted small">{t("account.signedInAs", { email })}</p>
        <button type="button" class="button" onClick={() => void out("local")}>
          {t("account.signOut")}
        </button>
        <button type="button" class="button" onClick={() => void out("global")} aria-describedby="everywhere-hint">
          {t("account.signOutEverywhere")}
        </button>
        <p id="everywhere-hint" class="muted small">
          {t("account.signOutEverywhereHint")}
        </p>
      </div>
    </details>
  );
}
