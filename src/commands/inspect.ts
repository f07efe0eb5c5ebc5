/** `inspect`: what a model is and whether a training run of it fits the GPU, before any GPU work. */
import { UserError } from "../errors.ts";
import { acquireGpu, describeGpu } from "../gpu/device.ts";
import { presetConfig, type ModelConfig } from "../model/config.ts";
import { readConfig } from "../model/hf.ts";
import { resolveModel } from "../model/ref.ts";
import { type AdapterLimits, fitError, formatBytes, memoryPlan, overruns } from "../model/memory.ts";
import { paramLayout } from "../model/params.ts";
import { loraSettingsOf, trainingMemoryFromFlags, trainingMemoryOptions } from "../distill/run-spec.ts";
import { loraLayout, loraParameterCount } from "../model/lora.ts";
import { type Command, intFlag, numberFlag, parseFlags, requiredFlag } from "./command.ts";

const GROUPS: [name: string, match: (role: string) => boolean][] = [
  ["embeddings", (r) => r === "wte" || r === "wpe"],
  ["attention", (r) => /^(qkv|o|qNorm|kNorm)\./.test(r)],
  ["mlp", (r) => /^(fc|proj)\./.test(r)],
  ["norms", (r) => /^norm/.test(r)],
  ["head", (r) => r.startsWith("head.")],
];

/** Parameter counts by part of the model (a tied head adds nothing: it is the embedding). */
export function parameterGroups(config: ModelConfig): Record<string, number> {
  const groups: Record<string, number> = Object.fromEntries(GROUPS.map(([name]) => [name, 0]));
  for (const slot of paramLayout(config).slots) {
    const group = GROUPS.find(([, match]) => match(slot.role));
    if (!group) throw new Error(`inspect: role ${slot.role} belongs to no group`);
    groups[group[0]] += slot.size;
  }
  return groups;
}

async function modelConfig(model: string): Promise<{ config: ModelConfig; source: string }> {
  const ref = resolveModel(model);
  if (ref.kind === "scratch") return { config: presetConfig(ref.size), source: `${model} (from scratch)` };
  return { config: await readConfig(ref.dir), source: ref.dir };
}

