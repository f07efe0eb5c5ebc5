/**
 * Key/value-cache decoding against the uncached path (the whole prefix rerun per token) on every family's fixture
 * (GPT-2, Llama with GQA and Llama 3 rope scaling, Qwen 2/3, Gemma, Gemma 2 with soft-capping, Phi's partial
 * rotary and parallel block) and on the real stories260k: the same greedy tokens for rows of different prompt
 * lengths and budgets, more rows than slots (a finished row's slot is refilled mid-batch), and the cached
 * logits within 1e-5 of the full forward's at every step. Sampled decoding is reproducible from its seed,
 * independent of batching and cache, and greedy at temperature → 0 or a tiny top-p.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { Decoder, paddedBatch, type GenerationRequest } from "../../src/eval/decode.ts";
import { parseSampling } from "../../src/eval/sampling.ts";
import { ggufLlamaToHF, writeConvertedFolder } from "../../src/model/convert-gguf.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { readGgufFile } from "../../src/model/gguf.ts";
import { loadHFModel, type LoadedModel } from "../../src/model/hf.ts";
import { FIXTURE_FAMILIES, TINY_RANDOM_GPT2 } from "../fixtures/reference.ts";
import { relativeError } from "../helpers/numeric.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";

let gpu: Gpu;
let kernels: Kernels;
const temp = mkdtempSync(join(tmpdir(), "cot-decode-"));
beforeAll(async () => {
  gpu = await acquireGpu();
  kernels = await createKernels(gpu);
});
afterAll(() => {
  gpu?.destroy();
  rmSync(temp, { recursive: true, force: true });
});

const never = () => false;

/** Prompts of lengths 1 … 9 with ids spread over the vocabulary, budgets that end rows at different steps. */
function requests(V: number, n: number, budget: number): GenerationRequest[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt: Array.from({ length: 1 + ((i * 4) % 9) }, (_, t) => (7 * i + 13 * t + 1) % V),
    maxNewTokens: budget - (i % 3) * 2,
  }));
}

async function sameTokens(model: LoadedModel, maxLength: number, budget: number) {
  const decoder = new Decoder(gpu, kernels, model.config, model.params, 3, maxLength);
  try {
    const reqs = requests(model.config.vocabSize, 5, budget);
    const cached = await decoder.generate(reqs, never);
    const uncached = await decoder.generate(reqs, never, { cache: false });
    expect(cached).toEqual(uncached);
    expect(cached.map((g) => g.length)).toEqual(reqs.map((r) => Math.min(r.maxNewTokens, maxLength - r.prompt.length)));
    // the stop rule ends a row early, as in evaluation
    const stopped = await decoder.generate(reqs, (ids, row) => row === 1 && ids.length === 2);
    expect(stopped[1]).toEqual(cached[1].slice(0, 2));
    expect(stopped[0]).toEqual(cached[0]);
    return cached;
  } finally {
    decoder.destroy();
  }
}

/** Cached logits at each step against the full forward over the whole sequence so far. */
async function logitsMatch(model: LoadedModel, prompts: number[][], steps: number) {
  const { config, params } = model;
  const T = Math.max(...prompts.map((p) => p.length)) + steps;
  const m = new DecoderModel(gpu, kernels, config, { B: prompts.length, T, training: false });
  m.setParameters(params);
  const cache = m.createCache(prompts.length, T);
  const r = new Recorder(gpu);
  const V = config.vocabSize;
  const sequences = prompts.map((p) => [...p]);
  let worst = 0;
  try {
    for (let step = 0; step <= steps; step++) {
      const tokens: number[] = [], rows: number[] = [], positions: number[] = [], last: number[] = [];
      sequences.forEach((seq, b) => {
        const from = step === 0 ? 0 : seq.length - 1;
        for (let t = from; t < seq.length; t++) tokens.push(seq[t]), rows.push(b), positions.push(t);
        last.push(tokens.length - 1);
      });
      m.forwardCached(r, cache, { tokens: Uint32Array.from(tokens), rows: Uint32Array.from(rows), positions: Uint32Array.from(positions), last: Uint32Array.from(last) });
      r.submit();
      const cached = await m.readCachedLogits(cache, sequences.length);
      const width = Math.max(...sequences.map((s) => s.length));
      m.setBatch(paddedBatch(sequences, width));
      m.forward(r, 0);
      r.submit();
      for (const [b, seq] of sequences.entries()) {
        const full = await m.readLogitsAt(b, seq.length - 1);
        worst = Math.max(worst, relativeError(cached.subarray(b * V, (b + 1) * V), Float64Array.from(full)));
        seq.push((seq.length * 31 + b * 17) % V); // any next token: the comparison is of the logits
      }
    }
  } finally {
    cache.destroy();
    m.destroy();
  }
  return worst;
}

describe("cached decoding equals the uncached path", () => {
  const folders: Array<[string, string]> = [["gpt2", TINY_RANDOM_GPT2], ...FIXTURE_FAMILIES.map((f): [string, string] => [f, join(PROJECT_ROOT, "test/fixtures/families", f)])];
  test.each(folders)("%s: the same greedy tokens, logits within 1e-5 at every step", async (_, dir) => {
    const model = await loadHFModel(dir);
    const maxLength = Math.min(model.config.nPositions, 24);
    const tokens = await sameTokens(model, maxLength, 12);
    expect(new Set(tokens.flat()).size).toBeGreaterThan(1); // the rows do not all repeat one id
    const V = model.config.vocabSize;
    expect(await logitsMatch(model, [[1, 2, 3, 4, 5], [V - 1], [9, 8, 7]], 6)).toBeLessThan(1e-5);
  });

  test("stories260k (real weights): the same greedy continuation of a story, sampled text reproducible", async () => {
    const dir = join(temp, "stories260k");
    await writeConvertedFolder(dir, ggufLlamaToHF(await readGgufFile(join(PROJECT_ROOT, "models/stories260k/stories260K-ctx512.gguf"))));
    const model = await loadHFModel(dir);
    await sameTokens(model, 32, 12);
    const decoder = new Decoder(gpu, kernels, model.config, model.params, 4, 32);
    try {
      const reqs = requests(model.config.vocabSize, 5, 12);
      const sampling = parseSampling({ temperature: 0.9, top_p: 0.95, seed: 7 });
      const a = await decoder.generate(reqs, never, { sampling });
      // same seed: the same text, with the cache or without, and with 2 slots instead of 4 (other rows share each pass)
      expect(await decoder.generate(reqs, never, { sampling })).toEqual(a);
      expect(await decoder.generate(reqs, never, { sampling, cache: false })).toEqual(a);
      const narrow = new Decoder(gpu, kernels, model.config, model.params, 2, 32);
      try {
        expect(await narrow.generate(reqs, never, { sampling })).toEqual(a);
      } finally {
        narrow.destroy();
      }
      const other = await decoder.generate(reqs, never, { sampling: { ...sampling, seed: 8 } });
      expect(other).not.toEqual(a);
      // temperature → 0 and a tiny nucleus are greedy
      const greedy = await decoder.generate(reqs, never);
      expect(await decoder.generate(reqs, never, { sampling: parseSampling({ temperature: 1e-6, seed: 3 }) })).toEqual(greedy);
      expect(await decoder.generate(reqs, never, { sampling: parseSampling({ temperature: 1, top_p: 1e-6, seed: 3 }) })).toEqual(greedy);
      expect(a).not.toEqual(greedy);
    } finally {
      decoder.destroy();
    }
  });
});
