/**
 * Reorganisation: replacing the blocks above an ancestor with a better branch, state and
 * ledger together, with the redo journal written before the ledger is cut; and finishing,
 * at open, a reorganisation that a crash interrupted after its journal was written.
 * See docs/storage.md, sections 6.2 and 6.4.
 */
import { rmSync } from "node:fs";
import { crashPoint, failPoint } from "../../util/crash-points.js";
import type { Logger } from "../../util/logger.js";
import { isBetterTip } from "../consensus.js";
import { hex } from "../crypto.js";
import type { ChainTip } from "../types.js";
import { checkHeader, type HeaderCheckOptions } from "../validate.js";
import { applyToState, startBlockChecks } from "./block-import.js";
import { ChainStoreError, ChainStoreErrorCode, type ChainView } from "./chain-types.js";
import { type ImportedBlock, ledgerItemOf } from "./imported-block.js";
import { readReorgJournal, reorgJournalPath, writeReorgJournal } from "./reorg-journal.js";

/**
 * The body of {@link ChainStore.reorg}, run under the store's mutex: replaces the blocks
 * above `ancestor` with `blocks` if the result is a better chain by the fork-choice rule.
 */
export async function reorgUnderMutex(
  chain: ChainView,
  logger: Logger,
  ancestor: number,
  blocks: ImportedBlock[],
  opts: HeaderCheckOptions,
): Promise<void> {
  const journalPath = reorgJournalPath(chain.opts.dataDir);
  const oldTip = chain.tip();
  const low = chain.state.lowestRevertible();
  if (ancestor < oldTip.height && (low === undefined || low > ancestor + 1)) {
    throw new ChainStoreError(
      { code: ChainStoreErrorCode.BelowUndo, ancestor },
      `Cannot reorganise to ancestor ${ancestor}: undo history starts at ${low ?? "none"}; resync this node from a backup`,
    );
  }
  const checkError = await startBlockChecks(
    chain.genesis,
    blocks.map((b) => b.bytes),
  );
  if (checkError) throw checkError;
  chain.state.transaction(() => {
    while ((chain.state.head?.height ?? 0) > ancestor) chain.state.revertHead();
    let parent = chain.ref(ancestor)!;
    for (const ib of blocks) {
      checkHeader(chain.genesis, parent, ib.block, opts);
      applyToState(chain, ib);
      parent = {
        height: ib.block.header.height,
        hash: ib.hash,
        timestampMs: ib.block.header.timestampMs,
      };
    }
    const head = chain.state.head!;
    const newTip: ChainTip = { height: head.height, hash: head.hash, weight: head.weight };
    if (!isBetterTip(newTip, oldTip)) {
      throw new ChainStoreError(
        { code: ChainStoreErrorCode.NotBetter, height: newTip.height },
        `Refusing reorganisation to ${hex(newTip.hash).slice(0, 16)} at ${newTip.height}: weight ${newTip.weight} does not beat ${oldTip.weight}`,
      );
    }
    // The new branch is made durable in a journal before the ledger is cut, so a crash
    // between the cut and the append is finished on restart (redo), never left half-way.
    writeReorgJournal(journalPath, ancestor, chain.ref(ancestor)!.hash, blocks);
    crashPoint("chain.reorg.after-journal");
    chain.ledger.truncate(ancestor);
    crashPoint("chain.reorg.after-truncate");
    chain.ledger.append(blocks.map((b) => ledgerItemOf(b, chain.genesis.validatorCount)));
    // As a COMMIT that fails on a full disk would, once the ledger holds the new branch.
    failPoint("chain.reorg.before-commit");
  });
  rmSync(journalPath, { force: true });
  logger.warn({ ancestor, from: oldTip.height, to: chain.tip().height }, "Chain reorganised");
}

/** Finishes a reorganisation that a crash interrupted after its journal was written. */
export function redoReorg(chain: ChainView, logger: Logger): void {
  const journalPath = reorgJournalPath(chain.opts.dataDir);
  const j = readReorgJournal(journalPath);
  if (!j) return;
  const at = chain.ref(j.ancestor);
  if (!at?.hash.equals(j.ancestorHash)) {
    // The ledger no longer holds the ancestor: the journal is stale; the normal recovery applies.
    logger.warn(
      { ancestor: j.ancestor },
      "Discarding a reorganisation journal that does not match the ledger",
    );
  } else {
    logger.warn(
      { ancestor: j.ancestor, blocks: j.blocks.length },
      "Finishing a reorganisation interrupted by a crash",
    );
    chain.ledger.truncate(j.ancestor);
    chain.ledger.append(j.blocks.map((b) => ledgerItemOf(b, chain.genesis.validatorCount)));
  }
  rmSync(journalPath, { force: true });
}
