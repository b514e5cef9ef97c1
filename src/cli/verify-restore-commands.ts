/**
 * Proving and using backups: `verify` climbs the verification ladder (structure, data, chain)
 * and exits with CheckFailed when a snapshot fails; `restore` brings a snapshot back into a
 * directory, staged and verified before it is swapped in.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { verify } from "../vault/verify.js";
import { run } from "./command-kit.js";
import { ExitCode } from "./exit-codes.js";
import { printJson, printTable, short } from "./output.js";
import {
  list,
  mib,
  openRepo,
  openRepoWithWorkers,
  progressBar,
  type RepoOpts,
  withRepo,
} from "./vault-kit.js";

/** Registers `verify` and `restore`. */
export function registerVerifyRestoreCommands(program: Command): void {
  withRepo(
    program
      .command("verify [ids...]")
      .description("Verify snapshots: structure, data (--read-data), chain (--chain)"),
  )
    .option("--all", "every snapshot (the default when no id is given)", false)
    .option("--read-data", "read, authenticate and decompress every chunk", false)
    .option(
      "--read-data-subset <pct>",
      "read this percentage of the packs, a different part each run",
      (v: string) => Number(v.replace(/%$/, "")),
    )
    .option(
      "--chain",
      "restore each snapshot into a scratch directory and validate its chain against the anchor",
      false,
    )
    .action(
      run(
        async (
          ids: string[],
          o: RepoOpts & { all: boolean; readData: boolean; readDataSubset?: number; chain: boolean },
        ) => {
          const repo = await (o.readData || o.readDataSubset !== undefined || o.chain
            ? openRepoWithWorkers(o, false)
            : openRepo(o));
          const bar = progressBar(!o.json, "verify");
          const chainCheck = o.chain
            ? (await import("../recovery/node-backup.js")).checkRestoredNode
            : undefined;
          const r = await verify(repo, {
            ...(ids.length > 0 && !o.all ? { snapshots: ids } : {}),
            readData: o.readData,
            ...(o.readDataSubset !== undefined ? { readDataSubsetPercent: o.readDataSubset } : {}),
            ...(chainCheck ? { chainCheck } : {}),
            onProgress: (d, t) => bar.update(d * 1048576, t * 1048576),
          });
          bar.stop();
          if (o.json) printJson(r);
          else {
            for (const p of r.repoProblems) process.stdout.write(`DAMAGE: ${p}\n`);
            printTable(
              r.snapshots.map((s) => ({
                id: short(s.id),
                structure: fmt(s.levels.structure),
                data: fmt(s.levels.data),
                chain: fmt(s.levels.chain),
                problems: s.problems.slice(0, 2).join("; "),
              })),
            );
            process.stdout.write(
              `${r.ok ? "OK" : "FAILED"}: ${r.snapshots.length} snapshots, ${r.packsRead} packs and ${r.chunksRead} chunks read (${mib(r.bytesRead)}) in ${(r.elapsedMs / 1000).toFixed(1)} s\n`,
            );
          }
          return r.ok ? ExitCode.Ok : ExitCode.CheckFailed;
        },
      ),
    );

  withRepo(program.command("restore <id>").description("Restore a snapshot (id or latest) into a directory"))
    .requiredOption("--target <dir>", "directory to restore into; what is there is kept aside")
    .option("--components <list>", "only these components; the others at the target are left alone", list)
    .option("--delta", "reuse the chunks already in the target's files; fetch only what differs", false)
    .option("--force", "restore even if the snapshot fails verification (loudly)", false)
    .action(
      run(
        async (
          id: string,
          o: RepoOpts & { target: string; components?: string[]; delta: boolean; force: boolean },
        ) => {
          const [repo, { restoreNode }] = await Promise.all([
            openRepoWithWorkers(o, false),
            import("../recovery/node-backup.js"),
          ]);
          const bar = progressBar(!o.json, "restore");
          // Resolved: a trailing slash (as shells complete it) would put the staging and
          // kept-aside directories, named `<target>.…`, inside the target.
          const r = await restoreNode(repo, id, resolve(o.target), {
            delta: o.delta,
            force: o.force,
            ...(o.components ? { components: o.components } : {}),
            onProgress: bar.update,
          });
          bar.stop();
          for (const w of r.warnings) process.stderr.write(`chainvault: WARNING: ${w}\n`);
          if (o.force && r.warnings.length > 0)
            process.stderr.write(
              "chainvault: WARNING: --force restored a snapshot that did not verify; validate the data before use\n",
            );
          if (o.json) printJson(r);
          else
            process.stdout.write(
              `Restored snapshot ${short(r.snapshotId)} (${r.components.join(", ")}) into ${r.target}: ${r.files} files, ${mib(r.bytes)}, ` +
                `${mib(r.fetchedBytes)} from the repository, ${mib(r.reusedBytes)} reused, in ${(r.elapsedMs / 1000).toFixed(1)} s` +
                `${r.keptAside ? `; the previous data is in ${r.keptAside} until you remove it` : ""}\n`,
            );
        },
      ),
    );
}

function fmt(v: boolean | undefined): string {
  return v === undefined ? "-" : v ? "ok" : "FAILED";
}
