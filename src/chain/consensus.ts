/**
 * Proof-of-authority rules as pure functions: who is in turn, when others may step in,
 * how much a block weighs, and which of two chains wins.
 *
 * Validators take turns by height. When the in-turn validator is silent for
 * `outOfTurnDelayMs` past its slot, the validator of rank 1 (the next in the list) may
 * propose; rank 2 after twice the delay, and so on, so out-of-turn proposers rarely race.
 * An in-turn block weighs 2, an out-of-turn block 1; the chain with the greatest total
 * weight wins, ties going to the lower head hash. Both halves of a partitioned network keep
 * producing, so a partition makes a real fork that this rule resolves when it heals.
 */
import type { ChainTip } from "./types.js";

export const IN_TURN_WEIGHT = 2n;
export const OUT_OF_TURN_WEIGHT = 1n;

export interface ConsensusParams {
  validatorCount: number;
  blockTimeMs: number;
  outOfTurnDelayMs: number;
}

export function inTurnProposer(height: number, validatorCount: number): number {
  return height % validatorCount;
}

/** 0 for the in-turn validator, 1 for the next, up to validatorCount - 1. */
export function proposerRank(height: number, proposer: number, validatorCount: number): number {
  return (proposer - inTurnProposer(height, validatorCount) + validatorCount) % validatorCount;
}

export function blockWeight(height: number, proposer: number, validatorCount: number): bigint {
  return proposerRank(height, proposer, validatorCount) === 0 ? IN_TURN_WEIGHT : OUT_OF_TURN_WEIGHT;
}

/** The earliest timestamp a proposer of the given rank may put on the block after `parentTimeMs`. */
export function earliestTimestamp(p: ConsensusParams, parentTimeMs: number, rank: number): number {
  return parentTimeMs + p.blockTimeMs + rank * p.outOfTurnDelayMs;
}

/** Returns a negative number if `a` is the better chain, positive if `b` is, 0 if they are the same tip. */
export function compareTips(a: ChainTip, b: ChainTip): number {
  if (a.weight !== b.weight) return a.weight > b.weight ? -1 : 1;
  return Buffer.compare(a.hash, b.hash);
}

/** True if `candidate` should replace `current` under the fork-choice rule. */
export function isBetterTip(candidate: ChainTip, current: ChainTip): boolean {
  return compareTips(candidate, current) < 0;
}