export const command: Command = {
  summary: "a model's family, parameters and the GPU memory a training run needs",
  help: `usage: bun src/cli.ts inspect --model <hf-dir | hub id | scratch-SIZE> [--batch-size B] [--max-tokens T] [--json] [--adapter NAME]
         [--lora-rank R [--lora-alpha A] [--lora-dropout P] [--lora-targets M1,M2]] [--checkpoint-activations] [--gpu-memory GiB]

Reads the model's config.json (no weights) and prints its family and architecture, the parameter count by part
and what is trainable, and the GPU memory a training run of B sequences of T tokens needs: weights, gradients,
AdamW state (m and v), the activations every layer saves for the backward pass, and the backward scratch —
exactly the buffers the trainer allocates. Then checks them against the WebGPU adapter's limits (maxBufferSize,
maxStorageBufferBindingSize): train and train-lm refuse a run that does not fit in the same way. Without an
adapter, the plan alone is printed.
  --batch-size B   sequences per micro-batch (default 4)
  --max-tokens T   tokens per sequence (default 128, at most the model's n_positions)
  --lora-rank R …  the plan of a LoRA run (train's flags): the adapters and their gradients and moments, no base
                   gradients or moments
  --checkpoint-activations  the plan with activation checkpointing (each layer's input kept, one layer's activations)
  --gpu-memory G   also say whether the plan fits a GPU with G GiB of memory (WebGPU does not report it)
  --json           {"model", "family", "parameters", "groups", "trainable", "memory": {...}, "adapter", "fits", "error"}`,
  usesGpu: true,
  async run(argv) {
    const { values } = parseFlags(argv, {
      model: { type: "string" }, "batch-size": { type: "string" }, "max-tokens": { type: "string" },
      json: { type: "boolean" }, adapter: { type: "string" }, "gpu-memory": { type: "string" },
      ...trainingMemoryOptions(),
    });
    const memory = trainingMemoryFromFlags(values);
    const { config, source } = await modelConfig(requiredFlag(values.model, "model"));
    const B = intFlag(values["batch-size"], "batch-size", 4, 1);
    const T = intFlag(values["max-tokens"], "max-tokens", Math.min(128, config.nPositions), 2);
    if (T > config.nPositions) throw new UserError(`--max-tokens ${T} is longer than the model's n_positions (${config.nPositions})`);
    const loraSettings = loraSettingsOf(memory, config);
    const lora = loraSettings ? loraLayout(config, loraSettings) : undefined;
    const checkpointing = memory.checkpointActivations ?? false;
    const gpuMemory = values["gpu-memory"] === undefined ? null : numberFlag(values["gpu-memory"], "gpu-memory") * 2 ** 30;
    const groups = parameterGroups(config);
    const parameters = Object.values(groups).reduce((a, b) => a + b, 0);
    const decayed = paramLayout(config).tensors.filter((t) => t.decay).reduce((s, t) => s + t.size, 0);

    let adapter: { name: string; limits: AdapterLimits } | null = null;
    let adapterError: string | null = null;
    try {
      const gpu = await acquireGpu({ adapter: values.adapter });
      const { maxBufferSize, maxStorageBufferBindingSize } = gpu.device.limits;
      adapter = { name: describeGpu(gpu), limits: { maxBufferSize, maxStorageBufferBindingSize } };
      gpu.destroy();
    } catch (err) {
      // no adapter is not an error here: the plan is still worth printing
      adapterError = (err as Error).message;
    }
    // with an adapter, the plan the model would allocate on it (weights over its maxBufferSize split into pages)
    const limits = adapter ? { maxBindingBytes: adapter.limits.maxStorageBufferBindingSize, maxBufferBytes: adapter.limits.maxBufferSize } : {};
    const plan = memoryPlan(config, { B, T, training: true, lora, checkpointing, ...limits });
    const error = adapter ? fitError(config, plan, adapter.limits) : null;
    const largestBuffer = plan.buffers.reduce((a, b) => (b.bytes > a.bytes ? b : a));

    if (values.json) {
      console.log(JSON.stringify({
        model: source, family: config.family, arch: config.arch, parameters, groups,
        trainable: lora
          ? { parameters: loraParameterCount(lora), lora: { ...lora.settings, modules: lora.adapters.length }, tiedHead: config.arch.tiedHead }
          : { parameters, weightDecayed: decayed, tiedHead: config.arch.tiedHead },
        memory: { B, T, checkpointing, ...plan.byKind, total: plan.total, largestBuffer: { label: largestBuffer.label, bytes: largestBuffer.bytes }, largestParameterTensorBytes: plan.largestSlotBytes },
        adapter, fits: adapter ? error === null : null, error, overruns: adapter ? overruns(plan, adapter.limits) : null,
        gpuMemory: gpuMemory === null ? null : { bytes: gpuMemory, fits: plan.total <= gpuMemory },
      }));
      return 0;
    }
    const a = config.arch;
    const positions = a.positions.kind === "learned" ? "learned positions" : `rotary θ=${a.positions.theta}${a.positions.fraction < 1 ? ` on ${a.positions.fraction} of each head` : ""}${a.positions.scaling.type !== "none" ? `, ${a.positions.scaling.type} scaling` : ""}`;
    const attention = config.nKVHead === config.nHead ? `${config.nHead} heads` : `${config.nHead} query / ${config.nKVHead} key-value heads`;
    console.log(`model: ${source}`);
    console.log(`family: ${config.family} — ${config.nLayer} layers × ${config.nEmbd}, ${attention} of ${config.headDim}, ${a.norm} norm, ${positions}, ${a.mlp} MLP ${config.intermediateSize}, ${a.block} block, ${a.tiedHead ? "tied" : "untied"} head; vocab ${config.vocabSize}, context ${config.nPositions}`);
    console.log(`parameters: ${parameters.toLocaleString("en-US")} (${GROUPS.map(([g]) => `${g} ${groups[g].toLocaleString("en-US")}`).join(", ")})`);
    if (lora) {
      console.log(`trainable: ${loraParameterCount(lora).toLocaleString("en-US")} in LoRA adapters (r=${lora.rank}, alpha=${lora.settings.alpha}, on ${lora.settings.targets.join(",")}: ${lora.adapters.length} modules); the base is frozen (no gradients or AdamW state)`);
    } else {
      console.log(`trainable: all ${parameters.toLocaleString("en-US")} (full fine-tuning in float32; weight decay on the ${decayed.toLocaleString("en-US")} in matmul weights and embeddings)`);
    }
    console.log(`training memory at batch ${B} × ${T} tokens${checkpointing ? " with activation checkpointing" : ""}: ${formatBytes(plan.total)}`);
    console.log(`  weights ${formatBytes(plan.byKind.weights)}, gradients ${formatBytes(plan.byKind.gradients)}, AdamW m+v ${formatBytes(plan.byKind.optimizer)}, activations ${formatBytes(plan.byKind.activations)}, backward scratch ${formatBytes(plan.byKind.scratch)}`);
    console.log(`  largest buffer: ${largestBuffer.label} ${formatBytes(largestBuffer.bytes)}; largest parameter tensor ${formatBytes(plan.largestSlotBytes)}`);
    if (gpuMemory !== null) console.log(`${plan.total <= gpuMemory ? "fits" : "does not fit"} a GPU of ${formatBytes(gpuMemory)} (${formatBytes(plan.total)} planned)`);
    if (adapter) {
      console.log(`adapter: ${adapter.name}: maxBufferSize ${formatBytes(adapter.limits.maxBufferSize)}, maxStorageBufferBindingSize ${formatBytes(adapter.limits.maxStorageBufferBindingSize)}`);
      console.log(error ? `does not fit: ${error.replace(/^the run cannot fit the GPU: /, "")}` : "fits: every buffer within the adapter's limits");
    } else {
      console.log(`adapter: none (${adapterError}); the plan alone`);
    }
    return 0;
  },
};
