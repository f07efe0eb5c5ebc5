/** Headless Chromium (Debian's /usr/bin/chromium through playwright-core) for the dashboard tests. */
import { existsSync } from "node:fs";

export const CHROMIUM = "/usr/bin/chromium";
export const haveChromium = existsSync(CHROMIUM);

/** A fresh browser with its profile in `profileDir`, on a page at `url`. */
export async function openPage(profileDir: string, url: string) {
  const { chromium } = await import("playwright-core");
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await context.newPage();
  await page.goto(url);
  return { context, page };
}
