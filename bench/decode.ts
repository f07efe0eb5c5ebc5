/**
 * Decoding tokens/s with the key/value cache against the uncached path (the whole prefix rerun per new token, the
 * decoder before the cache), measured in the same run on the same decoder: stories260k (a real trained Llama,
 * converted from models/stories260k's GGUF) and a scratch GPT-2 (preset "tiny" by default), ROWS rows of prompts
 * of different lengths, NEW new tokens each (no stop rule), greedy. Prints figures; never fails on speed.
 *
 *   npm run bench -- decode   (or: bash scripts/bench.sh decode)
 *   bun bench/decode.ts [--rows 8] [--new 64] [--scratch tiny] [--json]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Decoder, type GenerationRequest } from "../src/eval/decode.ts";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { createKernels } from "../src/gpu/kernels/index.ts";
import { presetConfig } from "../src/model/config.ts";
import { ggufLlamaToHF, writeConvertedFolder } from "../src/model/convert-gguf.ts";
import { readGgufFile } from "../src/model/gguf.ts";
import { loadHFModel } from "../src/model/hf.ts";
import { initParams } from "../src/model/init.ts";
import { paramLayout } from "../src/model/params.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { PROJECT_ROOT } from "../src/gpu/runtime.ts";

const { values } = parseArgs({ options: { rows: { type: "string" }, new: { type: "string" }, scratch: { type: "string" }, json: { type: "boolean" } } });
const ROWS = Number(values.rows ?? 8);
const NEW = Number(values.new ?? 64);

const gpu = await acquireGpu();
const kernels = await createKernels(gpu);
const temp = mkdtempSync(join(tmpdir(), "bench-decode-"));

/** Prompts of 8 … 8 + 3·(ROWS−1) tokens: rows of different lengths, as evaluation batches are. */
function requests(V: number): GenerationRequest[] {
  return Array.from({ length: ROWS }, (_, i) => ({ prompt: Array.from({ length: 8 + 3 * i }, (_, t) => (1 + 7 * i + 13 * t) % V), maxNewTokens: NEW }));
}

async function measure(name: string, config: ModelConfig, params: Float32Array) {
  const reqs = requests(config.vocabSize);
  const maxLength = Math.max(...reqs.map((r) => r.prompt.length)) + NEW;
  const decoder = new Decoder(gpu, kernels, config, params, ROWS, maxLength);
  const never = () => false;
  try {
    await decoder.generate(reqs.slice(0, 2).map((r) => ({ ...r, maxNewTokens: 2 })), never); // warm-up: pipelines, bind groups
    await decoder.generate(reqs.slice(0, 2).map((r) => ({ ...r, maxNewTokens: 2 })), never, { cache: false });
    const time = async (cache: boolean) => {
      const started = performance.now();
      const out = await decoder.generate(reqs, never, { cache });
      const seconds = (performance.now() - started) / 1000;
      return { tokens: out.flat().length, seconds, out };
    };
    const cached = await time(true);
    const uncached = await time(false);
    const same = JSON.stringify(cached.out) === JSON.stringify(uncached.out);
    return {
      model: name, rows: ROWS, newTokens: NEW,
      cachedTokensPerS: cached.tokens / cached.seconds, uncachedTokensPerS: uncached.tokens / uncached.seconds,
      speedup: uncached.seconds / cached.seconds, sameTokens: same,
    };
  } finally {
    decoder.destroy();
  }
}

try {
  const results = [];
  const stories = join(temp, "stories260k");
  await writeConvertedFolder(stories, ggufLlamaToHF(await readGgufFile(join(PROJECT_ROOT, "models/stories260k/stories260K-ctx512.gguf"))));
  const loaded = await loadHFModel(stories);
  results.push(await measure("stories260k", loaded.config, loaded.params));
  const scratch = values.scratch ?? "tiny";
  const config = presetConfig(scratch);
  results.push(await measure(`scratch-${scratch}`, config, initParams(paramLayout(config), 0)));
  if (values.json) console.log(JSON.stringify({ adapter: describeGpu(gpu), results }));
  else {
    console.log(`adapter: ${describeGpu(gpu)}`);
    for (const r of results) {
      console.log(`${r.model}: ${r.rows} rows × ${r.newTokens} new tokens: cached ${r.cachedTokensPerS.toFixed(1)} tokens/s, uncached ${r.uncachedTokensPerS.toFixed(1)} tokens/s (×${r.speedup.toFixed(2)}); same tokens: ${r.sameTokens}`);
    }
  }
} finally {
  rmSync(temp, { recursive: true, force: true });
  gpu.destroy();
}
