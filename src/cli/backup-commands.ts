/**
 * Taking and listing backups: `backup` stores a node (data directory or URL) as a snapshot,
 * `snapshots` lists them with their anchors and last verification. The chain side of a backup
 * is loaded on use, so a plain backup does not load more than it needs.
 */
import type { Command } from "commander";
import { run } from "./command-kit.js";
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

/** Registers `backup` and `snapshots`. */
export function registerBackupCommands(program: Command): void {
  withRepo(
    program.command("backup").description("Back up a node (data directory or URL) into the repository"),
  )
    .requiredOption(
      "--node <node>",
      "node data directory, or its URL (admin token from $CHAINVAULT_ADMIN_TOKEN)",
    )
    .option(
      "--components <list>",
      "components to back up: ledger,state,config,keys,logs (default: all)",
      list,
    )
    .option(
      "--tag <tag>",
      "tag the snapshot (hourly, daily, weekly, manual, …); repeatable",
      (v: string, p: string[]) => [...p, v],
      [] as string[],
    )
    .option("--force", "read every file, ignoring the parent snapshot", false)
    .action(
      run(async (o: RepoOpts & { node: string; components?: string[]; tag: string[]; force: boolean }) => {
        // The node's side (the chain modules, loaded on use, its anchor and files) is
        // prepared while the repository's key is derived; backupNode awaits the repository
        // before anything that touches either.
        const opening = openRepoWithWorkers(o, true);
        opening.catch(() => undefined);
        const { backupNode } = await import("../recovery/node-backup.js");
        const bar = progressBar(!o.json, "backup");
        const r = await backupNode(opening, o.node, {
          tags: o.tag,
          force: o.force,
          ...(o.components ? { components: o.components } : {}),
          onProgress: bar.update,
        });
        bar.stop();
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `Snapshot ${short(r.snapshotId)} saved: ${r.files.new} new, ${r.files.changed} changed, ${r.files.unmodified} unmodified files; ` +
              `${mib(r.totalBytes)} in the node, ${mib(r.readBytes)} read, ${mib(r.storedBytesAdded)} added (${r.chunksAdded} chunks) ` +
              `in ${(r.elapsedMs / 1000).toFixed(1)} s; anchor height ${r.anchor.height} head ${short(r.anchor.headHash)}${r.live ? " (live checkpoint)" : ""}\n`,
          );
      }),
    );

  withRepo(
    program.command("snapshots").description("List snapshots with their anchors and last verification"),
  ).action(
    run(async (o: RepoOpts) => {
      const repo = await openRepo(o);
      const snaps = await repo.listSnapshots();
      const ver = await repo.readVerifications();
      const rows = snaps.map((s) => {
        const v = ver.get(s.id) ?? {};
        const best = v.chain ?? v.data ?? v.structure;
        if ("problem" in s) return { id: s.id, problem: s.problem };
        const m = s.manifest;
        return {
          id: s.id,
          time: m.time,
          host: m.host,
          sourceId: m.sourceId,
          tags: m.tags,
          components: m.components.map((c) => c.name),
          sizeBytes: m.components.reduce((a, c) => a + c.sizeBytes, 0),
          anchor: m.anchor,
          verified: best ? { level: best.level, ok: best.ok, time: best.time } : null,
          verifications: v,
        };
      });
      if (o.json) return printJson(rows);
      printTable(
        rows.map((r) =>
          "problem" in r
            ? {
                id: short(r.id),
                time: "DAMAGED",
                node: "",
                tags: "",
                height: "",
                size: "",
                verified: String(r.problem),
              }
            : {
                id: short(r.id),
                time: r.time.replace("T", " ").slice(0, 19),
                node: r.sourceId,
                tags: r.tags.join(","),
                height: String(r.anchor?.height ?? ""),
                size: mib(r.sizeBytes),
                verified: r.verified
                  ? `${r.verified.level} ${r.verified.ok ? "ok" : "FAILED"} ${r.verified.time.replace("T", " ").slice(0, 19)}`
                  : "never",
              },
        ),
      );
    }),
  );
}
