import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import { accuracyBarChart, lossLineChart, niceTicks, renderPng, writeChart } from "../../src/experiment/plots.ts";
import { summarize } from "../../src/experiment/results.ts";

const cells = summarize([
  ...[0.6, 0.62, 0.64].map((accuracy, seed) => ({ condition: { placement: "after", selection: "full" }, seed, accuracy })),
  ...[0.3, 0.4].map((accuracy, seed) => ({ condition: { placement: "none", selection: "<&>" }, seed, accuracy })),
  { condition: { placement: "before", selection: "key" }, seed: 0, accuracy: 0.5 },
]);

const attrs = (tag: string) => Object.fromEntries([...tag.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

/** Width and height from a PNG's IHDR chunk, after checking the signature. */
function pngSize(png: Uint8Array): [number, number] {
  expect([...png.slice(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
  const view = new DataView(png.buffer, png.byteOffset);
  expect(new TextDecoder().decode(png.slice(12, 16))).toBe("IHDR");
  return [view.getUint32(16), view.getUint32(20)];
}

describe("accuracy bar chart", () => {
  const svg = accuracyBarChart(cells);

  test("is SVG that resvg parses, with text escaped", () => {
    expect(svg).toStartWith('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trim()).toEndWith("</svg>");
    expect(svg).toContain("&lt;&amp;&gt;");
    const { width, height } = attrs(svg.split("\n")[0]);
    const tree = new Resvg(svg);
    expect([tree.width, tree.height]).toEqual([Number(width), Number(height)]);
  });

  test("one bar per condition, heights proportional to the mean; whiskers span mean ± CI", () => {
    const bars = [...svg.matchAll(/<rect class="bar"[^>]*>/g)].map((m) => attrs(m[0]));
    expect(bars.length).toBe(3);
    const baseline = Number(bars[0].y) + Number(bars[0].height);
    const pxPerUnit = Number(bars[0].height) / cells[0].mean;
    cells.forEach((cell, i) => expect(Number(bars[i].height)).toBeCloseTo(cell.mean * pxPerUnit, 1));
    // the single-run cell has no whisker; the two-run one (t = 12.7) reaches below 0 and is clipped there
    const whiskers = [...svg.matchAll(/<g class="whisker"[^>]*><line ([^>]*)\/>/g)].map((m) => attrs(m[1]));
    expect(whiskers.length).toBe(2);
    cells.slice(0, 2).forEach((cell, i) => {
      expect(baseline - Number(whiskers[i].y1)).toBeCloseTo(Math.max(0, cell.mean - cell.ci95!) * pxPerUnit, 1);
      expect(baseline - Number(whiskers[i].y2)).toBeCloseTo(Math.min(1, cell.mean + cell.ci95!) * pxPerUnit, 1);
    });
  });
});

test("loss chart: one path per series through every point; legend names them", () => {
  const series = [
    { name: "after/full", points: [0, 10, 20, 30].map((step) => ({ step, value: 5 - step / 10 })) },
    { name: "none/full", points: [0, 10, 20].map((step) => ({ step, value: 4 })) },
  ];
  const svg = lossLineChart(series);
  const paths = [...svg.matchAll(/<path class="series" d="([^"]*)"/g)].map((m) => m[1]);
  expect(paths.map((d) => d.split(/[ML]/).filter(Boolean).length)).toEqual([4, 3]);
  // the flat series is a horizontal line
  expect(new Set(paths[1].split(/[ML]/).filter(Boolean).map((p) => p.trim().split(" ")[1])).size).toBe(1);
  expect(svg).toContain(">after/full</text>");
  new Resvg(svg);
});

test("ticks are round and cover the data", () => {
  expect(niceTicks(0, 0.73)).toEqual([0, 0.2, 0.4, 0.6, 0.8]);
  expect(niceTicks(0, 490)).toEqual([0, 100, 200, 300, 400, 500]);
  expect(niceTicks(1.2, 3.9)).toEqual([1, 2, 3, 4]);
});

test("SVG and PNG files are written; the PNG is the SVG at twice its size, with text drawn", async () => {
  const dir = mkdtempSync(join(tmpdir(), "cot-plots-"));
  const svg = accuracyBarChart(cells);
  const [svgPath, pngPath] = await writeChart(svg, join(dir, "accuracy"));
  expect(readFileSync(svgPath, "utf8")).toBe(svg);
  const png = new Uint8Array(readFileSync(pngPath));
  const { width, height } = attrs(svg.split("\n")[0]);
  expect(pngSize(png)).toEqual([2 * Number(width), 2 * Number(height)]);
  // text needs a font: the same chart without its labels renders to a smaller image
  const unlabeled = renderPng(svg.replace(/<text[^>]*>[^<]*<\/text>/g, ""));
  expect(png.length).toBeGreaterThan(unlabeled.length);
});

test("the comparisons chart escapes what it writes (p < 0.001 included) and renders to PNG", async () => {
  const { comparisonChart, renderPng } = await import("../../src/experiment/plots.ts");
  const svg = comparisonChart([{ a: "after", b: "none", seeds: [0], items: 100, difference: -0.36, ci95: [-0.46, -0.26], p: 0.0001, seedDifferences: [-0.36], seedCi95: null, seedP: null, wins: 2, losses: 38 }]);
  expect(svg).toContain("p=&lt;0.001");
  expect(renderPng(svg).length).toBeGreaterThan(100);
});
