/**
 * Charts of an experiment, as hand-written SVG (readable, diffable, no browser) and PNG rendered from it by resvg:
 * accuracy per condition as bars with 95% CI whiskers, and training loss curves as lines.
 */
import { existsSync } from "node:fs";
import { Resvg } from "@resvg/resvg-js";
import type { PairedComparison } from "./compare.ts";
import type { ConditionSummary } from "./results.ts";

export interface Series {
  name: string;
  points: Array<{ step: number; value: number }>;
}

interface Frame {
  width: number;
  height: number;
  margin: { top: number; right: number; bottom: number; left: number };
}

const FONT = "DejaVu Sans";
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const fmt = (x: number) => String(Math.round(x * 100) / 100);

/** A linear map from [d0, d1] onto [r0, r1]. */
function scale(d0: number, d1: number, r0: number, r1: number): (x: number) => number {
  const span = d1 - d0 || 1;
  return (x) => r0 + ((x - d0) / span) * (r1 - r0);
}

/** About `count` round tick values from at or below `low` to at or above `high`: the axis range. */
export function niceTicks(low: number, high: number, count = 5): number[] {
  const raw = (high - low || 1) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9))!;
  const first = Math.floor(low / step + 1e-9);
  const last = Math.ceil(high / step - 1e-9);
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * step).toPrecision(12)));
}

function svgDocument(frame: Frame, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${frame.width}" height="${frame.height}" viewBox="0 0 ${frame.width} ${frame.height}" font-family="${FONT}" font-size="12">`,
    `<rect width="${frame.width}" height="${frame.height}" fill="white"/>`,
    `<text x="${frame.width / 2}" y="20" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

function yAxis(frame: Frame, ticks: number[], y: (v: number) => number, label: string, format: (v: number) => string): string[] {
  const { left, right } = frame.margin;
  const lines = ticks.map(
    (t) =>
      `<line x1="${left}" x2="${frame.width - right}" y1="${fmt(y(t))}" y2="${fmt(y(t))}" stroke="#e0e0e0"/>` +
      `<text x="${left - 6}" y="${fmt(y(t) + 4)}" text-anchor="end">${escapeXml(format(t))}</text>`,
  );
  const middle = (frame.margin.top + frame.height - frame.margin.bottom) / 2;
  return [
    ...lines,
    `<text transform="translate(14 ${fmt(middle)}) rotate(-90)" text-anchor="middle">${escapeXml(label)}</text>`,
  ];
}

/** Mean accuracy per condition with its 95% CI as a whisker (none for a single run), and chance as a dashed line. */
export function accuracyBarChart(cells: ConditionSummary[], title = "Accuracy by condition (mean ± 95% CI)", chance: number | null = null): string {
  const factors = Math.max(1, ...cells.map((c) => Object.keys(c.condition).length));
  const frame: Frame = {
    width: Math.max(480, 90 * cells.length + 120),
    height: 380 + 14 * factors,
    margin: { top: 40, right: 20, bottom: 30 + 14 * factors, left: 64 },
  };
  const { top, bottom, left, right } = frame.margin;
  // accuracy is a fraction: whiskers are clipped to [0, 1]
  const within = (v: number) => Math.min(1, Math.max(0, v));
  const highest = Math.max(0, chance ?? 0, ...cells.map((c) => within(c.mean + (c.ci95 ?? 0))));
  const ticks = niceTicks(0, highest || 1);
  const y = scale(0, ticks.at(-1)!, frame.height - bottom, top);
  const slot = (frame.width - left - right) / Math.max(cells.length, 1);
  const body = yAxis(frame, ticks, y, "accuracy", (t) => `${Math.round(t * 1000) / 10}%`);
  cells.forEach((cell, i) => {
    const x = left + slot * i;
    const center = x + slot / 2;
    const barWidth = slot * 0.6;
    body.push(
      `<rect class="bar" x="${fmt(center - barWidth / 2)}" y="${fmt(y(cell.mean))}" width="${fmt(barWidth)}" height="${fmt(y(0) - y(cell.mean))}" fill="${PALETTE[i % PALETTE.length]}"><title>${escapeXml(`${cell.key}: ${(cell.mean * 100).toFixed(2)}%`)}</title></rect>`,
    );
    if (cell.ci95 !== null) {
      const [low, high] = [y(within(cell.mean - cell.ci95)), y(within(cell.mean + cell.ci95))];
      body.push(
        `<g class="whisker" stroke="black"><line x1="${fmt(center)}" x2="${fmt(center)}" y1="${fmt(low)}" y2="${fmt(high)}"/>` +
          `<line x1="${fmt(center - 6)}" x2="${fmt(center + 6)}" y1="${fmt(low)}" y2="${fmt(low)}"/>` +
          `<line x1="${fmt(center - 6)}" x2="${fmt(center + 6)}" y1="${fmt(high)}" y2="${fmt(high)}"/></g>`,
      );
    }
    // one line per factor value under the bar, so long condition names stay readable
    Object.values(cell.condition).forEach((value, row) => {
      body.push(`<text x="${fmt(center)}" y="${fmt(y(0) + 16 + 14 * row)}" text-anchor="middle">${escapeXml(String(value))}</text>`);
    });
  });
  body.push(`<line x1="${left}" x2="${frame.width - right}" y1="${fmt(y(0))}" y2="${fmt(y(0))}" stroke="black"/>`);
  if (chance !== null) {
    body.push(
      `<g class="chance"><line x1="${left}" x2="${frame.width - right}" y1="${fmt(y(chance))}" y2="${fmt(y(chance))}" stroke="#c03030" stroke-dasharray="6 4"/>` +
        `<text x="${frame.width - right - 4}" y="${fmt(y(chance) - 5)}" text-anchor="end" fill="#c03030">chance ${fmt(100 * chance)}%</text></g>`,
    );
  }
  return svgDocument(frame, title, body);
}

/** Paired differences (A − B, accuracy points) as dots with their 95% CI, one row per comparison, zero marked. */
export function comparisonChart(comparisons: PairedComparison[], title = "Paired differences (95% CI)"): string {
  const labels = comparisons.map((c) => `${c.a} vs ${c.b}`);
  const left = Math.max(140, 7 * Math.max(...labels.map((l) => l.length)) + 20);
  const frame: Frame = { width: left + 420, height: 80 + 28 * comparisons.length, margin: { top: 40, right: 30, bottom: 40, left } };
  const { top, right, bottom } = frame.margin;
  const extent = Math.max(0.01, ...comparisons.flatMap((c) => [Math.abs(c.ci95[0]), Math.abs(c.ci95[1])]));
  const ticks = niceTicks(-extent, extent, 6);
  const x = scale(ticks[0], ticks.at(-1)!, left, frame.width - right);
  const body: string[] = [];
  for (const t of ticks) {
    body.push(
      `<line x1="${fmt(x(t))}" x2="${fmt(x(t))}" y1="${top}" y2="${frame.height - bottom}" stroke="${t === 0 ? "black" : "#e0e0e0"}"/>` +
        `<text x="${fmt(x(t))}" y="${frame.height - bottom + 16}" text-anchor="middle">${escapeXml(`${t > 0 ? "+" : ""}${fmt(100 * t)}`)}</text>`,
    );
  }
  body.push(`<text x="${fmt((left + frame.width - right) / 2)}" y="${frame.height - 8}" text-anchor="middle">difference in accuracy (points); p from a paired permutation test</text>`);
  comparisons.forEach((c, i) => {
    const cy = top + 14 + 28 * i;
    const color = c.ci95[0] > 0 ? "#2e7d32" : c.ci95[1] < 0 ? "#c62828" : "#555";
    body.push(
      `<text x="${left - 8}" y="${fmt(cy + 4)}" text-anchor="end">${escapeXml(labels[i])}</text>` +
        `<g class="difference" stroke="${color}"><line x1="${fmt(x(c.ci95[0]))}" x2="${fmt(x(c.ci95[1]))}" y1="${fmt(cy)}" y2="${fmt(cy)}" stroke-width="2"/>` +
        `<circle cx="${fmt(x(c.difference))}" cy="${fmt(cy)}" r="4" fill="${color}"/></g>` +
        `<text x="${fmt(x(c.ci95[1]) + 6)}" y="${fmt(cy + 4)}" font-size="10" fill="#555">${escapeXml(`p=${c.p < 0.001 ? "<0.001" : c.p.toFixed(3)}`)}</text>`,
    );
  });
  return svgDocument(frame, title, body);
}

