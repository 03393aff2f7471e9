/**
 * The gateway's errors, in OpenAI's shape: HTTP status + `{"error": {message, type, param, code}}`.
 * `code` is a string (OpenAI's convention; vLLM sends the status number, clients accept both).
 */

export type EdgeErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "timeout_error"
  | "service_unavailable_error";

export interface EdgeErrorBody {
  error: { message: string; type: EdgeErrorType; param: string | null; code: string | null };
}

export type EdgeErrorStatus = 400 | 401 | 403 | 404 | 405 | 413 | 415 | 429 | 500 | 502 | 503 | 504;

export function errorBody(message: string, type: EdgeErrorType, param: string | null = null, code: string | null = null): EdgeErrorBody {
  return { error: { message, type, param, code } };
}

/** A thrown error that becomes exactly this response (status, body, extra headers). */
export class EdgeError extends Error {
  override name = "EdgeError";
  constructor(
    readonly status: EdgeErrorStatus,
    readonly body: EdgeErrorBody,
    readonly headers: Record<string, string> = {},
  ) {
    super(body.error.message);
  }
}

const JSON_HEADERS = { "content-type": "application/json" } as const;

export function errorResponse(status: EdgeErrorStatus, body: EdgeErrorBody, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

export const badRequest = (message: string, param: string | null = null, code: string | null = "invalid_value") =>
  new EdgeError(400, errorBody(message, "invalid_request_error", param, code));

export const unauthorized = (message: string, code = "invalid_api_key") =>
  new EdgeError(401, errorBody(message, "authentication_error", null, code), { "www-authenticate": 'Bearer realm="fairspec"' });

export const forbidden = (message: string, code = "forbidden") => new EdgeError(403, errorBody(message, "permission_error", null, code));

export const notFound = (message: string, code = "not_found", param: string | null = null) =>
  new EdgeError(404, errorBody(message, "not_found_error", param, code));

export const tooLarge = (maxBytes: number) =>
  new EdgeError(413, errorBody(`The request body exceeds ${maxBytes} bytes.`, "invalid_request_error", null, "body_too_large"));

export const rateLimited = (retryAfterS: number, message: string, code = "rate_limit_exceeded") =>
  new EdgeError(429, errorBody(message, "rate_limit_error", null, code), { "retry-after": String(retryAfterS) });

export const unavailable = (message: string, code: string, retryAfterS?: number) =>
  new EdgeError(503, errorBody(message, "service_unavailable_error", null, code), retryAfterS === undefined ? {} : { "retry-after": String(retryAfterS) });

export const badGateway = (message: string, code = "origin_unavailable") => new EdgeError(502, errorBody(message, "server_error", null, code));

export const gatewayTimeout = (message: string, code = "origin_timeout") => new EdgeError(504, errorBody(message, "timeout_error", null, code));
