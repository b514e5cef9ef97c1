/**
 * What {@link ChainStore.open} does once state and ledger are open: finish an interrupted
 * reorganisation, revert the state to the highest height the ledger agrees with, and
 * replay the ledger from there. See docs/storage.md, section 6.2.
 */
import type { Logger } from "../../util/logger.js";
import { decodeBlock } from "../block.js";
import { checkHeader } from "../validate.js";
import { applyToState } from "./block-import.js";
import { redoReorg } from "./chain-reorg.js";
import { ChainStoreError, ChainStoreErrorCode, type ChainView } from "./chain-types.js";
import { prepareBlock } from "./imported-block.js";

/** Brings state and ledger into agreement after a crash at any instant (see chain-store.ts). */
export function recoverChain(chain: ChainView, logger: Logger): void {
  redoReorg(chain, logger);
  const ledgerTip = chain.ledger.tipHeight;
  let h = Math.min(chain.state.head?.height ?? 0, ledgerTip);
  // Highest height at which the state's record of the chain matches the ledger.
  while (h > 0 && !chain.state.appliedAt(h)?.hash.equals(chain.ledger.entry(h)!.hash)) h--;
  const stateHead = chain.state.head?.height ?? 0;
  if (stateHead > h) {
    const low = chain.state.lowestRevertible();
    if (low === undefined || low > h + 1) {
      throw new ChainStoreError(
        {
          code: ChainStoreErrorCode.Mismatch,
          stateHeight: stateHead,
          ledgerHeight: ledgerTip,
          agreeHeight: h,
        },
        `Cannot open ${chain.opts.dataDir}: the state is at ${stateHead} but agrees with the ledger only up to ${h}, below the undo history; restore the state from a backup`,
      );
    }
    logger.warn({ from: stateHead, to: h }, "Reverting state to the height the ledger agrees with");
    chain.state.transaction(() => {
      while ((chain.state.head?.height ?? 0) > h) chain.state.revertHead();
    });
  }
  if (ledgerTip > h) {
    logger.info({ from: h + 1, to: ledgerTip }, "Replaying ledger blocks into the state");
    for (let height = h + 1; height <= ledgerTip; height++) {
      const bytes = chain.ledger.readBlockBytes(height);
      const block = decodeBlock(bytes);
      const parent = chain.ref(height - 1)!;
      try {
        checkHeader(chain.genesis, parent, block);
        chain.state.transaction(() => applyToState(chain, prepareBlock(block, bytes)));
      } catch (err) {
        // A block the ledger holds but that does not apply was never committed: cut it.
        logger.warn(
          { height, err: (err as Error).message },
          "Ledger block does not apply; truncating the ledger below it",
        );
        chain.ledger.truncate(height - 1);
        break;
      }
    }
  }
}
