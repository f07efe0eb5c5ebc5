/**
 * Where client-named things live: the ONE resolver every name a request (or a flag) gives for a run, a model, a
 * rationale source or a dataset goes through before anything touches the disk.
 *
 * The server resolves inside configured roots (runs directory; models directory and the Hugging Face hub cache;
 * data directory), set by `serve` flags or the environment. A name that is absolute, climbs out with "..", or —
 * once symlinks are followed — lands outside its root is refused; and every refusal that depends on the file system
 * (missing, outside after symlinks, wrong kind of thing) is the SAME 404 with the same text, so a client learns
 * nothing about what exists outside the roots, and never sees a byte of a file.
 *
 * The CLI, run by the user on their own machine, resolves through the same code in "any path" mode: free paths.
 *
 *   const roots = serverRoots({ runs: "runs" });            // or anyPathRoots() in the CLI
 *   roots.resolve("model", "gpt2")                          // → /home/u/.cache/huggingface/hub/models--gpt2/snapshots/…
 *   roots.resolve("rationales", "mine/cqa.jsonl")           // → <data root>/mine/cqa.jsonl
 *   roots.resolve(["run", "model"], ref)                    // a run folder or a model folder, whichever it is
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { datasetsDir } from "./data/registry.ts";
import { UserError } from "./errors.ts";
import { findInHubCache, hubCacheDir } from "./model/hf.ts";

/** What a client may name. */
export type RefKind = "run" | "model" | "rationales" | "dataset";

export interface RootDirs {
  /** Run folders (HTTP-started runs go to <runs>/http; experiment grids are its sub-folders). */
  runs: string;
  /** Model folders by relative path. */
  models: string;
  /** The Hugging Face hub cache, where hub ids ("gpt2", "org/name") are found. */
  hfCache: string;
  /** Rationale files (JSON lines) and other client-named data files. */
  data: string;
  /** Dataset folders (the registry's datasets/). */
  datasets: string;
}

/** Environment variables naming the roots (the `serve` flags of the same names override them). */
export const ROOT_ENV = {
  runs: "COT_DISTILL_RUNS",
  models: "COT_DISTILL_MODELS",
  data: "COT_DISTILL_DATA",
} as const;

const WHERE: Record<RefKind, string> = {
  run: "the runs root",
  model: "the models root or the Hugging Face cache",
  rationales: "the data root",
  dataset: "the datasets root",
};

