/**
 * The genesis document: chain id, validators, initial balances and consensus timing.
 * Its hash, over a canonical binary encoding, names the chain: it is the parent hash of
 * block 1 and is mixed into every signature.
 */
import { readFileSync } from "node:fs";
import { CodedError } from "../util/errors.js";
import * as z from "../util/zod.js";
import { fromHex, sha256 } from "./crypto.js";
import { Writer } from "./encoding.js";
import { accountLeaf, LtHash } from "./lthash.js";
import type { Account } from "./types.js";

const hex32 = z.string().check(z.regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex characters"));

export const GenesisSchema = z.object({
  chainId: z.string().check(z.minLength(1), z.maxLength(64)),
  genesisTimeMs: z.int().check(z.minimum(0)),
  /** Target interval between blocks. */
  blockTimeMs: z.int().check(z.minimum(10), z.maximum(600_000)),
  /** How long past its slot an in-turn validator may stay silent before the next rank may propose. */
  outOfTurnDelayMs: z.int().check(z.minimum(10), z.maximum(600_000)),
  /** Bound on transactions per block. */
  maxTxsPerBlock: z.int().check(z.minimum(1), z.maximum(20_000)),
  validators: z
    .array(z.object({ name: z.string().check(z.minLength(1), z.maxLength(64)), publicKey: hex32 }))
    .check(z.minLength(1), z.maxLength(256)),
  balances: z
    .array(
      z.object({
        account: hex32,
        amount: z.string().check(
          z.regex(/^[0-9]{1,20}$/),
          z.refine((v) => BigInt(v) < 1n << 64n, "amount must be below 2^64"),
        ),
      }),
    )
    .check(z.maxLength(1_000_000)),
});

export type GenesisDoc = z.infer<typeof GenesisSchema>;

export enum GenesisErrorCode {
  Invalid = "GENESIS_INVALID",
}

export class GenesisError extends CodedError<GenesisErrorCode> {}

/** A parsed genesis with the derived values every validator needs. */
export class Genesis {
  readonly hash: Buffer;
  readonly validatorKeys: Buffer[];
  readonly initialAccounts: Map<string, Account>;
  private lt: LtHash | undefined;
  private root: Buffer | undefined;

  constructor(readonly doc: GenesisDoc) {
    this.validatorKeys = doc.validators.map((v) =>
      fromHex(v.publicKey, 32, `validator ${v.name} public key`),
    );
    this.initialAccounts = new Map();
    for (const b of doc.balances) {
      if (this.initialAccounts.has(b.account)) {
        throw new GenesisError(
          { code: GenesisErrorCode.Invalid, account: b.account },
          `Invalid genesis: account ${b.account} appears twice`,
        );
      }
      this.initialAccounts.set(b.account, { balance: BigInt(b.amount), nonce: 0n });
    }
    this.hash = sha256(encodeGenesis(doc));
  }

  /**
   * The LtHash of the genesis balances, computed on first use: a backup reading a node's
   * anchor from its state database never needs it (one 2 KiB expansion per account, ~20 ms
   * of a backup's start for the bench's genesis). Callers must not change it (clone it).
   */
  get initialLtHash(): LtHash {
    if (!this.lt) {
      const lt = new LtHash();
      for (const [k, a] of this.initialAccounts) lt.add(accountLeaf(Buffer.from(k, "hex"), a));
      this.lt = lt;
    }
    return this.lt;
  }

  /** The state root before any block: the root of {@link initialLtHash}. */
  get stateRoot(): Buffer {
    this.root ??= this.initialLtHash.root();
    return this.root;
  }

  get validatorCount(): number {
    return this.validatorKeys.length;
  }

  static parse(json: unknown, where = "genesis"): Genesis {
    const r = GenesisSchema.safeParse(json);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new GenesisError(
        { code: GenesisErrorCode.Invalid, where },
        `Invalid genesis in ${where}: ${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
      );
    }
    return new Genesis(r.data);
  }

  static load(path: string): Genesis {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      throw new GenesisError(
        { code: GenesisErrorCode.Invalid, path },
        `Cannot read genesis ${path}: ${(err as Error).message}; restore it from a backup or from another node of the chain`,
      );
    }
    return Genesis.parse(json, path);
  }
}

function encodeGenesis(doc: GenesisDoc): Buffer {
  const w = new Writer(1024);
  w.bytes16(Buffer.from("chainvault/genesis/v1")).bytes16(Buffer.from(doc.chainId));
  w.u64(BigInt(doc.genesisTimeMs)).u32(doc.blockTimeMs).u32(doc.outOfTurnDelayMs).u32(doc.maxTxsPerBlock);
  w.u32(doc.validators.length);
  for (const v of doc.validators) w.bytes16(Buffer.from(v.name)).fixed(Buffer.from(v.publicKey, "hex"), 32);
  w.u32(doc.balances.length);
  for (const b of doc.balances) w.fixed(Buffer.from(b.account, "hex"), 32).u64(BigInt(b.amount));
  return w.finish();
}
