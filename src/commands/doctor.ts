import { acquireGpu, describeGpu } from "../gpu/device.ts";
import type { Command } from "./command.ts";
import { parseFlags } from "./command.ts";

export const command: Command = {
  summary: "check the WebGPU adapter the trainer will use",
  help: `usage: bun src/cli.ts doctor [--adapter NAME] [--json]

Opens a WebGPU device the way the trainer does and prints the adapter, its features and limits.
  --adapter NAME   pick the adapter whose name contains NAME (also COT_DISTILL_ADAPTER)
  --json           machine-readable output`,
  usesGpu: true,
  async run(argv) {
    const { values } = parseFlags(argv, { adapter: { type: "string" }, json: { type: "boolean" } });
    const gpu = await acquireGpu({ adapter: values.adapter });
    if (values.json) console.log(JSON.stringify(gpu.adapter));
    else {
      console.log(`adapter: ${describeGpu(gpu)}`);
      console.log(`features: ${gpu.adapter.features.join(", ") || "(none)"}`);
      console.log(`max storage binding: ${(gpu.adapter.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`);
    }
    gpu.destroy();
    return 0;
  },
};
