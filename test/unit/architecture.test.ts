// Goal: keep src/ imports pointing one way between folders and free of cycles between files; method: parse every src file's relative imports with the TypeScript pre-processor, check each against the folder rules, search the file graph for cycles, and first prove on synthetic graphs that the checker catches both faults.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC_DIR = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * The folders each folder may import from: a folder sits above everything it lists. `cli` is
 * the composition root and may import anything. A new folder fails the test until it is added here.
 */
const ALLOWED_IMPORTS: Readonly<Record<string, readonly string[] | "any">> = {
  util: ["util"],
  chain: ["chain", "util"],
  vault: ["vault", "util"],
  ledger: ["ledger", "chain", "util"],
  keys: ["keys", "chain", "util"],
  adapters: ["adapters", "chain", "util"],
  recovery: ["recovery", "vault", "ledger", "keys", "adapters", "chain", "util"],
  ops: ["ops", "recovery", "vault", "ledger", "keys", "adapters", "chain", "util"],
  cli: "any",
};

/** One relative import: the specifier as written and the file it resolves to, relative to src/ with `/` separators. */
interface ImportEdge {
  specifier: string;
  target: string;
}

/** Each src file (relative to src/) mapped to its relative imports. */
type ImportGraph = Map<string, ImportEdge[]>;

/** The specifiers of static imports, re-exports, `import()` and `require()` that are relative paths. */
function parseRelativeImports(source: string): string[] {
  const { importedFiles } = ts.preProcessFile(source, true, true);
  return importedFiles.map((f) => f.fileName).filter((s) => s.startsWith("./") || s.startsWith("../"));
}

function listTsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listTsFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

function toSrcRelative(absPath: string): string {
  return relative(SRC_DIR, absPath).split(sep).join("/");
}

/** Resolves a specifier the way NodeNext + tsx do: `.js` names the `.ts` source. */
function resolveSpecifier(fromFile: string, specifier: string): string {
  const base = resolve(dirname(fromFile), specifier);
  const candidates = specifier.endsWith(".js")
    ? [`${base.slice(0, -3)}.ts`, base]
    : [base, `${base}.ts`, join(base, "index.ts")];
  const found = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  return toSrcRelative(found ?? candidates[0]!);
}

function buildSrcGraph(): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of listTsFiles(SRC_DIR)) {
    const specifiers = parseRelativeImports(readFileSync(file, "utf8"));
    graph.set(
      toSrcRelative(file),
      specifiers.map((specifier) => ({ specifier, target: resolveSpecifier(file, specifier) })),
    );
  }
  return graph;
}

/** The top-level folder under src/ that holds a src-relative path. */
function folderOf(path: string): string {
  if (path.startsWith("../")) return "(outside src)";
  const slash = path.indexOf("/");
  return slash === -1 ? "(src root)" : path.slice(0, slash);
}

/** Returns one message per import that breaks the folder rules, naming the file and the import. */
function checkImportDirections(graph: ImportGraph): string[] {
  const violations: string[] = [];
  for (const [file, edges] of graph) {
    const from = folderOf(file);
    const allowed = ALLOWED_IMPORTS[from];
    if (allowed === undefined) {
      violations.push(
        `src/${file} is in folder "${from}", which has no import rule: add it to ALLOWED_IMPORTS in test/unit/architecture.test.ts`,
      );
      continue;
    }
    for (const { specifier, target } of edges) {
      const to = folderOf(target);
      if (to === "(outside src)") {
        violations.push(`src/${file} imports "${specifier}", which resolves outside src/`);
      } else if (allowed !== "any" && !allowed.includes(to)) {
        violations.push(
          `src/${file} imports "${specifier}" (src/${target}): ${from} may import only ${allowed.join(", ")}, not ${to}`,
        );
      }
    }
  }
  return violations;
}

/** Finds import cycles by depth-first search; each cycle is described edge by edge, ending at its first file. */
function findImportCycles(graph: ImportGraph): string[] {
  const done = new Set<string>();
  const onPath = new Map<string, number>();
  const path: Array<{ file: string; edge?: ImportEdge }> = [];
  const cycles: string[] = [];

  const visit = (file: string): void => {
    onPath.set(file, path.length);
    path.push({ file });
    for (const edge of graph.get(file) ?? []) {
      path[path.length - 1]!.edge = edge;
      const start = onPath.get(edge.target);
      if (start !== undefined) {
        const steps = path.slice(start).map((p) => `src/${p.file} imports "${p.edge!.specifier}"`);
        cycles.push(`${steps.join(" -> ")} -> src/${edge.target}`);
      } else if (!done.has(edge.target) && graph.has(edge.target)) {
        visit(edge.target);
      }
    }
    path.pop();
    onPath.delete(file);
    done.add(file);
  };

  for (const file of [...graph.keys()].sort()) if (!done.has(file)) visit(file);
  return cycles;
}

