// Photos: the upload queue and the gallery, one store each, kept up to date together.
//
// Each file is checked first (type from its bytes, size), then sent with
// XMLHttpRequest, the one browser API that reports upload progress: files up to
// DIRECT_FROM bytes in the body of POST /v1/images, larger ones straight to storage
// through a presigned PUT (POST /v1/images/uploads, PUT, POST …/complete). An accepted
// image is then polled until its thumbnails are ready or it failed with a reason.
import { ApiError, call, networkError, problemOf, type Image } from "../api/client";
import { accessToken, renew } from "./auth";
import { checkFile, type ImageType } from "./files";
import { Store } from "./store";

export const DIRECT_FROM = 4 * 1024 * 1024;
const PARALLEL = 3;

export type Phase = "checking" | "waiting" | "uploading" | "finishing" | "queued" | "processing" | "ready" | "failed" | "refused";

export interface UploadTask {
  key: string;
  name: string;
  size: number;
  phase: Phase;
  progress: number; // 0..1 of the bytes sent
  direct: boolean;
  problem?: ApiError; // refused (by this page or the API)
  image?: Image; // once accepted
  file?: File; // until sent
  type?: ImageType;
}

export interface Gallery {
  items: Image[];
  next: string | null | undefined; // undefined: first page not loaded yet
  loading: boolean;
  problem: ApiError | null;
}

export const uploads = new Store<UploadTask[]>([]);
export const gallery = new Store<Gallery>({ items: [], next: undefined, loading: false, problem: null });

let counter = 0;
let active = 0;

function patch(key: string, change: Partial<UploadTask>): void {
  uploads.update((list) => list.map((t) => (t.key === key ? { ...t, ...change } : t)));
}

export function imageUpdated(image: Image): void {
  gallery.update((g) => {
    const known = g.items.some((i) => i.id === image.id);
    return { ...g, items: known ? g.items.map((i) => (i.id === image.id ? image : i)) : [image, ...g.items] };
  });
  uploads.update((list) => list.map((t) => (t.image?.id === image.id ? { ...t, image, phase: phaseOf(image) } : t)));
}

export function imageRemoved(id: string): void {
  gallery.update((g) => ({ ...g, items: g.items.filter((i) => i.id !== id) }));
  uploads.update((list) => list.filter((t) => t.image?.id !== id));
}

function phaseOf(image: Image): Phase {
  return image.status === "uploading" ? "finishing" : image.status;
}

export function clearFinished(): void {
  uploads.update((list) => list.filter((t) => !["ready", "failed", "refused"].includes(t.phase)));
}

export function resetPhotos(): void {
  uploads.set([]);
  gallery.set({ items: [], next: undefined, loading: false, problem: null });
}

export async function addFiles(files: Iterable<File>): Promise<void> {
  const added: UploadTask[] = [];
  for (const file of files) {
    added.push({ key: `u${++counter}`, name: file.name, size: file.size, phase: "checking", progress: 0, direct: file.size > DIRECT_FROM, file });
  }
  uploads.update((list) => [...added, ...list]);
  await Promise.all(
    added.map(async (task) => {
      const checked = await checkFile(task.file!);
      if ("refusal" in checked) {
        patch(task.key, { phase: "refused", file: undefined, problem: new ApiError(0, checked.refusal, "") });
      } else {
        patch(task.key, { phase: "waiting", type: checked.type });
      }
    }),
  );
  pump();
}

function pump(): void {
  while (active < PARALLEL) {
    const next = uploads.get().find((t) => t.phase === "waiting");
    if (!next) return;
    active++;
    patch(next.key, { phase: "uploading" });
    void send(next).finally(() => {
      active--;
      pump();
    });
  }
}

async function send(task: UploadTask): Promise<void> {
  try {
    const onProgress = (fraction: number) => patch(task.key, { progress: fraction });
    const accepted = task.direct ? await sendDirect(task, onProgress) : await sendThroughApi(task, onProgress);
    const image: Image = {
      id: accepted.id, status: "queued", content_type: task.type!, bytes: task.size, width: null, height: null,
      sha256: null, created_at: new Date().toISOString(), variants: [],
    };
    patch(task.key, { phase: "queued", progress: 1, file: undefined, image });
    imageUpdated(image);
    watch(accepted.id);
  } catch (e) {
    patch(task.key, { phase: "refused", file: undefined, problem: e instanceof ApiError ? e : networkError() });
  }
}

