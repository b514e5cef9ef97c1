/**
 * Retention and off-site copies: `forget` removes snapshots by retention policy, `prune`
 * deletes the data no snapshot references, `copy` copies snapshots to another repository.
 */
import type { Command } from "commander";
import { openBackend } from "../vault/backends/open.js";
import { copySnapshots } from "../vault/copy.js";
import { forget, type RetentionPolicy } from "../vault/forget.js";
import { prune } from "../vault/prune.js";
import { Repository } from "../vault/repository.js";
import { int, run } from "./command-kit.js";
import { printJson, printTable, short } from "./output.js";
import { mib, openRepo, type RepoOpts, readPassword, withRepo } from "./vault-kit.js";

/** Registers `forget`, `prune` and `copy`. */
export function registerRetentionCommands(program: Command): void {
  withRepo(program.command("forget").description("Remove snapshots by retention policy"))
    .option("--keep-last <n>", "keep the n latest", int("--keep-last"))
    .option("--keep-hourly <n>", "keep the latest of each of the n latest hours", int("--keep-hourly"))
    .option("--keep-daily <n>", "… days", int("--keep-daily"))
    .option("--keep-weekly <n>", "… weeks", int("--keep-weekly"))
    .option("--keep-monthly <n>", "… months", int("--keep-monthly"))
    .option("--keep-yearly <n>", "… years", int("--keep-yearly"))
    .option(
      "--tag <tag>",
      "only consider snapshots with this tag",
      (v: string, p: string[]) => [...p, v],
      [] as string[],
    )
    .option("--prune", "prune unreferenced data afterwards", false)
    .option("--dry-run", "show what would be removed", false)
    .action(
      run(
        async (
          o: RepoOpts & {
            keepLast?: number;
            keepHourly?: number;
            keepDaily?: number;
            keepWeekly?: number;
            keepMonthly?: number;
            keepYearly?: number;
            tag: string[];
            prune: boolean;
            dryRun: boolean;
          },
        ) => {
          const repo = await openRepo(o);
          const policy: RetentionPolicy = {
            ...(o.keepLast !== undefined ? { last: o.keepLast } : {}),
            ...(o.keepHourly !== undefined ? { hourly: o.keepHourly } : {}),
            ...(o.keepDaily !== undefined ? { daily: o.keepDaily } : {}),
            ...(o.keepWeekly !== undefined ? { weekly: o.keepWeekly } : {}),
            ...(o.keepMonthly !== undefined ? { monthly: o.keepMonthly } : {}),
            ...(o.keepYearly !== undefined ? { yearly: o.keepYearly } : {}),
            ...(o.tag.length > 0 ? { tags: o.tag } : {}),
          };
          const r = await forget(repo, policy, { dryRun: o.dryRun });
          const p = o.prune && !o.dryRun ? await prune(repo) : undefined;
          if (o.json) printJson({ ...r, prune: p });
          else {
            printTable(
              r.decisions.map((d) => ({
                id: short(d.id),
                time: d.time.replace("T", " ").slice(0, 19),
                tags: d.tags.join(","),
                action: d.keep ? "keep" : o.dryRun ? "would remove" : "removed",
                reasons: d.reasons.join(","),
              })),
            );
            if (p)
              process.stdout.write(
                `Pruned: ${p.packsDeleted} packs deleted, ${p.packsRepacked} repacked, ${mib(p.bytesFreed)} freed\n`,
              );
          }
        },
      ),
    );

  withRepo(program.command("prune").description("Delete data no snapshot references"))
    .option("--dry-run", "show what would be done", false)
    .action(
      run(async (o: RepoOpts & { dryRun: boolean }) => {
        const repo = await openRepo(o);
        const r = await prune(repo, { dryRun: o.dryRun });
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `${o.dryRun ? "Would prune" : "Pruned"}: ${r.packsDeleted} packs deleted, ${r.packsRepacked} repacked, ${mib(r.bytesFreed)} freed, ${r.indexObjects} index objects rewritten\n`,
          );
      }),
    );

  program
    .command("copy [ids...]")
    .description("Copy snapshots to another repository (off-site); ones already there are skipped")
    .requiredOption("--from <repo>", "source repository")
    .requiredOption("--to <repo>", "destination repository")
    .option("--from-password-file <file>", "password of the source (default: $CHAINVAULT_PASSWORD)")
    .option(
      "--to-password-file <file>",
      "password of the destination (default: $CHAINVAULT_TO_PASSWORD, else the source's)",
    )
    .option("--all", "every snapshot (the default when no id is given)", false)
    .option("--json", "print the result as JSON", false)
    .action(
      run(
        async (
          ids: string[],
          o: {
            from: string;
            to: string;
            fromPasswordFile?: string;
            toPasswordFile?: string;
            all: boolean;
            json: boolean;
          },
        ) => {
          const fromPw = readPassword(o.fromPasswordFile);
          const toPw =
            o.toPasswordFile || process.env.CHAINVAULT_TO_PASSWORD
              ? readPassword(o.toPasswordFile, "CHAINVAULT_TO_PASSWORD", "--to-password-file")
              : fromPw;
          const from = await Repository.open(await openBackend(o.from), fromPw);
          const to = await Repository.open(await openBackend(o.to), toPw);
          const r = await copySnapshots(from, to, ids.length > 0 && !o.all ? ids : undefined);
          if (o.json) printJson(r);
          else
            process.stdout.write(
              `Copied ${r.copied.length} snapshots (${r.skipped.length} already there) from ${o.from} to ${o.to}\n`,
            );
        },
      ),
    );
}
