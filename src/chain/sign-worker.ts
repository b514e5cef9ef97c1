/**
 * Worker thread of the ledger generator: signs 32-byte messages with the devnet's account
 * keys, which it receives once at start. Signing is most of the generator's work, so it
 * runs on every core.
 */
import { createPrivateKey, sign } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";

const keys = (workerData as { pems: string[] }).pems.map((pem) => createPrivateKey(pem));

parentPort!.on("message", (m: { id: number; accounts: Uint32Array; messages: Uint8Array }) => {
  const n = m.accounts.length;
  const out = new Uint8Array(n * 64);
  for (let i = 0; i < n; i++) {
    out.set(sign(null, m.messages.subarray(i * 32, i * 32 + 32), keys[m.accounts[i]!]!), i * 64);
  }
  parentPort!.postMessage({ id: m.id, signatures: out }, [out.buffer]);
});
