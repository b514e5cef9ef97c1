/**
 * A transaction load for a devnet: signed transfers between the funded test accounts at
 * a target rate, sent to the nodes in turn. Nonces are tracked locally and re-read from
 * a node when one is refused.
 */
import { randomInt } from "node:crypto";
import { NodeClient } from "./client.js";
import { fromHex, importPrivateKeyPem, type KeyPair } from "./crypto.js";
import type { DevnetFile } from "./devnet.js";
import { signTransfer } from "./tx.js";

export interface LoadOptions {
  tps: number;
  payloadBytes?: number;
  /** Stop after this long; runs until `signal` aborts when absent. */
  durationMs?: number;
  signal?: AbortSignal;
}

export interface LoadResult {
  sent: number;
  accepted: number;
  refused: number;
}

export async function runLoad(dn: DevnetFile, genesisHashHex: string, o: LoadOptions): Promise<LoadResult> {
  const genesisHash = fromHex(genesisHashHex, 32, "genesis hash");
  const accounts: KeyPair[] = dn.loadAccounts.map((a) => importPrivateKeyPem(a.privateKeyPem));
  const clients = dn.nodes.map((n) => new NodeClient(n.url, { timeoutMs: 2000 }));
  const nonces = new Map<number, bigint>();
  const result: LoadResult = { sent: 0, accepted: 0, refused: 0 };
  const payload = Buffer.alloc(o.payloadBytes ?? 0, 0x61);
  const deadline = o.durationMs ? Date.now() + o.durationMs : Number.POSITIVE_INFINITY;
  // 50 ms ticks: smooth enough for rates up to a few thousand transactions per second.
  const tickMs = 50;
  let debt = 0;
  let next = 0;
  while (Date.now() < deadline && !o.signal?.aborted) {
    const t0 = Date.now();
    debt += (o.tps * tickMs) / 1000;
    const jobs: Promise<void>[] = [];
    for (; debt >= 1; debt--) {
      const i = randomInt(accounts.length);
      const to = accounts[(i + 1 + randomInt(accounts.length - 1)) % accounts.length]!;
      const client = clients[next++ % clients.length]!;
      jobs.push(
        (async () => {
          let nonce = nonces.get(i);
          if (nonce === undefined) {
            nonce = BigInt((await client.account(accounts[i]!.publicKey.toString("hex"))).nonce);
          }
          nonces.set(i, nonce + 1n);
          const tx = signTransfer(genesisHash, accounts[i]!, to.publicKey, 1n, nonce, payload);
          result.sent++;
          try {
            await client.submitTx(tx);
            result.accepted++;
          } catch {
            result.refused++;
            nonces.delete(i);
          }
        })().catch(() => {
          nonces.delete(i);
        }),
      );
    }
    await Promise.all(jobs);
    const wait = tickMs - (Date.now() - t0);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return result;
}
