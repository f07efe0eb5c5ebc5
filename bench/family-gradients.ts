/**
 * Our loss and every parameter gradient for one model folder and one batch, for bench/families-vs-transformers.py
 * to compare with transformers' own model of the same folder. Reads the batch from a reference.json (tokens,
 * targets, weights, B, T), writes grad.<HF name> tensors (F32) to --out and prints {"loss", "adapter"} as JSON.
 *
 *   bun bench/family-gradients.ts --model DIR --batch reference.json --out grads.safetensors
 */
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { createKernels } from "../src/gpu/kernels/index.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { DecoderModel } from "../src/model/decoder.ts";
import { loadHFModel } from "../src/model/hf.ts";
import { tensorView } from "../src/model/params.ts";
import { writeSafetensorsFile } from "../src/model/safetensors.ts";

const { values } = parseArgs({ options: { model: { type: "string" }, batch: { type: "string" }, out: { type: "string" } } });
if (!values.model || !values.batch || !values.out) throw new Error("usage: --model DIR --batch reference.json --out FILE");
const summary = await Bun.file(values.batch).json();
const loaded = await loadHFModel(values.model);
const gpu = await acquireGpu();
const model = new DecoderModel(gpu, await createKernels(gpu), loaded.config, { B: summary.B, T: summary.T, training: true });
model.setParameters(loaded.params);
const weights = Float32Array.from(summary.weights as number[]);
model.setBatch({ tokens: Uint32Array.from(summary.tokens), targets: Uint32Array.from(summary.targets), weights, B: summary.B, T: summary.T });
const weightSum = weights.reduce((a, b) => a + b, 0);
const r = new Recorder(gpu);
model.zeroGradients(r);
model.forward(r, 1 / weightSum);
model.backward(r);
r.submit();
const loss = (await model.readLosses()).reduce((a, b) => a + b, 0) / weightSum;
const grads = await model.getGradients();
await writeSafetensorsFile(values.out, model.layout.tensors.map((t) => ({ name: `grad.${t.name}`, shape: t.shape, data: tensorView(grads, t) })));
console.log(JSON.stringify({ loss, adapter: describeGpu(gpu) }));
model.destroy();
gpu.destroy();
