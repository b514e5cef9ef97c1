/**
 * Signing on worker threads for the ledger generator: the devnet's account keys are loaded
 * once per worker and batches of 32-byte messages are signed on every core.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/**
 * The signing worker, as source: plain JavaScript evaluated in the worker, so it runs the
 * same from the build and from TypeScript sources. It receives the account keys once and
 * signs batches of 32-byte messages.
 */
const SIGN_WORKER_SOURCE = `
const { createPrivateKey, sign } = require("node:crypto");
const { parentPort, workerData } = require("node:worker_threads");
const keys = workerData.pems.map((pem) => createPrivateKey(pem));
parentPort.on("message", (m) => {
  const n = m.accounts.length;
  const out = new Uint8Array(n * 64);
  for (let i = 0; i < n; i++) out.set(sign(null, m.messages.subarray(i * 32, i * 32 + 32), keys[m.accounts[i]]), i * 64);
  parentPort.postMessage({ id: m.id, signatures: out }, [out.buffer]);
});
`;

/** Worker threads that sign messages with the devnet's account keys, one per core. */
export class SignerPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<
    number,
    { resolve: (sigs: Uint8Array) => void; reject: (err: Error) => void }
  >();
  private nextId = 0;

  constructor(pems: string[]) {
    this.workers = Array.from({ length: availableParallelism() }, () => {
      const w = new Worker(SIGN_WORKER_SOURCE, { eval: true, workerData: { pems } });
      w.on("message", (m: { id: number; signatures: Uint8Array }) => {
        this.waiting.get(m.id)?.resolve(m.signatures);
        this.waiting.delete(m.id);
      });
      w.on("error", (err) => {
        for (const p of this.waiting.values()) p.reject(err);
        this.waiting.clear();
      });
      return w;
    });
  }

  /** Signs message i (32 bytes each) with account accounts[i]; resolves to the signatures in order. */
  async sign(accounts: Uint32Array, messages: Buffer): Promise<Uint8Array> {
    const n = accounts.length;
    const per = Math.ceil(n / this.workers.length);
    const parts = await Promise.all(
      this.workers.map((w, i) => {
        const a = accounts.slice(i * per, Math.min(n, (i + 1) * per));
        const m = new Uint8Array(messages.subarray(i * per * 32, Math.min(n, (i + 1) * per) * 32));
        if (a.length === 0) return Promise.resolve(new Uint8Array(0));
        const id = this.nextId++;
        return new Promise<Uint8Array>((resolve, reject) => {
          this.waiting.set(id, { resolve, reject });
          w.postMessage({ id, accounts: a, messages: m }, [a.buffer, m.buffer]);
        });
      }),
    );
    return Buffer.concat(parts);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