interface Sent {
  status: number;
  body: string;
  headers: Headers;
}

/** One XMLHttpRequest, with upload progress. */
function xhr(method: string, url: string, headers: Record<string, string>, body: Blob, onProgress: (f: number) => void): Promise<Sent> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(method, url);
    for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    request.onload = () => {
      const parsed = new Headers();
      for (const line of request.getAllResponseHeaders().trim().split(/[\r\n]+/)) {
        const at = line.indexOf(":");
        if (at > 0) parsed.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
      }
      resolve({ status: request.status, body: request.responseText, headers: parsed });
    };
    request.onerror = () => reject(networkError());
    request.ontimeout = () => reject(networkError());
    request.send(body);
  });
}

async function refusal(sent: Sent): Promise<ApiError> {
  return problemOf(new Response(sent.body || null, { status: sent.status, headers: sent.headers }));
}

async function authed(send: (token: string) => Promise<Sent>): Promise<Sent> {
  for (let attempt = 0; ; attempt++) {
    const token = await accessToken();
    if (!token) throw new ApiError(401, "missing_token", "");
    const sent = await send(token);
    if (sent.status === 401 && attempt === 0 && (await renew())) continue;
    return sent;
  }
}

async function sendThroughApi(task: UploadTask, onProgress: (f: number) => void): Promise<{ id: string }> {
  const sent = await authed((token) =>
    xhr("POST", "/v1/images", { Authorization: `Bearer ${token}`, "Content-Type": task.type!, Accept: "application/json" }, task.file!, onProgress),
  );
  if (sent.status !== 202) throw await refusal(sent);
  return JSON.parse(sent.body) as { id: string };
}

async function sendDirect(task: UploadTask, onProgress: (f: number) => void): Promise<{ id: string }> {
  const reserved = await call("post", "/v1/images/uploads", { body: { content_type: task.type!, bytes: task.size } });
  const { id, upload_url, headers } = reserved.data;
  // Storage checks the signature over Content-Type and Content-Length (the browser sets
  // the latter from the file).
  const put = await xhr("PUT", upload_url, headers, task.file!, onProgress);
  if (put.status < 200 || put.status > 299) throw new ApiError(put.status, "storage_refused", put.body.slice(0, 200));
  patch(task.key, { phase: "finishing", progress: 1 });
  await call("post", "/v1/images/{id}/complete", { path: { id } });
  return { id };
}

// Images waiting for their worker, polled once a second (every 3 s after a minute).
const watched = new Map<string, number>();
let polling = false;

export function watch(id: string): void {
  if (!watched.has(id)) watched.set(id, Date.now());
  if (!polling) void poll();
}

async function poll(): Promise<void> {
  polling = true;
  try {
    while (watched.size > 0) {
      const oldest = Math.min(...watched.values());
      await new Promise((r) => setTimeout(r, Date.now() - oldest > 60_000 ? 3000 : 1000));
      await Promise.all(
        [...watched.keys()].map(async (id) => {
          try {
            const { data } = await call("get", "/v1/images/{id}", { path: { id } });
            imageUpdated(data);
            if (data.status === "ready" || data.status === "failed") watched.delete(id);
          } catch (e) {
            if (e instanceof ApiError && (e.status === 404 || e.status === 401)) watched.delete(id);
          }
        }),
      );
    }
  } finally {
    polling = false;
  }
}

export async function loadMore(): Promise<void> {
  const g = gallery.get();
  if (g.loading || g.next === null) return;
  gallery.set({ ...g, loading: true, problem: null });
  try {
    const { data } = await call("get", "/v1/me/images", { query: { limit: 24, ...(g.next ? { cursor: g.next } : {}) } });
    gallery.update((now) => {
      const known = new Set(now.items.map((i) => i.id));
      return { items: [...now.items, ...data.items.filter((i) => !known.has(i.id))], next: data.next_cursor, loading: false, problem: null };
    });
    for (const image of data.items) if (image.status === "queued" || image.status === "processing") watch(image.id);
  } catch (e) {
    gallery.update((now) => ({ ...now, loading: false, problem: e instanceof ApiError ? e : networkError() }));
  }
}
