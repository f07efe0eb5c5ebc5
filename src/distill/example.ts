/**
 * The training example the trainer sees, built from an item, its teacher rationale and one experimental condition
 * (placement × token selection × loss weights): the prompt and target as text, their token ids, one loss weight per
 * token, the selected rationale tokens and where the label sits (evaluation reads the label there).
 *
 * The rationale is encoded once and selection works on those ids, so the target's text is the DECODING of the
 * ids the student learns: with shuffled or random tokens that text is not the rationale's text re-encoded.
 */
import { UserError } from "../errors.ts";
import { mixSeed } from "../data/random.ts";
import type { Item } from "../data/types.ts";
import type { Attribution } from "./attribution.ts";
import { maskIdOf, promptIds, specialIdsOf, tokenStrings, type TokenCodec } from "./codec.ts";
import { DEFAULT_TEMPLATE, promptText, targetPieces, type Placement, type Template } from "./placement.ts";
import { selectTokens, type Selection } from "./selection.ts";
import { checkWeights, DEFAULT_WEIGHTS, tokenWeights, type LossWeights, type SpanKind } from "./weights.ts";

export interface ExampleConfig {
  placement: Placement;
  selection: Selection;
  weights?: LossWeights;
  template?: Template;
  /** Scores rationale tokens for the "key" selection. */
  attribution?: Attribution;
  /** Append the tokenizer's end-of-text id to the target (default true when it has one). */
  endOfText?: boolean;
  /** Wrap the prompt in the student's chat template (instruct models; see promptIds). */
  chat?: boolean;
}

/** A run of tokens of one kind: ids[start, end). */
export interface Span {
  kind: SpanKind | "end";
  start: number;
  end: number;
}

export interface DistillExample {
  itemId: string;
  index: number;
  /** What the student is given. */
  prompt: string;
  /** What it learns to produce: the decoding of ids[promptLength..]. */
  target: string;
  /** Gold label, in Item.answer's form. */
  label: string;
  ids: number[];
  promptLength: number;
  /** weights[i] is the loss weight for producing ids[i]. */
  weights: number[];
  /** The rationale after selection, as ids and as one string per token; empty for placement "none". */
  rationaleIds: number[];
  rationaleTokens: string[];
  /** The label's tokens, ids[labelSpan.start, labelSpan.end). */
  labelSpan: { start: number; end: number };
  spans: Span[];
}

function selectRationale(item: Item, text: string, config: ExampleConfig, codec: TokenCodec): number[] {
  const ids = codec.encode(text);
  const { selection } = config;
  const scores = selection.kind === "key" ? requireAttribution(config).scores(item, ids) : undefined;
  return selectTokens(ids, { ...selection, seed: mixSeed(selection.seed, item.index) }, {
    vocabSize: codec.vocabSize,
    specialIds: specialIdsOf(codec),
    maskId: selection.kind === "masked" ? maskIdOf(codec) : -1,
    scores,
  });
}

function requireAttribution(config: ExampleConfig): Attribution {
  if (!config.attribution) throw new Error('selection "key" needs an attribution (ExampleConfig.attribution)');
  return config.attribution;
}

/**
 * One example. `rationale` may be null only for placement "none"; selections draw from a stream seeded by
 * (selection.seed, item.index), so each item differs and every run reproduces.
 */
export function buildExample(item: Item, rationale: string | null, config: ExampleConfig, codec: TokenCodec): DistillExample {
  const template = config.template ?? DEFAULT_TEMPLATE;
  const weights = checkWeights(config.weights ?? DEFAULT_WEIGHTS);
  if (config.placement !== "none" && (rationale === null || rationale.trim() === "")) {
    throw new UserError(`item ${item.index} of ${item.dataset}/${item.split} has no rationale (placement "${config.placement}" needs one)`, 422);
  }
  const prompt = promptText(item, template);
  const spans: Span[] = [];
  const ids: number[] = [];
  const push = (kind: Span["kind"], pieceIds: number[]) => {
    spans.push({ kind, start: ids.length, end: ids.length + pieceIds.length });
    ids.push(...pieceIds);
  };
  push("prompt", promptIds(codec, prompt, config.chat));
  let rationaleIds: number[] = [];
  for (const piece of targetPieces(config.placement, item.answer, rationale ?? "", template)) {
    if (piece.kind === "rationale") rationaleIds = selectRationale(item, piece.text, config, codec);
    push(piece.kind, piece.kind === "rationale" ? rationaleIds : codec.encode(piece.text));
  }
  if (codec.eotId !== undefined && config.endOfText !== false) push("end", [codec.eotId]);
  const promptLength = spans[0].end;
  const labelSpan = spans.find((s) => s.kind === "label")!;
  return {
    itemId: item.id,
    index: item.index,
    prompt: config.chat ? codec.chatPrompt!(prompt) : prompt,
    target: codec.decode(ids.slice(promptLength)),
    label: item.answer,
    ids,
    promptLength,
    // the end-of-text token closes the answer: weighted as label
    weights: tokenWeights(spans.map((s) => ({ kind: s.kind === "end" ? "format" : s.kind, length: s.end - s.start })), weights),
    rationaleIds,
    rationaleTokens: tokenStrings(codec, rationaleIds),
    labelSpan: { start: labelSpan.start, end: labelSpan.end },
    spans,
  };
}

/** The trainer's form (src/train/batches.ts Sequence): weights[i] weights predicting ids[i+1]. */
export function toSequence(example: DistillExample): { ids: number[]; weights: number[] } {
  return { ids: example.ids, weights: example.weights.slice(1) };
}
