// One photo: the preview, its facts, the original to download, delete.
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, call, networkError, problemOf, type Image } from "../api/client";
import { Confirm, ErrorText, Link, PageTitle, Spinner } from "../components";
import { accessToken } from "../lib/auth";
import { formatBytes } from "../lib/files";
import { formatDate, formatNumber, lang, t } from "../lib/i18n";
import { imageRemoved, imageUpdated } from "../lib/photos";
import { messageOf } from "../lib/problems";
import { navigate } from "../lib/router";

const EXTENSIONS: Record<string, string> = {
  "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/avif": "avif", "image/heic": "heic",
};

export function PhotoView({ id }: { id: string }) {
  const [image, setImage] = useState<Image | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [gone, setGone] = useState(false);
  const [confirm, setConfirm] = useState(false);
  const [downloading, setDownloading] = useState(false);
  const lastRetry = useRef(0);

  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, [id]);

  async function load() {
    try {
      const { data } = await call("get", "/v1/images/{id}", { path: { id } });
      if (!alive.current) return;
      setImage(data);
      imageUpdated(data);
      if (data.status === "queued" || data.status === "processing") setTimeout(() => alive.current && void load(), 1500);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setGone(true);
      else setError(messageOf(e));
    }
  }

  useEffect(() => {
    void load();
  }, [id]);

  if (gone) {
    return (
      <section>
        <PageTitle title={t("err.not_found")}>{t("err.not_found")}</PageTitle>
        <Link href="/photos">{t("photo.back")}</Link>
      </section>
    );
  }
  if (!image) return error ? <ErrorText>{error}</ErrorText> : <Spinner />;

  const preview = image.variants.find((v) => v.name === "preview");
  const date = formatDate(image.created_at);

  // The original through the API's redirect to storage (it needs the Authorization
  // header, which a plain link cannot send), saved under a useful name.
  async function download() {
    setDownloading(true);
    setError(null);
    try {
      const token = await accessToken();
      let response: Response;
      try {
        response = await fetch(`/v1/images/${encodeURIComponent(id)}/original`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      } catch {
        throw networkError();
      }
      if (!response.ok) throw await problemOf(response);
      const url = URL.createObjectURL(await response.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = `nimbus-${id}.${EXTENSIONS[image!.content_type] ?? "bin"}`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setDownloading(false);
    }
  }

  async function remove() {
    setConfirm(false);
    try {
      await call("delete", "/v1/images/{id}", { path: { id } });
      imageRemoved(id);
      navigate("/photos");
    } catch (e) {
      setError(messageOf(e));
    }
  }

  return (
    <article class="photo">
      <p>
        <Link href="/photos">← {t("photo.back")}</Link>
      </p>
      <PageTitle title={t("photo.title")}>{t("photo.title")}</PageTitle>
      <div class="photo-grid">
        <figure class="preview">
          {preview ? (
            <img
              src={preview.url}
              alt={t("photo.alt", { date })}
              width={preview.width}
              height={preview.height}
              onError={() => {
                // Its presigned URL ran out (5 minutes): fetch a fresh one, at most every 10 s.
                if (Date.now() - lastRetry.current < 10_000) return;
                lastRetry.current = Date.now();
                void load();
              }}
            />
          ) : (
            <p class="placeholder big">{image.status === "failed" ? image.error : t("photo.notReady")}</p>
          )}
        </figure>
        <div class="stack">
          <section class="card" aria-labelledby="details-heading">
            <h2 id="details-heading">{t("photo.details")}</h2>
            <dl class="facts">
              <dt>{t("photo.status")}</dt>
              <dd data-status={image.status}>
                {image.status === "failed" ? t("photos.phase.failed", { reason: image.error ?? "" }) : t(`photos.phase.${image.status === "uploading" ? "finishing" : image.status}`)}
              </dd>
              <dt>{t("photo.type")}</dt>
              <dd>{image.content_type}</dd>
              <dt>{t("photo.size")}</dt>
              <dd>{formatBytes(image.bytes, lang.get())}</dd>
              {image.width && image.height ? (
                <>
                  <dt>{t("photo.dimensions")}</dt>
                  <dd>
                    {formatNumber(image.width)} × {formatNumber(image.height)}
                  </dd>
                </>
              ) : null}
              <dt>{t("photo.uploaded")}</dt>
              <dd>{date}</dd>
            </dl>
          </section>
          <ErrorText>{error}</ErrorText>
          <div class="row wrap">
            <button type="button" class="button primary" onClick={() => void download()} disabled={downloading || image.status === "uploading"}>
              {downloading ? t("photo.downloading") : t("photo.download")}
            </button>
            <button type="button" class="button danger" onClick={() => setConfirm(true)}>
              {t("photo.delete")}
            </button>
          </div>
        </div>
      </div>
      <Confirm open={confirm} message={t("photo.deleteConfirm")} confirm={t("photo.delete")} danger onConfirm={() => void remove()} onCancel={() => setConfirm(false)} />
    </article>
  );
}

