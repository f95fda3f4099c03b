import { open } from 'node:fs/promises';

/**
 * Writes a file only its owner can read (0600), synced before it resolves: the secrets
 * Orrery generates on a first start (the demo write key, the embedded GitOps webhook
 * secret) live beside the data they guard, never in the log. An existing file (a first
 * start that stopped halfway) is truncated and reused, and its mode is set again.
 *
 * @example await writePrivateFile(join(dataDir, 'demo-write-key'), `${key}\n`);
 */
export async function writePrivateFile(file: string, text: string): Promise<void> {
  const fh = await open(file, 'w', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
