// Photos: a drop zone over a real file input (several at once; the camera roll on a
// phone), each upload with its progress bar and then its state, updated without a
// reload, and the gallery of all the user's photos, loaded as it scrolls.
import { useEffect, useRef, useState } from "preact/hooks";
import { ErrorText, Link, PageTitle } from "../components";
import { ACCEPT, formatBytes } from "../lib/files";
import { formatDate, lang, t } from "../lib/i18n";
import { addFiles, clearFinished, gallery, imageUpdated, loadMore, uploads, type UploadTask } from "../lib/photos";
import { messageOf } from "../lib/problems";
import { useStore } from "../lib/store";
import { call, type Image } from "../api/client";

export function Photos() {
  const tasks = useStore(uploads);
  const g = useStore(gallery);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (g.next === undefined) void loadMore();
  }, []);

  // Infinite scroll: the next page when the end of the gallery comes into view.
  useEffect(() => {
    const end = sentinel.current;
    if (!end || !("IntersectionObserver" in window)) return;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void loadMore();
    }, { rootMargin: "400px" });
    observer.observe(end);
    return () => observer.disconnect();
  }, [g.next === null]);

  // A page that did not fill the screen leaves the end in view: no new intersection
  // will come, so look again after each page.
  useEffect(() => {
    const end = sentinel.current;
    if (!end || g.loading || !g.next) return;
    if (end.getBoundingClientRect().top < window.innerHeight + 400) void loadMore();
  }, [g.items.length, g.next, g.loading]);

  function take(files: FileList | null) {
    if (files && files.length > 0) void addFiles(Array.from(files));
  }

  const finished = tasks.some((task) => ["ready", "failed", "refused"].includes(task.phase));
  return (
    <section>
      <PageTitle title={t("photos.title")}>{t("photos.title")}</PageTitle>
      <div
        class={over ? "dropzone over" : "dropzone"}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          take(e.dataTransfer?.files ?? null);
        }}
      >
        <svg aria-hidden="true" viewBox="0 0 24 24" width="36" height="36">
          <path fill="currentColor" d="M19 13v6H5v-6H3v6a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2v-6h-2Zm-6-.83 2.59-2.58L17 11l-5 5-5-5 1.41-1.41L11 12.17V3h2v9.17Z" transform="rotate(180 12 12)" />
        </svg>
        <p class="drop-title">{t("photos.drop")}</p>
        <p class="muted">{t("photos.or")}</p>
        <label class="button primary file-button">
          {t("photos.pick")}
          <input
            ref={input}
            id="photo-input"
            class="file-input"
            type="file"
            name="photos"
            accept={ACCEPT}
            multiple
            aria-describedby="photo-rules"
            onChange={(e) => {
              take(e.currentTarget.files);
              e.currentTarget.value = "";
            }}
          />
        </label>
        <p id="photo-rules" class="muted small">
          {t("photos.rules")}
        </p>
      </div>

      {tasks.length > 0 ? (
        <section aria-labelledby="uploads-heading" class="uploads">
          <div class="heading-row">
            <h2 id="uploads-heading">{t("photos.uploads")}</h2>
            {finished ? (
              <button type="button" class="button small" onClick={clearFinished}>
                {t("photos.clear")}
              </button>
            ) : null}
          </div>
          <ul class="upload-list">
            {tasks.map((task) => (
              <UploadRow key={task.key} task={task} />
            ))}
          </ul>
        </section>
      ) : null}

      <section aria-labelledby="gallery-heading">
        <h2 id="gallery-heading">{t("photos.gallery")}</h2>
        {g.items.length > 0 ? (
          <ul class="gallery">
            {g.items.map((image) => (
              <li key={image.id}>
                <Thumb image={image} />
              </li>
            ))}
          </ul>
        ) : g.next === null && !g.loading ? (
          <p class="muted">{t("photos.empty")}</p>
        ) : null}
        <ErrorText>{g.problem ? messageOf(g.problem) : null}</ErrorText>
        <div ref={sentinel} class="sentinel" />
        {g.loading ? (
          <p class="muted" role="status">
            {t("app.loading")}
          </p>
        ) : g.next ? (
          <button type="button" class="button" onClick={() => void loadMore()}>
            {t("photos.more")}
          </button>
        ) : g.next === null && g.items.length > 0 ? (
          <p class="muted small">{t("photos.end")}</p>
        ) : null}
      </section>
    </section>
  );
}

// Presigned URLs last 5 minutes; a gallery left open longer (or scrolled to later) gets
// fresh ones for the images whose thumbnail failed to load, at most every 30 s each.
const refreshed = new Map<string, number>();
async function refreshUrls(id: string): Promise<void> {
  if (Date.now() - (refreshed.get(id) ?? 0) < 30_000) return;
  refreshed.set(id, Date.now());
  try {
    imageUpdated((await call("get", "/v1/images/{id}", { path: { id } })).data);
  } catch {
    // gone or signed out: the gallery learns it elsewhere
  }
}

function thumbOf(image: Image): string | undefined {
  return image.variants.find((v) => v.name === "thumb")?.url;
}

function Thumb({ image }: { image: Image }) {
  const url = thumbOf(image);
  const date = formatDate(image.created_at);
  return (
    <Link href={`/photos/${image.id}`} class="thumb" aria-label={t("photos.open", { date })} data-status={image.status}>
      {url ? (
        <img src={url} alt={t("photo.thumbAlt", { date })} width={256} height={256} loading="lazy" decoding="async" onError={() => void refreshUrls(image.id)} />
      ) : (
        <span class={`placeholder ${image.status}`}>{image.status === "failed" ? t("photos.failed") : t(`photos.phase.${image.status === "uploading" ? "finishing" : image.status}`)}</span>
      )}
    </Link>
  );
}

function UploadRow({ task }: { task: UploadTask }) {
  const locale = lang.get();
  const percent = new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 }).format(task.progress);
  let state: string;
  if (task.phase === "uploading") state = t("photos.phase.uploading", { percent });
  else if (task.phase === "refused") state = t("photos.phase.refused", { reason: messageOf(task.problem) });
  else if (task.phase === "failed") state = t("photos.phase.failed", { reason: task.image?.error ?? "" });
  else state = t(`photos.phase.${task.phase}`);
  const thumb = task.image ? thumbOf(task.image) : undefined;
  const bad = task.phase === "refused" || task.phase === "failed";
  return (
    <li class={`upload ${task.phase}`} data-phase={task.phase}>
      <div class="upload-thumb">
        {thumb && task.image ? (
          <Link href={`/photos/${task.image.id}`}>
            <img src={thumb} alt={task.name} width={56} height={56} />
          </Link>
        ) : (
          <span aria-hidden="true" class="upload-icon" />
        )}
      </div>
      <div class="upload-body">
        <p class="upload-name">
          <span class="name">{task.name}</span>
          <span class="muted small">
            {formatBytes(task.size, locale)}
            {task.direct ? ` · ${t("photos.direct")}` : ""}
          </span>
        </p>
        {task.phase === "uploading" || task.phase === "waiting" || task.phase === "finishing" ? (
          <progress max={1} value={task.phase === "waiting" ? 0 : task.progress} aria-label={t("photos.progress", { name: task.name })} />
        ) : null}
        <p class={bad ? "upload-state error" : "upload-state"} role={bad ? "alert" : undefined}>
          {state}
        </p>
      </div>
    </li>
  );
}
