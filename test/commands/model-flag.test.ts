/**
 * `--model` means one thing in every command: a Hugging Face folder or a hub id found in the local HF cache loads
 * those weights and that tokenizer; from-scratch sizes are spelled scratch-SIZE; a hub id that is not cached fails
 * with one line saying where it looked. The cache is a fake one in the real hub layout
 * (models--org--name/{blobs, snapshots/<rev>/<file> → ../../blobs/<hash>, refs/main}) built from tiny-random-gpt2.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runCli } from "../helpers/cli.ts";

const FIXTURE = resolve(import.meta.dir, "../fixtures/tiny-random-gpt2");
const REV = "0123456789abcdef0123456789abcdef01234567";
let root: string;
let cache: string;
let empty: string;

/** The hub cache layout huggingface_hub writes: blobs by hash, snapshot files as relative symlinks to them. */
function cacheRepo(hub: string, repo: string): string {
  const repoDir = join(hub, `models--${repo.replace("/", "--")}`);
  const snapshot = join(repoDir, "snapshots", REV);
  mkdirSync(join(repoDir, "blobs"), { recursive: true });
  mkdirSync(snapshot, { recursive: true });
  mkdirSync(join(repoDir, "refs"), { recursive: true });
  for (const file of readdirSync(FIXTURE)) {
    const bytes = readFileSync(join(FIXTURE, file));
    const hash = createHash("sha256").update(bytes).digest("hex");
    writeFileSync(join(repoDir, "blobs", hash), bytes);
    symlinkSync(join("..", "..", "blobs", hash), join(snapshot, file));
  }
  writeFileSync(join(repoDir, "refs", "main"), REV);
  return snapshot;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "model-flag-"));
  cache = join(root, "hub");
  empty = join(root, "empty-hub");
  cacheRepo(cache, "openai-community/gpt2");
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const withCache = (args: string[]) => runCli(args, { HF_HUB_CACHE: cache, COT_DISTILL_CACHE: join(root, "cache") });
const trainArgs = (model: string, out: string) => [
  "train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", model, "--rationale-filter", "any",
  "--limit", "4", "--epochs", "1", "--batch-size", "4", "--max-seq-length", "256", "--seed", "0", "--out", join(root, out), "--db", join(root, "db.sqlite"), "--json",
];

describe("--model in every command", () => {
  test("score: a hub id in the cache scores exactly as the folder it resolves to", () => {
    const byId = withCache(["score", "--model", "openai-community/gpt2", "--text", "hello world", "--json"]);
    const byAlias = withCache(["score", "--model", "gpt2", "--text", "hello world", "--json"]);
    const byDir = withCache(["score", "--model", FIXTURE, "--text", "hello world", "--json"]);
    expect(byId.code).toBe(0);
    expect(JSON.parse(byId.stdout)).toEqual(JSON.parse(byDir.stdout));
    expect(JSON.parse(byAlias.stdout)).toEqual(JSON.parse(byDir.stdout));
  });

  test("preview: the model's own tokenizer", () => {
    const args = ["preview", "--dataset", "cqa", "--split", "train", "--index", "0", "--placement", "after", "--selection", "full", "--rationale-filter", "any", "--json"];
    const byModel = JSON.parse(withCache([...args, "--model", "gpt2"]).stdout);
    const byTokenizer = JSON.parse(withCache([...args, "--tokenizer", FIXTURE]).stdout);
    expect(byModel.rationale_tokens).toEqual(byTokenizer.rationale_tokens);
  });

  test("train --model gpt2 fine-tunes the cached weights with their tokenizer; scratch-micro trains from scratch", () => {
    const pretrained = withCache(trainArgs("gpt2", "pretrained"));
    expect(pretrained.code).toBe(0);
    const settings = JSON.parse(readFileSync(join(root, "pretrained", "run.json"), "utf8"));
    expect(settings.model).toBe("gpt2");
    expect(settings.modelConfig).toMatchObject({ nLayer: 5, nHead: 4, nEmbd: 32, vocabSize: 1000, nPositions: 512 });
    expect(settings.tokenizer).toContain(join("models--openai-community--gpt2", "snapshots", REV));
    const vocab = (dir: string) => JSON.parse(readFileSync(join(dir, "vocab.json"), "utf8"));
    expect(vocab(join(root, "pretrained", "model"))).toEqual(vocab(FIXTURE));

    const scratch = withCache(trainArgs("scratch-micro", "scratch"));
    expect(scratch.code).toBe(0);
    const fresh = JSON.parse(readFileSync(join(root, "scratch", "run.json"), "utf8"));
    expect(fresh.modelConfig).toMatchObject({ nLayer: 2, nEmbd: 64, vocabSize: 2048 });
  }, 240_000);

  test("a hub id not in the cache fails with one line saying where it looked; bare sizes are not from-scratch names", () => {
    const missing = runCli(trainArgs("gpt2", "missing"), { HF_HUB_CACHE: empty });
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(
      `cot-distill: --model "gpt2" is neither a model folder nor in the Hugging Face cache (looked in ${empty}/models--gpt2/snapshots, ${empty}/models--openai-community--gpt2/snapshots; set HF_HUB_CACHE or HF_HOME); to train from scratch, name a size: scratch-gpt2, scratch-gpt2-medium, scratch-gpt2-large, scratch-small, scratch-tiny, scratch-micro`,
    );
    const scoreMissing = runCli(["score", "--model", "gpt2", "--text", "x"], { HF_HUB_CACHE: empty });
    expect(scoreMissing.code).toBe(1);
    expect(scoreMissing.stderr).toContain(`looked in ${empty}/models--gpt2/snapshots`);
    const bare = runCli(trainArgs("micro", "bare"), { HF_HUB_CACHE: empty });
    expect(bare.stderr.trim()).toMatch(/--model "micro" is neither a model folder .*name a size: .*scratch-micro$/);
    const typo = runCli(trainArgs("scratch-huge", "typo"), { HF_HUB_CACHE: empty });
    expect(typo.stderr.trim()).toBe("cot-distill: unknown from-scratch size \"scratch-huge\" (known: scratch-gpt2, scratch-gpt2-medium, scratch-gpt2-large, scratch-small, scratch-tiny, scratch-micro)");
    // train-lm says the same
    const lm = runCli(["train-lm", "--model", "gpt2", "--data", FIXTURE + "/merges.txt", "--steps", "1", "--out", join(root, "lm")], { HF_HUB_CACHE: empty });
    expect(lm.code).toBe(1);
    expect(lm.stderr).toContain("neither a model folder nor in the Hugging Face cache");
  });
});
