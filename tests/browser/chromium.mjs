// Debian's headless Chromium with a fake microphone that plays `wav` once, in a fresh
// profile removed at exit: the one launcher of the browser tests and the benchmark.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export async function launchWithMicrophone(wav) {
  const profile = mkdtempSync(join(tmpdir(), 'voice-agent-chromium-'));
  process.on('exit', () => rmSync(profile, { recursive: true, force: true }));
  return chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}%noloop`,
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    ],
  });
}
