// The API client. Paths, bodies and answers are typed from the OpenAPI document
// (schema.d.ts is generated from docs/api/openapi.yaml by `npm run gen`).
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Poll = Schemas["Poll"];
export type Results = Schemas["Results"];
export type Ballot = Schemas["Ballot"];
export type Image = Schemas["Image"];
export type Tokens = Schemas["Tokens"];
export type NewPoll = Schemas["NewPoll"];
export type Problem = Schemas["Problem"];

type Method = "get" | "post" | "delete";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
type JsonOf<R> = R extends { content: { "application/json": infer J } } ? J : undefined;
type Success<O> = O extends { responses: infer R }
  ? { [K in keyof R]: K extends 200 | 201 | 202 | 204 ? JsonOf<R[K]> : never }[keyof R]
  : never;
type BodyOf<O> = O extends { requestBody?: { content: { "application/json": infer B } } } ? B : never;
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? Q : never;

export interface RequestOptions<O> {
  path?: Record<string, string>;
  query?: QueryOf<O>;
  body?: BodyOf<O>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A refusal or failure, from the problem+json body the API answers with. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly retryAfter: number | null = null,
    readonly requestId: string | null = null,
  ) {
    super(detail);
  }
}

/** What supplies the access token; set by the session module (auth.ts). */
export interface TokenSource {
  token(): Promise<string | null>;
  /** After a 401: refresh once; true if a new token is there to retry with. */
  renew(): Promise<boolean>;
}
let tokens: TokenSource = { token: async () => null, renew: async () => false };
export function useTokenSource(source: TokenSource): void {
  tokens = source;
}

export function retryAfterOf(headers: Headers): number | null {
  const value = headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, Math.round(seconds));
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.round((at - Date.now()) / 1000));
}

export async function problemOf(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let detail = response.statusText;
  try {
    const body = (await response.json()) as Partial<Problem>;
    if (typeof body.code === "string") code = body.code;
    if (typeof body.detail === "string") detail = body.detail;
  } catch {
    // not a problem body (a proxy in between, a cut connection): keep the status
  }
  return new ApiError(response.status, code, detail, retryAfterOf(response.headers), response.headers.get("X-Request-ID"));
}

export function networkError(): ApiError {
  return new ApiError(0, "network", "The network request failed.");
}

export function urlOf(path: string, params?: Record<string, string>, query?: object): string {
  let url = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params?.[name] ?? ""));
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null) search.set(key, String(value));
  }
  const qs = search.toString();
  if (qs) url += "?" + qs;
  return url;
}

/**
 * One API call. Authenticated when signed in; a 401 on a token that the server no longer
 * takes (expired while the tab slept) is refreshed once and retried.
 */
export async function call<P extends keyof paths, M extends Method & keyof paths[P]>(
  method: M,
  path: P,
  options: RequestOptions<Operation<P, M>> = {},
): Promise<{ data: Success<Operation<P, M>>; status: number; headers: Headers }> {
  const url = urlOf(path as string, options.path, options.query as object | undefined);
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    const token = await tokens.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let response: Response;
    try {
      response = await fetch(url, { method: method.toUpperCase(), headers, body, signal: options.signal ?? null });
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      throw networkError();
    }
    if (response.status === 401 && token && attempt === 0 && (await tokens.renew())) continue;
    if (!response.ok) throw await problemOf(response);
    const text = response.status === 204 ? "" : await response.text();
    return { data: (text ? JSON.parse(text) : undefined) as Success<Operation<P, M>>, status: response.status, headers: response.headers };
  }
}