/** One line per series (e.g. the training loss of each run) over steps, with a legend. */
export function lossLineChart(series: Series[], title = "Training loss", yLabel = "loss"): string {
  const frame: Frame = { width: 640, height: 400, margin: { top: 40, right: 150, bottom: 50, left: 64 } };
  const { top, bottom, left, right } = frame.margin;
  const points = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.value));
  const steps = points.map((p) => p.step);
  const values = points.map((p) => p.value);
  const xTicks = niceTicks(Math.min(0, ...steps), Math.max(1, ...steps));
  const yTicks = niceTicks(Math.min(0, ...values), Math.max(1e-9, ...values));
  const x = scale(xTicks[0], xTicks.at(-1)!, left, frame.width - right);
  const y = scale(yTicks[0], yTicks.at(-1)!, frame.height - bottom, top);
  const body = yAxis(frame, yTicks, y, yLabel, (t) => String(t));
  for (const t of xTicks) {
    body.push(`<text x="${fmt(x(t))}" y="${frame.height - bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  body.push(`<text x="${fmt((left + frame.width - right) / 2)}" y="${frame.height - 12}" text-anchor="middle">step</text>`);
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const path = s.points
      .filter((p) => Number.isFinite(p.value))
      .map((p, j) => `${j === 0 ? "M" : "L"}${fmt(x(p.step))} ${fmt(y(p.value))}`)
      .join(" ");
    body.push(`<path class="series" d="${path}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    const ly = top + 14 + 18 * i;
    body.push(
      `<line x1="${frame.width - right + 10}" x2="${frame.width - right + 30}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>` +
        `<text x="${frame.width - right + 36}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
  });
  body.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${frame.height - bottom}" stroke="black"/>`);
  body.push(`<line x1="${left}" x2="${frame.width - right}" y1="${frame.height - bottom}" y2="${frame.height - bottom}" stroke="black"/>`);
  return svgDocument(frame, title, body);
}

// DejaVu is what Debian ships (fonts-dejavu-core); system fonts are searched as well
const FONT_FILES = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"].filter((f) => existsSync(f));

/** The SVG rendered to PNG at `zoom` × its size. */
export function renderPng(svg: string, zoom = 2): Uint8Array {
  const resvg = new Resvg(svg, {
    fitTo: { mode: "zoom", value: zoom },
    font: { loadSystemFonts: true, fontFiles: FONT_FILES, defaultFontFamily: FONT },
  });
  return resvg.render().asPng();
}

/** Writes <base>.svg and <base>.png; returns both paths. */
export async function writeChart(svg: string, base: string): Promise<string[]> {
  await Bun.write(`${base}.svg`, svg);
  await Bun.write(`${base}.png`, renderPng(svg));
  return [`${base}.svg`, `${base}.png`];
}
