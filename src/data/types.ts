/** One evaluation/training question, whatever dataset it came from. */
export interface Choice {
  /** "A".."E" for CommonsenseQA. */
  label: string;
  text: string;
}

export interface Item {
  /** Stable identity within the dataset, e.g. the CQA question id, or `${split}-${index}`. */
  id: string;
  dataset: string;
  split: string;
  /** Position within the split file (the shipped PaLM rationales are aligned by it). */
  index: number;
  question: string;
  /** Multiple-choice options; absent for open-answer datasets such as SVAMP. */
  choices?: Choice[];
  /** Gold answer: a choice label for multiple choice, the number as a string for math. */
  answer: string;
  /** A worked solution shipped with the data (generated tasks such as "hops"): the "gold" rationale source. */
  rationale?: string;
}

export type Split = "train" | "test" | "dev";
