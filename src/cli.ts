#!/usr/bin/env bun
/**
 * cot-distill's one entry point. Each subcommand lives in src/commands/<name>.ts and exports `command`; they are
 * imported lazily so `--help` and light commands start fast.
 */
import { isUserError } from "./errors.ts";
import { softwareAdapterEnv } from "./gpu/runtime.ts";
import type { Command } from "./commands/command.ts";

const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  doctor: () => import("./commands/doctor.ts"),
  score: () => import("./commands/score.ts"),
  "train-lm": () => import("./commands/train-lm.ts"),
  inspect: () => import("./commands/inspect.ts"),
  serve: () => import("./commands/serve.ts"),
  rationales: () => import("./commands/rationales.ts"),
  preview: () => import("./commands/preview.ts"),
  train: () => import("./commands/train.ts"),
  eval: () => import("./commands/eval.ts"),
  experiment: () => import("./commands/experiment.ts"),
  demo: () => import("./commands/demo.ts"),
};

async function usage(): Promise<string> {
  const lines = ["usage: bun src/cli.ts <command> [options]   (every command takes --help)", "", "commands:"];
  for (const [name, load] of Object.entries(COMMANDS)) {
    const summary = await load().then((m) => m.command.summary, () => "(not available)");
    lines.push(`  ${name.padEnd(12)} ${summary}`);
  }
  return lines.join("\n");
}

/** Dawn's notes on limits it lowers for lavapipe: noise on every start, not something a user can act on. */
const DAWN_NOISE = /^Warning: maxDynamic\w+ artificially reduced/;

/**
 * GPU commands run in a child process: the Vulkan loader reads its driver list from the C environment, which Bun
 * cannot change in-process (the software adapter needs it), and Dawn writes its notes straight to fd 2, which only
 * a parent can filter — so stderr stays one readable line on errors.
 */
async function rerunForGpu(): Promise<number | null> {
  if (process.env.COT_DISTILL_REEXEC) return null;
  const extra = softwareAdapterEnv() ?? {};
  const child = Bun.spawn([process.execPath, ...process.argv.slice(1)], {
    env: { ...process.env, ...extra, COT_DISTILL_REEXEC: "1" },
    stdio: ["inherit", "inherit", "pipe"],
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  let pending = "";
  const decoder = new TextDecoder();
  const reader = child.stderr.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    pending += decoder.decode(read.value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) if (!DAWN_NOISE.test(line)) process.stderr.write(`${line}\n`);
  }
  if (pending && !DAWN_NOISE.test(pending)) process.stderr.write(pending);
  return await child.exited;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(await usage());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`cot-distill: unknown command "${name}" (try --help)`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.help);
    return 0;
  }
  if (command.usesGpu) {
    const code = await rerunForGpu();
    if (code !== null) return code;
  }
  return await command.run(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (isUserError(err)) {
    console.error(`cot-distill: ${err.message}`);
    process.exitCode = 1;
  } else {
    console.error(err);
    process.exitCode = 70;
  }
}
