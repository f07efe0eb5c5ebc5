/** The teacher-client flags `serve` and `rationales` share; each overrides its environment variable. */
import type { TeacherClientOptions } from "../teacher/client.ts";
import { UserError } from "../errors.ts";
import { intFlag, numberFlag } from "./command.ts";

export const teacherClientFlags = {
  options: {
    "teacher-model": { type: "string" },
    "base-url": { type: "string" },
    "max-concurrency": { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
    "teacher-timeout": { type: "string" },
    "teacher-retries": { type: "string" },
  },
  help: `  --teacher-model M      teacher model (default $TEACHER_MODEL)
  --base-url U           OpenAI-compatible endpoint (default $OPENAI_BASE_URL); the key is read from $OPENAI_API_KEY only
  --max-concurrency C    teacher requests in flight at once, all jobs together (default 8)
  --rpm N, --tpm N       teacher requests / tokens per minute, held over any sliding minute (default unlimited)
  --teacher-timeout S    seconds one teacher attempt may take (default $COT_DISTILL_TEACHER_TIMEOUT or 60)
  --teacher-retries R    attempts after the first on 429, 5xx, timeouts (default $COT_DISTILL_TEACHER_RETRIES or 4)`,
} as const;

type FlagValues = { [K in keyof (typeof teacherClientFlags)["options"]]?: string };

/** A number flag in [min, max]; one readable line otherwise. */
function boundedNumber(value: string, name: string, min: number, max: number): number {
  const n = numberFlag(value, name);
  if (n < min || n > max) throw new UserError(`--${name} must be between ${min} and ${max}, got "${value}"`);
  return n;
}

export function teacherClientOptions(values: FlagValues, env: Record<string, string | undefined> = process.env): TeacherClientOptions {
  const limit = (value: string | undefined, name: string) => (value === undefined ? undefined : intFlag(value, name, undefined, 1));
  const limits = {
    maxConcurrency: limit(values["max-concurrency"], "max-concurrency"),
    requestsPerMinute: limit(values.rpm, "rpm"),
    tokensPerMinute: limit(values.tpm, "tpm"),
  };
  const timeoutS = values["teacher-timeout"] ?? env.COT_DISTILL_TEACHER_TIMEOUT;
  const retries = values["teacher-retries"] ?? env.COT_DISTILL_TEACHER_RETRIES;
  const timeoutMs = timeoutS === undefined ? undefined : 1000 * boundedNumber(timeoutS, "teacher-timeout", 0.001, 3_600);
  const maxAttempts = retries === undefined ? undefined : 1 + intFlag(retries, "teacher-retries", undefined, 0);
  if (maxAttempts !== undefined && maxAttempts > 21) throw new UserError(`--teacher-retries must be at most 20, got ${retries}`);
  return {
    baseURL: values["base-url"],
    model: values["teacher-model"],
    limits: Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(maxAttempts === undefined ? {} : { retry: { maxAttempts } }),
  };
}
