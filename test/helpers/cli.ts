/** Runs `bun src/cli.ts …` as a user would: a real child process from the project root. */
import { resolve } from "node:path";

export const PROJECT_ROOT = resolve(import.meta.dir, "../..");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string | undefined> = {}): CliResult {
  const child = Bun.spawnSync([process.execPath, "src/cli.ts", ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: child.exitCode, stdout: child.stdout.toString(), stderr: child.stderr.toString() };
}
