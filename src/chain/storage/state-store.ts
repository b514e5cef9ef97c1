/**
 * The state: accounts in SQLite (WAL, synchronous=FULL), one row per applied block with its
 * hash, cumulative weight and undo record, and the LtHash commitment. Each block is applied
 * in one transaction, so the state is always exactly that after some height; the undo
 * records revert it to any retained height.
 */
import Database from "better-sqlite3";
import { CodedError } from "../../util/errors.js";
import { Reader, Writer } from "../encoding.js";
import { accountLeaf, LtHash } from "../lthash.js";
import type { Account } from "../types.js";
import type { AccountChange, Execution, StateReader } from "../validate.js";

/** What is written for an executed block: its changes and the commitment after it. */
export type Commit = Pick<Execution, "changes" | "ltHash" | "stateRoot">;

export enum StateErrorCode {
  UndoMissing = "STATE_UNDO_MISSING",
  GenesisMismatch = "STATE_GENESIS_MISMATCH",
  Corrupt = "STATE_CORRUPT",
}

export class StateError extends CodedError<StateErrorCode> {}

/** The state's record of a block it applied. */
export interface AppliedBlock {
  height: number;
  hash: Buffer;
  weight: bigint;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (pubkey BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, hash BLOB NOT NULL, weight INTEGER NOT NULL, undo BLOB);
`;

function encodeAccount(a: Account): Buffer {
  return new Writer(16).u64(a.balance).u64(a.nonce).finish();
}

function decodeAccount(b: Buffer): Account {
  return { balance: b.readBigUInt64BE(0), nonce: b.readBigUInt64BE(8) };
}

function encodeUndo(changes: Iterable<AccountChange>): Buffer {
  const list = [...changes];
  const w = new Writer(4 + list.length * 49).u32(list.length);
  for (const c of list) {
    w.fixed(c.pubkey, 32);
    if (c.before) w.u8(1).u64(c.before.balance).u64(c.before.nonce);
    else w.u8(0);
  }
  return w.finish();
}

function decodeUndo(b: Buffer): { pubkey: Buffer; before: Account | undefined }[] {
  const r = new Reader(b, "undo record");
  const n = r.u32();
  const out: { pubkey: Buffer; before: Account | undefined }[] = [];
  for (let i = 0; i < n; i++) {
    const pubkey = Buffer.from(r.fixed(32));
    const has = r.u8();
    out.push({ pubkey, before: has ? { balance: r.u64(), nonce: r.u64() } : undefined });
  }
  return out;
}

export class StateStore implements StateReader {
  readonly db: Database.Database;
  private readonly q;
  private lt: LtHash;
  private headCache: AppliedBlock | undefined;
  // Undo records at or below this height were already dropped in this process.
  private prunedThrough = 0;

  /**
   * Opens or creates the state database. A new database is seeded with the genesis
   * accounts; an existing one must belong to the same genesis.
   */
  constructor(
    readonly path: string,
    genesis: { hash: Buffer; initialAccounts: Map<string, Account>; initialLtHash: LtHash },
    opts: { readonly?: boolean } = {},
  ) {
    // Read-only opens (validation of a checkpoint or a restored copy) change no byte of the file.
    this.db = new Database(path, { readonly: !!opts.readonly, fileMustExist: !!opts.readonly });
    if (!opts.readonly) {
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = FULL");
      this.db.exec(SCHEMA);
    }
    this.q = {
      getAcct: this.db.prepare<[Buffer], { value: Buffer }>("SELECT value FROM accounts WHERE pubkey = ?"),
      putAcct: this.db.prepare<[Buffer, Buffer]>(
        "INSERT OR REPLACE INTO accounts (pubkey, value) VALUES (?, ?)",
      ),
      delAcct: this.db.prepare<[Buffer]>("DELETE FROM accounts WHERE pubkey = ?"),
      getMeta: this.db.prepare<[string], { value: Buffer }>("SELECT value FROM meta WHERE key = ?"),
      putMeta: this.db.prepare<[string, Buffer]>("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"),
      head: this.db.prepare<[], { height: number; hash: Buffer; weight: number | bigint }>(
        "SELECT height, hash, weight FROM blocks ORDER BY height DESC LIMIT 1",
      ),
      blockAt: this.db.prepare<
        [number],
        { height: number; hash: Buffer; weight: number | bigint; undo: Buffer | null }
      >("SELECT height, hash, weight, undo FROM blocks WHERE height = ?"),
      putBlock: this.db.prepare<[number, Buffer, bigint, Buffer | null]>(
        "INSERT INTO blocks (height, hash, weight, undo) VALUES (?, ?, ?, ?)",
      ),
      delBlock: this.db.prepare<[number]>("DELETE FROM blocks WHERE height = ?"),
      pruneUndo: this.db.prepare<[number, number]>(
        "UPDATE blocks SET undo = NULL WHERE height > ? AND height <= ? AND undo IS NOT NULL",
      ),
      minUndo: this.db.prepare<[], { h: number | null }>(
        "SELECT MIN(height) AS h FROM blocks WHERE undo IS NOT NULL",
      ),
    };
    const g = this.q.getMeta.get("genesis_hash");
    if (!g && opts.readonly) {
      throw new StateError(
        { code: StateErrorCode.Corrupt, path },
        `Cannot open state ${path}: it holds no chain (no genesis record); restore the state from a backup`,
      );
    }
    if (!g) {
      this.db.transaction(() => {
        this.q.putMeta.run("genesis_hash", genesis.hash);
        for (const [k, a] of genesis.initialAccounts)
          this.q.putAcct.run(Buffer.from(k, "hex"), encodeAccount(a));
        this.q.putMeta.run("lthash", genesis.initialLtHash.toBytes());
      })();
    } else if (!g.value.equals(genesis.hash)) {
      throw new StateError(
        { code: StateErrorCode.GenesisMismatch, path },
        `Cannot open state ${path}: it belongs to another chain (genesis ${g.value.toString("hex").slice(0, 16)}…); point the node at the right data directory`,
      );
    }
    const lt = this.q.getMeta.get("lthash");
    if (!lt)
      throw new StateError(
        { code: StateErrorCode.Corrupt, path },
        `Cannot open state ${path}: the state commitment is missing; restore the state from a backup`,
      );
    this.lt = LtHash.fromBytes(lt.value);
    this.headCache = this.readHead();
  }

  private readHead(): AppliedBlock | undefined {
    const r = this.q.head.get();
    return r ? { height: r.height, hash: Buffer.from(r.hash), weight: BigInt(r.weight) } : undefined;
  }

  /** The highest applied block, or undefined at genesis. */
  get head(): AppliedBlock | undefined {
    return this.headCache;
  }

  get ltHash(): LtHash {
    return this.lt;
  }

  getAccount(pubkey: Buffer): Account | undefined {
    const r = this.q.getAcct.get(pubkey);
    return r ? decodeAccount(r.value) : undefined;
  }

  /** The record of an applied block at a height, if it is still in the state. */
  appliedAt(height: number): AppliedBlock | undefined {
    const r = this.q.blockAt.get(height);
    return r ? { height: r.height, hash: Buffer.from(r.hash), weight: BigInt(r.weight) } : undefined;
  }

  /** Runs `fn` in one SQLite transaction; everything it applied is undone if it throws. */
  transaction<T>(fn: () => T): T {
    const saved = { lt: this.lt, head: this.headCache };
    try {
      return this.db
        .transaction(() => {
          const r = fn();
          // The commitment is written once per transaction, not once per block: it is 2 KiB.
          if (this.lt !== saved.lt) this.q.putMeta.run("lthash", this.lt.toBytes());
          return r;
        })
        .immediate();
    } catch (err) {
      // The database rolled back; so do the cached head and commitment.
      this.lt = saved.lt;
      this.headCache = saved.head;
      throw err;
    }
  }

  /** Writes one executed block. Call inside {@link transaction}. */
  apply(block: AppliedBlock, ex: Commit, keepUndo: boolean): void {
    this.applyMany([{ block, ex }], keepUndo);
  }

  /**
   * Writes executed blocks in chain order. Call inside {@link transaction}. Each block
   * gets its row and undo record; each account is written once, with its last value,
   * however many of the blocks changed it.
   */
  applyMany(blocks: { block: AppliedBlock; ex: Commit }[], keepUndo: boolean): void {
    if (blocks.length === 0) return;
    const last = new Map<string, AccountChange>();
    for (const { block, ex } of blocks) {
      for (const [key, c] of ex.changes) last.set(key, c);
      this.q.putBlock.run(
        block.height,
        block.hash,
        block.weight,
        keepUndo ? encodeUndo(ex.changes.values()) : null,
      );
    }
    for (const c of last.values()) this.q.putAcct.run(c.pubkey, encodeAccount(c.after));
    const top = blocks[blocks.length - 1]!;
    this.lt = top.ex.ltHash;
    this.headCache = top.block;
  }

  /** Reverts the head block using its undo record. Call inside {@link transaction}. */
  revertHead(): void {
    const head = this.headCache;
    if (!head) throw new RangeError("Cannot revert: the state is at genesis");
    const row = this.q.blockAt.get(head.height);
    if (!row?.undo) {
      throw new StateError(
        { code: StateErrorCode.UndoMissing, height: head.height },
        `Cannot revert block ${head.height}: its undo record was pruned (undo depth); restore the state from a backup taken at or below the target height`,
      );
    }
    const lt = this.lt.clone();
    for (const u of decodeUndo(row.undo)) {
      const cur = this.getAccount(u.pubkey);
      if (cur) lt.remove(accountLeaf(u.pubkey, cur));
      if (u.before) {
        this.q.putAcct.run(u.pubkey, encodeAccount(u.before));
        lt.add(accountLeaf(u.pubkey, u.before));
      } else {
        this.q.delAcct.run(u.pubkey);
      }
    }
    this.q.delBlock.run(head.height);
    this.lt = lt;
    this.headCache = this.readHead();
  }

  /** The lowest height whose block can still be reverted, or undefined if none can. */
  lowestRevertible(): number | undefined {
    return this.q.minUndo.get()?.h ?? undefined;
  }

  /** Drops undo records at or below a height (the undo depth bound). */
  pruneUndo(height: number): void {
    // Called once a block: only the heights since the last call are touched, not the table.
    if (height <= this.prunedThrough) return;
    this.q.pruneUndo.run(this.prunedThrough, height);
    this.prunedThrough = height;
  }

  /** Recomputes the commitment from every account: the check that the store matches its root. */
  recomputeLtHash(): LtHash {
    const lt = new LtHash();
    for (const r of this.db
      .prepare<[], { pubkey: Buffer; value: Buffer }>("SELECT pubkey, value FROM accounts")
      .iterate()) {
      lt.add(accountLeaf(r.pubkey, decodeAccount(r.value)));
    }
    return lt;
  }

  /** Writes a consistent copy of the database to `path` (SQLite's VACUUM INTO). */
  snapshotTo(path: string): void {
    this.db.prepare("VACUUM INTO ?").run(path);
  }

  close(): void {
    this.db.close();
  }
}
