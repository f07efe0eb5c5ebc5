/** Teacher failures, typed so the HTTP layer can map them (503: try later, 502: bad upstream answer, 504: timeout). */

export type TeacherFailureKind =
  | "rate_limited" // 429 after retries exhausted
  | "timeout" // no answer within the request timeout, after retries
  | "connection" // could not reach the endpoint, after retries
  | "upstream" // 5xx after retries, or a 4xx the teacher API answered (bad key, unknown model …)
  | "bad_response" // malformed JSON / no choices, after retries
  | "truncated" // finish_reason "length": the rationale was cut off
  | "content_filter" // finish_reason "content_filter"
  | "context_length"; // the prompt is longer than the teacher's context window (never retried: shorten the template)

export class TeacherError extends Error {
  constructor(
    message: string,
    readonly kind: TeacherFailureKind,
    /** What an HTTP layer should answer. */
    readonly status: 422 | 502 | 503 | 504,
    readonly attempts: number,
    /** The teacher API's own HTTP status, when it answered one. */
    readonly upstreamStatus?: number,
  ) {
    super(message);
    this.name = "TeacherError";
  }
}

export function isTeacherError(err: unknown): err is TeacherError {
  return err instanceof TeacherError;
}
