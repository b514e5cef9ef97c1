/**
 * The chain commands: demo, devnet, node, ledger. Registered only when one of them (or help)
 * is asked for, so that repository commands do not pay for loading the chain modules.
 */
import { join } from "node:path";
import type { Command } from "commander";
import { NodeClient } from "../chain/client.js";
import { loadNodeConfig } from "../chain/config.js";
import { hex } from "../chain/crypto.js";
import { devnetDown, devnetInit, devnetStatus, devnetUp, readDevnet } from "../chain/devnet.js";
import { generateChain } from "../chain/generator.js";
import { Genesis } from "../chain/genesis.js";
import { runLoad } from "../chain/load.js";
import { startNode } from "../chain/run-node.js";
import { validateNodeData } from "../ledger/validate.js";
import { int, run } from "./command-kit.js";
import { runDemo } from "./demo.js";
import { ExitCode } from "./exit-codes.js";
import { printJson, printTable, short } from "./output.js";

export function registerChainCommands(program: Command): void {
  program
    .command("demo")
    .description("Run a 4-validator devnet under load, show the nodes agreeing, and stop it")
    .option("--dir <dir>", "where to put the devnet (default: a new temporary directory)")
    .option("--duration-s <s>", "how long to show blocks being produced", int("--duration-s", 1), 12)
    .option("--keep", "keep the devnet directory afterwards", false)
    .action(
      run(async (o: { dir?: string; durationS: number; keep: boolean }) =>
        (await runDemo({ ...o })) ? ExitCode.Ok : ExitCode.CheckFailed,
      ),
    );

  const devnet = program
    .command("devnet")
    .description("Run a local devnet: several nodes of one chain as separate processes");

  devnet
    .command("init <dir>")
    .description("Create a devnet: genesis, validator keys and one data directory per node")
    .requiredOption("--validators <n>", "number of validators", int("--validators", 1))
    .option("--observers <n>", "non-validating nodes", int("--observers", 0), 0)
    .option("--block-time-ms <ms>", "target block interval", int("--block-time-ms", 10), 1000)
    .option("--segment-bytes <n>", "ledger segment size", int("--segment-bytes", 4096))
    .action(
      run(
        async (
          dir: string,
          o: { validators: number; observers: number; blockTimeMs: number; segmentBytes?: number },
        ) => {
          const dn = await devnetInit(dir, {
            validators: o.validators,
            observers: o.observers,
            blockTimeMs: o.blockTimeMs,
            ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
          });
          process.stdout.write(
            `Devnet ${dn.chainId} created in ${dir} with ${dn.nodes.length} nodes; start it with: chainvault devnet up ${dir}\n`,
          );
        },
      ),
    );

  devnet
    .command("up <dir>")
    .description("Start every node of a devnet, each its own process")
    .option("--load <tps>", "also run a transaction load at this rate", int("--load", 0), 0)
    .option("--payload-bytes <n>", "data payload per load transaction", int("--payload-bytes", 0), 0)
    .action(
      run(async (dir: string, o: { load: number; payloadBytes: number }) => {
        const r = await devnetUp(dir, { loadTps: o.load, payloadBytes: o.payloadBytes });
        process.stdout.write(
          `Devnet up: ${r.nodes.map((n) => `${n.id} (pid ${n.pid})`).join(", ")}${r.load ? `; load pid ${r.load}` : ""}\n`,
        );
      }),
    );

  devnet
    .command("status <dir>")
    .description("Show each node's height, head and peers")
    .option("--json", "print JSON", false)
    .action(
      run(async (dir: string, o: { json: boolean }) => {
        const st = await devnetStatus(dir);
        if (o.json) printJson(st);
        else {
          printTable(
            st.map((s) => ({
              node: s.id,
              url: s.url,
              up: s.up,
              height: s.status?.height ?? "-",
              head: short(s.status?.headHash),
              syncing: s.status?.syncing ?? "-",
              lag: s.status?.lagBlocks ?? "-",
            })),
          );
        }
        return st.every((s) => s.up) ? ExitCode.Ok : ExitCode.Unreachable;
      }),
    );

  devnet
    .command("down <dir>")
    .description("Stop the load and every node of a devnet")
    .action(
      run(async (dir: string) => {
        readDevnet(dir);
        await devnetDown(dir);
        process.stdout.write(`Devnet ${dir} stopped\n`);
      }),
    );

  devnet
    .command("load <dir>")
    .description("Send a transaction load to a running devnet (runs in the foreground)")
    .requiredOption("--tps <n>", "transactions per second", int("--tps", 1))
    .option("--payload-bytes <n>", "data payload per transaction", int("--payload-bytes", 0), 0)
    .option("--duration-s <s>", "stop after this long", int("--duration-s", 1))
    .action(
      run(async (dir: string, o: { tps: number; payloadBytes: number; durationS?: number }) => {
        const dn = readDevnet(dir);
        const g = Genesis.load(join(dir, "genesis.json"));
        const ac = new AbortController();
        process.once("SIGTERM", () => ac.abort());
        process.once("SIGINT", () => ac.abort());
        const r = await runLoad(dn, hex(g.hash), {
          tps: o.tps,
          payloadBytes: o.payloadBytes,
          signal: ac.signal,
          ...(o.durationS ? { durationMs: o.durationS * 1000 } : {}),
        });
        process.stdout.write(`Load stopped: ${r.sent} sent, ${r.accepted} accepted, ${r.refused} refused\n`);
      }),
    );

  devnet
    .command("generate <dir>")
    .description(
      "Write a valid chain offline into a new devnet's node-0, or with --append add blocks to it, for benchmarks and tests",
    )
    .requiredOption("--blocks <n>", "blocks to generate (with --append: blocks to add)", int("--blocks", 1))
    .requiredOption("--txs-per-block <n>", "transactions per block", int("--txs-per-block", 0))
    .option(
      "--payload-bytes <n>",
      "data payload per transaction (at most 1024)",
      int("--payload-bytes", 0),
      0,
    )
    .option("--validators <n>", "validators of the devnet", int("--validators", 1), 4)
    .option("--segment-bytes <n>", "ledger segment size", int("--segment-bytes", 4096))
    .option(
      "--reserve-blocks <n>",
      "past block slots to leave free after the chain, for later appends",
      int("--reserve-blocks", 0),
      0,
    )
    .option(
      "--append",
      "continue the chain of the devnet in <dir> (node-0, which must be stopped); its genesis fixes validators and segment size",
      false,
    )
    .option("--json", "print the result as JSON", false)
    .action(
      run(
        async (
          dir: string,
          o: {
            blocks: number;
            txsPerBlock: number;
            payloadBytes: number;
            validators: number;
            segmentBytes?: number;
            reserveBlocks: number;
            append: boolean;
            json: boolean;
          },
        ) => {
          const tty = process.stderr.isTTY && !o.json;
          const r = await generateChain(dir, {
            blocks: o.blocks,
            txsPerBlock: o.txsPerBlock,
            payloadBytes: o.payloadBytes,
            validators: o.validators,
            reserveBlocks: o.reserveBlocks,
            append: o.append,
            ...(o.segmentBytes ? { segmentBytes: o.segmentBytes } : {}),
            onProgress: (h, bytes) => {
              if (tty)
                process.stderr.write(
                  `\rgenerating: block ${h}${o.append ? "" : `/${o.blocks}`}, ${(bytes / 1048576).toFixed(1)} MiB`,
                );
            },
          });
          if (tty) process.stderr.write("\n");
          const out = {
            dir,
            nodeDir: r.nodeDir,
            height: r.height,
            ledgerBytes: r.ledgerBytes,
            elapsedMs: r.elapsedMs,
          };
          if (o.json) printJson(out);
          else
            process.stdout.write(
              `${o.append ? "Appended" : "Generated"} ${o.blocks} blocks (${(r.ledgerBytes / 1048576).toFixed(1)} MiB) into ${r.nodeDir} in ${(r.elapsedMs / 1000).toFixed(1)} s; height ${r.height}\n`,
            );
        },
      ),
    );

  const node = program.command("node").description("Run or inspect one node");

  node
    .command("start")
    .description("Run a node in the foreground from its data directory")
    .requiredOption("--data <dir>", "the node's data directory")
    .option("--log-stderr", "log to standard error instead of logs/node.log", false)
    .action(
      run(async (o: { data: string; logStderr: boolean }) => {
        const n = await startNode(o.data, { logToStderr: o.logStderr });
        process.stdout.write(`Node ${n.node.opts.nodeId} listening on ${n.url}\n`);
        await new Promise<void>((resolve) => {
          const stop = (): void => {
            n.stop().then(resolve, resolve);
          };
          process.once("SIGTERM", stop);
          process.once("SIGINT", stop);
        });
      }),
    );

  node
    .command("status")
    .description("Show a node's status")
    .option("--data <dir>", "the node's data directory (its configured address is used)")
    .option("--url <url>", "the node's API address")
    .option("--json", "print JSON", false)
    .action(
      run(async (o: { data?: string; url?: string; json: boolean }) => {
        let url = o.url;
        if (!url && o.data) {
          const cfg = loadNodeConfig(o.data);
          url = `http://${cfg.host}:${cfg.port}`;
        }
        if (!url) throw new RangeError("Give --data <dir> or --url <url>");
        const s = await new NodeClient(url).status();
        if (o.json) printJson(s);
        else {
          printTable([
            {
              node: s.nodeId,
              chain: s.chainId,
              height: s.height,
              head: short(s.headHash),
              stateRoot: short(s.stateRoot),
              syncing: s.syncing,
              lag: s.lagBlocks,
              peers: s.peers.filter((p) => p.reachable).length,
            },
          ]);
        }
      }),
    );

  const ledger = program.command("ledger").description("Ledger integrity: validate a node's chain");

  ledger
    .command("validate")
    .description("Validate a node's whole chain offline: hashes, signatures, roots, state by replay")
    .requiredOption("--data <dir>", "the node's data directory (or a checkpoint or restored copy)")
    .option("--genesis <file>", "genesis file (default: <data>/genesis.json)")
    .option("--json", "print the report as JSON", false)
    .action(
      run(async (o: { data: string; genesis?: string; json: boolean }) => {
        const g = Genesis.load(o.genesis ?? join(o.data, "genesis.json"));
        const tty = process.stderr.isTTY && !o.json;
        const r = await validateNodeData(o.data, g, {
          onProgress: (h) => tty && process.stderr.write(`\rvalidating: block ${h}`),
        });
        if (tty) process.stderr.write("\n");
        if (o.json) printJson(r);
        else if (r.ok) {
          process.stdout.write(
            `Chain valid: ${r.blocks} blocks, ${r.txs} transactions, height ${r.validHeight}, head ${r.validHash}, state root ${r.stateRoot} (${(r.elapsedMs / 1000).toFixed(1)} s)\n`,
          );
        } else {
          const f = r.fault!;
          process.stdout.write(
            `Chain INVALID at height ${f.height}: ${f.code}: ${f.message}${f.file ? ` (${f.file}${f.offset !== undefined ? ` at offset ${f.offset}` : ""})` : ""}\nValid up to height ${r.validHeight}.\n`,
          );
        }
        return r.ok ? ExitCode.Ok : ExitCode.CheckFailed;
      }),
    );
}
