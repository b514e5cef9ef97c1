/** Prometheus metrics of a node, in a registry of its own. */
import { Counter, Gauge, Registry } from "prom-client";

export interface ChainMetrics {
  registry: Registry;
  height: Gauge;
  peersReachable: Gauge;
  lagBlocks: Gauge;
  mempoolTxs: Gauge;
  blocksImported: Counter;
  blocksProduced: Counter;
  blocksRejected: Counter<"reason">;
  txsImported: Counter;
  reorgs: Counter;
}

export function createChainMetrics(): ChainMetrics {
  const registry = new Registry();
  const r = { registers: [registry] };
  return {
    registry,
    height: new Gauge({ name: "chainvault_chain_height", help: "Height of the node's head block", ...r }),
    peersReachable: new Gauge({
      name: "chainvault_chain_peers_reachable",
      help: "Peers that answered the last status poll",
      ...r,
    }),
    lagBlocks: new Gauge({ name: "chainvault_chain_lag_blocks", help: "Blocks behind the best peer", ...r }),
    mempoolTxs: new Gauge({
      name: "chainvault_mempool_txs",
      help: "Transactions waiting in the mempool",
      ...r,
    }),
    blocksImported: new Counter({
      name: "chainvault_chain_blocks_imported_total",
      help: "Blocks validated and stored",
      ...r,
    }),
    blocksProduced: new Counter({
      name: "chainvault_chain_blocks_produced_total",
      help: "Blocks this validator proposed",
      ...r,
    }),
    blocksRejected: new Counter({
      name: "chainvault_chain_blocks_rejected_total",
      help: "Invalid blocks refused, by rule broken",
      labelNames: ["reason"],
      ...r,
    }),
    txsImported: new Counter({
      name: "chainvault_chain_txs_imported_total",
      help: "Transactions in stored blocks",
      ...r,
    }),
    reorgs: new Counter({ name: "chainvault_chain_reorgs_total", help: "Chain reorganisations", ...r }),
  };
}
