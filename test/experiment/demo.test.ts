/**
 * `bun src/cli.ts demo` at a size a test can afford (8 training questions, 4 test questions, two seeds): every
 * condition of the controlled task trained and evaluated, the table, the paired comparisons and the reading of
 * them printed, the report files where it says, and the CQA pass. (Its 10-minute budget at full size is measured,
 * not asserted: see README.)
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "cot-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONDITIONS = ["none", "before", "after", "after-shuffled", "after-key-3"];

test(
  "the demo runs the controlled task's conditions over seeds, compares them pairwise, and runs the CQA pass",
  async () => {
    const out = join(dir, "runs");
    const child = Bun.spawn(
      [process.execPath, "src/cli.ts", "demo", "--train", "8", "--eval", "4", "--seeds", "2", "--out", out, "--db", join(dir, "demo.sqlite")],
      { stdout: "pipe", stderr: "pipe", env: { ...process.env, COT_DISTILL_CACHE: join(dir, "cache") } },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect(stderr).not.toContain("Error");
    expect(code).toBe(0);
    const rows = stdout.split("\n").filter((line) => /^(none|before|after|after-shuffled|after-key-3)\s+2\s+\d+\.\d%/.test(line));
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(CONDITIONS);
    expect(stdout).toMatch(/after vs none\s+[+-]\d+\.\d pts\s+\[/);
    expect(stdout).toContain("What the result shows:");
    expect(stdout).toContain("What this does NOT show");
    // the untrained row, and the paper's three findings read off the comparisons
    expect(stdout).toMatch(/^untrained\s+2\s+\d+\.\d%/m);
    expect(stdout).toMatch(/\(1\) rationale after the label beats before it: .*after − before [+-]\d+\.\d points/);
    expect(stdout).toMatch(/\(2\) a token-shuffled rationale .*after-shuffled − none [+-]\d+\.\d points/);
    expect(stdout).toMatch(/\(3\) a few key tokens .*after-key-3 − none [+-]\d+\.\d points/);
    // what each condition trains on, built by the trainer's own example builder: key-3 by idf keeps the three names
    const prompt = /^  prompt\s+"Colour of most: (\w+) (\w+) (\w+)\?"$/m.exec(stdout)!;
    expect(stdout).toMatch(new RegExp(`^  after-key-3\\s+" \\(([A-E])\\) ${prompt[1]} ${prompt[2]} ${prompt[3]}<\\|endoftext\\|>"$`, "m"));
    for (const condition of CONDITIONS) {
      for (const seed of [0, 1]) expect(existsSync(join(out, "demo-majority", `${condition}-s${seed}`, "result.json"))).toBe(true);
    }
    for (const file of ["results.md", "results.csv", "results.json", "comparisons.csv", "accuracy.svg", "accuracy.png", "loss.svg", "comparisons.svg"]) {
      expect(existsSync(join(out, "demo-majority", file))).toBe(true);
    }
    const json = JSON.parse(readFileSync(join(out, "demo-majority", "results.json"), "utf8"));
    expect(json.chance).toBe(0.2);
    expect(json.comparisons.map((c: { a: string; b: string }) => `${c.a} vs ${c.b}`)).toContain("after-shuffled vs after");
    expect(stdout).toContain("CommonsenseQA pass");
    for (const condition of ["none", "after"]) expect(existsSync(join(out, "demo-cqa", `${condition}-s0`, "result.json"))).toBe(true);
  },
  300_000,
);

test("a bad flag value is one readable line, exit 1", async () => {
  const child = Bun.spawn([process.execPath, "src/cli.ts", "demo", "--train", "0"], { stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect(code).toBe(1);
  expect(stderr.trim()).toBe('cot-distill: --train must be an integer >= 1, got "0"');
});
