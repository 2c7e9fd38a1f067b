// One message per API error code, in the user's language; the same whether the page or
// the server refused.
import { ApiError } from "../api/client";
import { formatWait, t, type Key } from "./i18n";

const byCode: Record<string, Key> = {
  network: "err.network",
  invalid_email: "err.invalid_email",
  rate_limited: "err.rate_limited",
  resend_cooldown: "err.resend_cooldown",
  too_many_attempts: "err.too_many_attempts",
  invalid_code: "err.invalid_code",
  code_expired: "err.code_expired",
  invalid_code_format: "err.invalid_code_format",
  payload_too_large: "err.payload_too_large",
  unsupported_image_type: "err.unsupported_image_type",
  unsupported_media_type: "err.unsupported_image_type",
  empty_file: "err.empty_file",
  corrupt_image: "err.corrupt_image",
  too_many_pixels: "err.too_many_pixels",
  too_costly_to_decode: "err.too_costly_to_decode",
  too_many_uploads: "err.too_many_uploads",
  upload_mismatch: "err.upload_failed",
  upload_missing: "err.upload_failed",
  storage_refused: "err.upload_failed",
  not_uploading: "err.upload_failed",
  already_voted: "err.already_voted",
  poll_closed: "err.poll_closed",
  invalid_options: "err.invalid_options",
  not_owner: "err.not_owner",
  not_found: "err.not_found",
  too_many_streams: "err.too_many_streams",
  dependency_unavailable: "err.unavailable",
  service_unavailable: "err.unavailable",
  too_many_connections: "err.unavailable",
  invalid_token: "err.signed_out",
  missing_token: "err.signed_out",
  invalid_title: "new.err.title",
  invalid_time: "new.err.times",
};

export function messageOf(error: unknown, params: Record<string, string | number> = {}): string {
  if (!(error instanceof ApiError)) return t("err.other", { code: String((error as Error)?.name ?? "error") });
  const key = byCode[error.code] ?? (error.status >= 500 ? "err.unavailable" : "err.other");
  const wait = formatWait(error.retryAfter ?? 60);
  return t(key, { wait, code: error.code, max: 1, ...params });
}
