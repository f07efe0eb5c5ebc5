/**
 * An error caused by what the user asked for (bad flag, bad file, missing tensor …). The CLI prints its message as
 * one line and exits non-zero; the HTTP layer answers 4xx. Anything else is a bug and keeps its stack trace.
 */
export class UserError extends Error {
  constructor(message: string, readonly status: 400 | 403 | 404 | 409 | 413 | 422 | 429 = 400, readonly details?: unknown) {
    super(message);
    this.name = "UserError";
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Too much work queued already (HTTP 429): the client should come back after `retryAfterS` seconds. */
export class BusyError extends UserError {
  constructor(message: string, readonly retryAfterS: number) {
    super(message, 429);
  }
}