const DATASET_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** A hub repo id as the hub spells them: "name" or "org/name". */
const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(\/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$/;

/** True when `path` is `root` or inside it (both absolute and already free of symlinks). */
export function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/** The path with every symlink followed, or null when it does not exist. */
function real(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

const isDir = (path: string) => statSync(path).isDirectory();
const isFile = (path: string) => statSync(path).isFile();
const isModelDir = (path: string) => isDir(path) && existsSync(join(path, "config.json"));
/** A run folder: one the train command made (run.json), or one being made (the server registers it first). */
const isRunDir = (path: string) => isDir(path);

export class Roots {
  constructor(
    readonly dirs: RootDirs,
    /** The CLI's mode: any path the user names is taken as is (relative to the current directory). */
    readonly anyPath = false,
  ) {}

  /**
   * The absolute path `ref` names as one of `kinds` (tried in order), or a UserError: 400 for a name that is not
   * a relative path inside a root (decided from the text alone), 404 — one text per kind, whatever the reason —
   * when nothing of that kind is there.
   */
  resolve(kinds: RefKind | readonly RefKind[], ref: string): string {
    const list = typeof kinds === "string" ? [kinds] : kinds;
    if (this.anyPath) return this.resolveFree(list, ref);
    checkRelative(list[0], ref);
    for (const kind of list) {
      const found = this.lookup(kind, ref);
      if (found) return found;
    }
    throw new UserError(`no ${list.join(" or ")} "${ref}" in ${list.map((k) => WHERE[k]).join(" or ")}`, 404);
  }

  /** A message with the roots' absolute paths replaced by their names ("<data>/x.jsonl"): for text a client sees. */
  redact(message: string): string {
    if (this.anyPath) return message;
    const named: Array<[string, string]> = [
      [this.dirs.data, "<data>"],
      [this.dirs.runs, "<runs>"],
      [this.dirs.models, "<models>"],
      [this.dirs.hfCache, "<hf-cache>"],
      [this.dirs.datasets, "<datasets>"],
    ];
    const withReal = named.flatMap(([dir, name]) => [[dir, name], [real(dir) ?? dir, name]] as Array<[string, string]>);
    // longest first: a root inside another is named as itself
    withReal.sort((a, b) => b[0].length - a[0].length);
    return withReal.reduce((text, [dir, name]) => text.replaceAll(dir, name), message);
  }

  /** The textual check alone (400 for an absolute path, "..", …): for names looked up elsewhere, e.g. run ids. */
  checkName(kind: RefKind, ref: string): void {
    if (!this.anyPath) checkRelative(kind, ref);
  }

  /** Whether an absolute path (e.g. a run folder from the run index) lies inside the root of `kind`. */
  contains(kind: RefKind, path: string): boolean {
    if (this.anyPath) return true;
    const found = real(path);
    return found !== null && this.rootsOf(kind).some((root) => within(root, found));
  }

  /** Whether `path` is one of the roots of `kind` itself (never to be deleted as if it were one thing inside). */
  isRoot(kind: RefKind, path: string): boolean {
    const found = real(path);
    return found !== null && this.rootsOf(kind).includes(found);
  }

  /** The root folders of a kind, symlinks followed (a root that does not exist holds nothing). */
  private rootsOf(kind: RefKind): string[] {
    const dirs = kind === "run" ? [this.dirs.runs] : kind === "model" ? [this.dirs.models, this.dirs.hfCache] : kind === "rationales" ? [this.dirs.data] : [this.dirs.datasets];
    return dirs.flatMap((dir) => real(resolve(dir)) ?? []);
  }

  private lookup(kind: RefKind, ref: string): string | null {
    if (kind === "dataset") return DATASET_NAME.test(ref) ? ref : null; // the registry finds it by name
    const accept = kind === "model" ? isModelDir : kind === "run" ? isRunDir : isFile;
    const [first, ...others] = this.rootsOf(kind);
    const candidates = first === undefined ? [] : [join(first, ref)];
    if (kind === "model") {
      // a hub id is looked up in the cache; a relative folder in the models root
      const cache = real(resolve(this.dirs.hfCache));
      if (cache && HUB_ID.test(ref)) candidates.push(findInHubCache(ref, cache) ?? "");
      candidates.push(...others.map((root) => join(root, ref)));
    }
    for (const candidate of candidates) {
      const found = candidate ? real(candidate) : null;
      if (found && this.rootsOf(kind).some((root) => within(root, found)) && accept(found)) return found;
    }
    return null;
  }

  private resolveFree(kinds: readonly RefKind[], ref: string): string {
    for (const kind of kinds) {
      if (kind === "dataset") return ref;
      if (kind === "model") {
        if (existsSync(ref) && isDir(ref)) return resolve(ref);
        const hub = HUB_ID.test(ref) ? findInHubCache(ref, this.dirs.hfCache) : undefined;
        if (hub) return hub;
        continue;
      }
      if (existsSync(ref)) return resolve(ref);
    }
    const last = kinds.at(-1)!;
    if (last === "model") throw new UserError(`model "${ref}" is neither a folder nor in the Hugging Face cache at ${this.dirs.hfCache}`, 404);
    if (last === "rationales") return resolve(ref); // the loader says what is wrong with the file, with its path
    throw new UserError(`no ${kinds.join(" or ")} folder "${ref}"`, 404);
  }
}

/** The textual checks: a relative path without "..", NUL or backslashes, of sane length. 400 otherwise. */
function checkRelative(kind: RefKind, ref: string): void {
  const parts = ref.split("/");
  if (ref.length === 0 || ref.length > 1_000 || isAbsolute(ref) || ref.includes("\\") || ref.includes("\0") || parts.includes("..") || ref.startsWith("~")) {
    throw new UserError(`${kind} "${ref.slice(0, 200)}" must be a name or a relative path inside ${WHERE[kind]} (no absolute paths, no "..")`, 400);
  }
}

/** The server's roots: flags first, then COT_DISTILL_RUNS / _MODELS / _DATA, the HF cache, and the defaults. */
export function serverRoots(flags: Partial<RootDirs> = {}, env: Record<string, string | undefined> = process.env): Roots {
  return new Roots({
    runs: resolve(flags.runs ?? env[ROOT_ENV.runs] ?? "runs"),
    models: resolve(flags.models ?? env[ROOT_ENV.models] ?? "models"),
    hfCache: resolve(flags.hfCache ?? hubCacheDir(env)),
    data: resolve(flags.data ?? env[ROOT_ENV.data] ?? "data"),
    datasets: resolve(flags.datasets ?? datasetsDir()),
  });
}

/** The CLI's resolver: the same rules for hub ids, free paths for everything else. */
export function anyPathRoots(env: Record<string, string | undefined> = process.env): Roots {
  const roots = serverRoots({}, env);
  return new Roots(roots.dirs, true);
}
