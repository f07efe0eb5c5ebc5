/**
 * A small price table (USD per million tokens, the providers' list prices for standard, non-batch requests) to put
 * a cost estimate on every stored rationale. Unknown models cost null rather than a guess; dated snapshots
 * ("gpt-4o-mini-2024-07-18") use their base model's price. Edit freely: it is an estimate, not an invoice.
 */

export interface Price {
  inputPerMillion: number;
  outputPerMillion: number;
}

export const PRICES: Record<string, Price> = {
  "gpt-4o": { inputPerMillion: 2.5, outputPerMillion: 10 },
  "gpt-4o-mini": { inputPerMillion: 0.15, outputPerMillion: 0.6 },
  "gpt-4.1": { inputPerMillion: 2, outputPerMillion: 8 },
  "gpt-4.1-mini": { inputPerMillion: 0.4, outputPerMillion: 1.6 },
  "gpt-4.1-nano": { inputPerMillion: 0.1, outputPerMillion: 0.4 },
  "gpt-4-turbo": { inputPerMillion: 10, outputPerMillion: 30 },
  "gpt-3.5-turbo": { inputPerMillion: 0.5, outputPerMillion: 1.5 },
  "o3-mini": { inputPerMillion: 1.1, outputPerMillion: 4.4 },
  // reasoning models: their reasoning tokens are billed as output and already counted in completion_tokens
  "o1": { inputPerMillion: 15, outputPerMillion: 60 },
  "o3": { inputPerMillion: 2, outputPerMillion: 8 },
  "o4-mini": { inputPerMillion: 1.1, outputPerMillion: 4.4 },
  "deepseek-reasoner": { inputPerMillion: 0.55, outputPerMillion: 2.19 },
  "deepseek-chat": { inputPerMillion: 0.27, outputPerMillion: 1.1 },
};

/** The price of `model`, or of the base model of a dated snapshot; null when unknown. */
export function priceOf(model: string): Price | null {
  if (PRICES[model]) return PRICES[model];
  const base = model.replace(/-\d{4}-\d{2}-\d{2}$/, "");
  return PRICES[base] ?? null;
}

/** The Batch API's price relative to the list price (OpenAI: half, input and output alike). */
export const BATCH_PRICE_FACTOR = 0.5;

export type PriceTier = "standard" | "batch";

export function costUsd(model: string, promptTokens: number, completionTokens: number, tier: PriceTier = "standard"): number | null {
  const price = priceOf(model);
  if (!price) return null;
  const list = (promptTokens * price.inputPerMillion + completionTokens * price.outputPerMillion) / 1_000_000;
  return tier === "batch" ? list * BATCH_PRICE_FACTOR : list;
}
