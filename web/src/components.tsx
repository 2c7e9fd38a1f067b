// Small pieces shared by the pages.
import type { ComponentChildren, JSX } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { t } from "./lib/i18n";
import { location, onLinkClick } from "./lib/router";

export function Link(props: JSX.HTMLAttributes<HTMLAnchorElement> & { href: string; current?: boolean }) {
  const { current, ...rest } = props;
  return <a {...rest} aria-current={current ? "page" : undefined} onClick={onLinkClick} />;
}

let firstPage = true;

/**
 * The page's heading: sets the document title and, after an in-app navigation, takes
 * the focus, so that screen readers announce the new page and Tab starts from it.
 */
export function PageTitle({ children, title }: { children: ComponentChildren; title: string }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · ${t("app.name")}`;
  }, [title]);
  useEffect(() => {
    if (firstPage) firstPage = false;
    else ref.current?.focus({ preventScroll: false });
  }, [location.get().pathname]);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}

export function ErrorText({ id, children }: { id?: string; children: ComponentChildren }) {
  if (!children) return null;
  return (
    <p id={id} class="error" role="alert">
      {children}
    </p>
  );
}

/** A modal question with the platform's <dialog>: focus kept inside, Escape cancels. */
export function Confirm(props: { open: boolean; message: string; confirm: string; danger?: boolean; onConfirm(): void; onCancel(): void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) dialog.showModal();
    if (!props.open && dialog.open) dialog.close();
  }, [props.open]);
  return (
    <dialog ref={ref} class="confirm" aria-labelledby="confirm-text" onClose={() => props.open && props.onCancel()}>
      <p id="confirm-text">{props.message}</p>
      <div class="actions">
        <button type="button" class="button" onClick={props.onCancel} autofocus>
          {t("dialog.cancel")}
        </button>
        <button type="button" class={props.danger ? "button danger" : "button primary"} onClick={props.onConfirm}>
          {props.confirm}
        </button>
      </div>
    </dialog>
  );
}

export function Spinner() {
  return (
    <p class="muted" role="status">
      {t("app.loading")}
    </p>
  );
}