// --- self-checks: the checker must catch what it claims to ---

test("the import parser finds static, re-export, type and dynamic imports but not comments or strings", () => {
  const source = [
    'import { a } from "./a.js";',
    'import type { B } from "../b/b.js";',
    'export * from "./c.js";',
    'const d = await import("./d.js");',
    'import { readFileSync } from "node:fs";',
    '// import { e } from "./e.js";',
    'const s = "import(\\"./f.js\\")";',
  ].join("\n");
  assert.deepEqual(parseRelativeImports(source), ["./a.js", "../b/b.js", "./c.js", "./d.js"]);
});

test("the direction checker reports vault importing chain, naming the file and the import", () => {
  const graph: ImportGraph = new Map([
    ["vault/store.ts", [{ specifier: "../chain/tx.js", target: "chain/tx.ts" }]],
    ["ledger/repair.ts", [{ specifier: "../chain/block.js", target: "chain/block.ts" }]],
    ["chain/tx.ts", []],
    ["chain/block.ts", []],
  ]);
  const violations = checkImportDirections(graph);
  assert.equal(violations.length, 1, violations.join("\n"));
  assert.match(
    violations[0]!,
    /^src\/vault\/store\.ts imports "\.\.\/chain\/tx\.js" .*vault may import only vault, util/,
  );
});

test("the direction checker reports a folder with no rule and an import leaving src", () => {
  const graph: ImportGraph = new Map([
    ["index.ts", []],
    ["cli/main.ts", [{ specifier: "../../package.json", target: "../package.json" }]],
  ]);
  const violations = checkImportDirections(graph);
  assert.equal(violations.length, 2, violations.join("\n"));
  assert.match(violations[0]!, /src\/index\.ts is in folder "\(src root\)", which has no import rule/);
  assert.match(
    violations[1]!,
    /src\/cli\/main\.ts imports "\.\.\/\.\.\/package\.json", which resolves outside src/,
  );
});

test("the cycle finder reports a -> b -> a with its path and passes an acyclic diamond", () => {
  const cyclic: ImportGraph = new Map([
    ["util/a.ts", [{ specifier: "./b.js", target: "util/b.ts" }]],
    ["util/b.ts", [{ specifier: "./a.js", target: "util/a.ts" }]],
  ]);
  assert.deepEqual(findImportCycles(cyclic), [
    'src/util/a.ts imports "./b.js" -> src/util/b.ts imports "./a.js" -> src/util/a.ts',
  ]);

  const diamond: ImportGraph = new Map([
    [
      "chain/top.ts",
      [
        { specifier: "./left.js", target: "chain/left.ts" },
        { specifier: "./right.js", target: "chain/right.ts" },
      ],
    ],
    ["chain/left.ts", [{ specifier: "./bottom.js", target: "chain/bottom.ts" }]],
    ["chain/right.ts", [{ specifier: "./bottom.js", target: "chain/bottom.ts" }]],
    ["chain/bottom.ts", []],
  ]);
  assert.deepEqual(findImportCycles(diamond), []);
});

test("the cycle finder reports a longer cycle reached from outside it and a self-import", () => {
  const graph: ImportGraph = new Map([
    ["ops/entry.ts", [{ specifier: "./x.js", target: "ops/x.ts" }]],
    ["ops/x.ts", [{ specifier: "./y.js", target: "ops/y.ts" }]],
    ["ops/y.ts", [{ specifier: "./z.js", target: "ops/z.ts" }]],
    ["ops/z.ts", [{ specifier: "./x.js", target: "ops/x.ts" }]],
    ["ops/self.ts", [{ specifier: "./self.js", target: "ops/self.ts" }]],
  ]);
  assert.deepEqual(findImportCycles(graph), [
    'src/ops/x.ts imports "./y.js" -> src/ops/y.ts imports "./z.js" -> src/ops/z.ts imports "./x.js" -> src/ops/x.ts',
    'src/ops/self.ts imports "./self.js" -> src/ops/self.ts',
  ]);
});

// --- the real source tree ---

test("every import in src points in an allowed direction between folders", () => {
  const graph = buildSrcGraph();
  // Guards against a vacuous pass: the scan must have found files and imports to check.
  assert.ok(graph.size > 0, `no .ts files found under ${SRC_DIR}`);
  assert.ok(
    [...graph.values()].some((edges) => edges.length > 0),
    "no relative imports found under src/",
  );
  const violations = checkImportDirections(graph);
  assert.deepEqual(violations, [], `Import direction violations:\n${violations.join("\n")}`);
});

test("src has no import cycles between files", () => {
  const cycles = findImportCycles(buildSrcGraph());
  assert.deepEqual(cycles, [], `Import cycles:\n${cycles.join("\n")}`);
});
