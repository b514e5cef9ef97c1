/**
 * The repository commands: repo init / key, backup, snapshots, verify, restore, forget,
 * prune, copy. Each opens the repository, calls one library function and prints its result
 * for people (tables, a progress bar on a terminal) or as JSON with `--json`.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import cliProgress from "cli-progress";
import type { Command } from "commander";
import { openBackend } from "../vault/backends/open.js";
import { copySnapshots } from "../vault/copy.js";
import { CryptoWorkers } from "../vault/crypto-workers.js";
import { VaultError, VaultErrorCode } from "../vault/errors.js";
import { forget, type RetentionPolicy } from "../vault/forget.js";
import { prune } from "../vault/prune.js";
import { Repository } from "../vault/repository.js";
import { verify } from "../vault/verify.js";
import { int, run } from "./command-kit.js";
import { ExitCode } from "./exit-codes.js";
import { printJson, printTable, short } from "./output.js";

interface RepoOpts {
  repo: string;
  passwordFile?: string;
  json?: boolean;
}

/** The password: from --password-file, else CHAINVAULT_PASSWORD; never echoed anywhere. */
export function readPassword(
  file: string | undefined,
  envName = "CHAINVAULT_PASSWORD",
  what = "--password-file",
): string {
  if (file) {
    try {
      return readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (err) {
      throw new VaultError(
        { code: VaultErrorCode.PasswordMissing, file },
        `Cannot read the password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  const env = process.env[envName];
  if (env === undefined || env === "")
    throw new VaultError(
      { code: VaultErrorCode.PasswordMissing },
      `No repository password: set ${envName} or pass ${what}`,
    );
  return env;
}

async function openRepo(o: RepoOpts): Promise<Repository> {
  const password = readPassword(o.passwordFile);
  return Repository.open(await openBackend(o.repo), password);
}

/**
 * {@link openRepo} for a command that will use the crypto workers: they boot while the
 * passphrase's key is derived (scrypt on the thread pool), not after it.
 */
function openRepoWithWorkers(o: RepoOpts, mainThreadBusy: boolean): Promise<Repository> {
  CryptoWorkers.prewarm(mainThreadBusy);
  return openRepo(o);
}

/** A progress bar on a terminal (stderr), nothing otherwise. */
function progressBar(enabled: boolean, label: string) {
  if (!enabled || !process.stderr.isTTY) return { update: (_d: number, _t: number) => {}, stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | {eta_formatted} left`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let last = 0;
  return {
    update: (done: number, total: number) => {
      const now = Date.now();
      if (!started) {
        bar.start(Math.max(1, Math.round(total / 1048576)), 0);
        started = true;
      }
      if (now - last < 100 && done < total) return;
      last = now;
      bar.setTotal(Math.max(1, Math.round(total / 1048576)));
      bar.update(Math.round(done / 1048576));
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const list = (v: string): string[] =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

function withRepo(c: Command): Command {
  return c
    .requiredOption("--repo <repo>", "repository: a directory or s3://bucket/prefix")
    .option("--password-file <file>", "file holding the repository password (default: $CHAINVAULT_PASSWORD)")
    .option("--json", "print the result as JSON", false);
}

export function registerVaultCommands(program: Command): void {
  const repoCmd = program.command("repo").description("Create a backup repository and manage its keys");
  withRepo(repoCmd.command("init").description("Create a new, empty, encrypted repository")).action(
    run(async (o: RepoOpts) => {
      const repo = await Repository.init(await openBackend(o.repo), readPassword(o.passwordFile));
      if (o.json) printJson({ repo: o.repo, id: repo.config.id, keyId: repo.keyId });
      else process.stdout.write(`Created repository ${repo.config.id.slice(0, 12)} at ${o.repo}\n`);
    }),
  );
  const key = repoCmd.command("key").description("Passwords that open the repository");
  withRepo(
    key
      .command("add")
      .description("Add a password (new one from $CHAINVAULT_NEW_PASSWORD or --new-password-file)"),
  )
    .option("--new-password-file <file>", "file holding the new password")
    .option("--label <label>", "what the key is for", "added")
    .action(
      run(async (o: RepoOpts & { newPasswordFile?: string; label: string }) => {
        const repo = await openRepo(o);
        const kf = await repo.addKey(
          readPassword(o.newPasswordFile, "CHAINVAULT_NEW_PASSWORD", "--new-password-file"),
          o.label,
        );
        if (o.json) printJson({ id: kf.id, label: kf.label });
        else process.stdout.write(`Added key ${kf.id}\n`);
      }),
    );
  withRepo(key.command("list").description("List the key files")).action(
    run(async (o: RepoOpts) => {
      const repo = await openRepo(o);
      const keys = await repo.listKeys();
      if (o.json)
        printJson(
          keys.map((k) =>
            "damaged" in k
              ? k
              : {
                  id: k.id,
                  label: k.label,
                  host: k.host,
                  user: k.user,
                  createdAt: k.createdAt,
                  current: k.id === repo.keyId,
                },
          ),
        );
      else
        printTable(
          keys.map((k) =>
            "damaged" in k
              ? { id: k.id, current: "", label: "DAMAGED", host: "", created: "" }
              : {
                  id: k.id,
                  current: k.id === repo.keyId ? "*" : "",
                  label: k.label,
                  host: k.host,
                  created: k.createdAt,
                },
          ),
        );
    }),
  );
  withRepo(key.command("remove <id>").description("Remove a key file (not the one in use)")).action(
    run(async (id: string, o: RepoOpts) => {
      const repo = await openRepo(o);
      await repo.removeKey(id);
      if (o.json) printJson({ removed: id });
      else process.stdout.write(`Removed key ${id}\n`);
    }),
  );

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

function fmt(v: boolean | undefined): string {
  return v === undefined ? "-" : v ? "ok" : "FAILED";
}
