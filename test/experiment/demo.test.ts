/**
 * `bun src/cli.ts demo` at a size a test can afford (4 training questions, 1 test question, one epoch): the four
 * conditions trained and evaluated, the table printed with one row each, the report files where it says, and it
 * says it is a smoke-scale demo. (Its 10-minute budget at full size is measured, not asserted: see demo.ts.)
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "cot-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test(
  "the demo trains and evaluates none / before / after / after-shuffled and reports them",
  async () => {
    const out = join(dir, "runs");
    const child = Bun.spawn(
      [process.execPath, "src/cli.ts", "demo", "--train", "4", "--eval", "1", "--epochs", "1", "--out", out, "--db", join(dir, "demo.sqlite")],
      { stdout: "pipe", stderr: "pipe" },
    );
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect(stderr).not.toContain("exited with code");
    expect(code).toBe(0);
    expect(stdout).toContain("SMOKE SCALE");
    const rows = stdout.split("\n").filter((line) => /^(none|before|after|after-shuffled)\s+\d+\.\d%/.test(line));
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(["none", "before", "after", "after-shuffled"]);
    for (const condition of ["none", "before", "after", "after-shuffled"]) {
      expect(stderr).toContain(`${condition}-s0`);
      expect(existsSync(join(out, "demo", `${condition}-s0`, "result.json"))).toBe(true);
    }
    for (const file of ["results.md", "results.csv", "results.json", "accuracy.svg", "accuracy.png", "loss.svg", "loss.png"]) {
      expect(existsSync(join(out, "demo", file))).toBe(true);
      expect(stdout).toContain(join(out, "demo"));
    }
  },
  240_000,
);

test("a bad flag value is one readable line, exit 1", async () => {
  const child = Bun.spawn([process.execPath, "src/cli.ts", "demo", "--train", "0"], { stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect(code).toBe(1);
  expect(stderr.trim()).toBe('cot-distill: --train must be an integer >= 1, got "0"');
});
