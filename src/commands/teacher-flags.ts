/** The teacher-client flags `serve` and `rationales` share; each overrides its environment variable. */
import type { TeacherClientOptions } from "../teacher/client.ts";
import { intFlag } from "./command.ts";

export const teacherClientFlags = {
  options: {
    "teacher-model": { type: "string" },
    "base-url": { type: "string" },
    "max-concurrency": { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
  },
  help: `  --teacher-model M      teacher model (default $TEACHER_MODEL)
  --base-url U           OpenAI-compatible endpoint (default $OPENAI_BASE_URL); the key is read from $OPENAI_API_KEY only
  --max-concurrency C    teacher requests in flight at once, all jobs together (default 8)
  --rpm N, --tpm N       teacher requests / tokens per minute (default unlimited)`,
} as const;

type FlagValues = { [K in keyof (typeof teacherClientFlags)["options"]]?: string };

export function teacherClientOptions(values: FlagValues): TeacherClientOptions {
  const limit = (value: string | undefined, name: string) => (value === undefined ? undefined : intFlag(value, name, undefined, 1));
  const limits = {
    maxConcurrency: limit(values["max-concurrency"], "max-concurrency"),
    requestsPerMinute: limit(values.rpm, "rpm"),
    tokensPerMinute: limit(values.tpm, "tpm"),
  };
  return {
    baseURL: values["base-url"],
    model: values["teacher-model"],
    limits: Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)),
  };
}
