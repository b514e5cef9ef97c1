/**
 * The repository's own commands: `repo init` creates an encrypted repository, `repo key
 * add/list/remove` manage the passwords that open it.
 */
import type { Command } from "commander";
import { openBackend } from "../vault/backends/open.js";
import { Repository } from "../vault/repository.js";
import { run } from "./command-kit.js";
import { printJson, printTable } from "./output.js";
import { openRepo, type RepoOpts, readPassword, withRepo } from "./vault-kit.js";

/** Registers `repo init` and `repo key add/list/remove`. */
export function registerRepoCommands(program: Command): void {
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
}
