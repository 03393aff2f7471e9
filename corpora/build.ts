/**
 * Builds the per-task text corpora from Debian packages (and one npm package), deterministically.
 *
 *   npx tsx corpora/build.ts            # all tasks
 *   npx tsx corpora/build.ts --only ja  # one task
 *
 * Output:
 *   corpora/data/<task>/{validation,test}.jsonl   committed: small held-out slices (by document)
 *   corpora/.cache/train/<task>.bin               rebuilt on demand: every training document,
 *                                                 UTF-8 bytes, documents separated by 0x00
 *   corpora/manifest.json                         committed: sources, versions, licenses, sha256
 *
 * Splits are by document, decided by a hash of the document id, never by windows of one stream,
 * so no held-out text can leak into training through an overlapping window.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { TASKS, type TaskId } from "../core/tasks.ts";

const ROOT = fileURLToPath(new URL(".", import.meta.url));
const CACHE = join(ROOT, ".cache");
const DEBS = join(CACHE, "debs");
const EXTRACTED = join(CACHE, "x");
const TRAIN = join(CACHE, "train");
const DATA = join(ROOT, "data");

/** Held-out slices are capped so the committed corpus stays small. */
const HELDOUT_BYTES = 160_000;
/** Documents larger than this never go to a held-out slice (they would dominate it). */
const HELDOUT_MAX_DOC_BYTES = 48_000;
const MIN_DOC_BYTES = 200;

interface Source {
  kind: "deb" | "npm";
  name: string;
  license: string;
}
interface TaskSpec {
  sources: Source[];
  /** Yields [documentId, text] for every document of the task from the unpacked sources. */
  documents: (roots: Record<string, string>) => Iterable<[string, string]>;
}

const man = (pkgs: string[], dir: string, license: string): TaskSpec => ({
  sources: pkgs.map((name) => ({ kind: "deb", name, license })),
  *documents(roots) {
    for (const pkg of pkgs) {
      const base = join(roots[pkg]!, "usr/share/man", dir);
      for (const file of walk(base)) {
        if (!/\/man\d[^/]*\/[^/]+\.gz$/.test(file)) continue;
        if (!dir && /\/usr\/share\/man\/[a-z]{2}(_[A-Z]{2})?[/.]/.test(file)) continue; // other locales
        const text = renderManPage(file);
        if (text) yield [`${pkg}:${relative(roots[pkg]!, file)}`, text];
      }
    }
  },
});

const files = (pkg: string, dir: string, pattern: RegExp, license: string): TaskSpec => ({
  sources: [{ kind: "deb", name: pkg, license }],
  *documents(roots) {
    for (const file of walk(join(roots[pkg]!, dir))) {
      if (!pattern.test(file) || /\/test\/|\/tests\//.test(file)) continue;
      yield [`${pkg}:${relative(roots[pkg]!, file)}`, readFileSync(file, "utf8")];
    }
  },
});

const SPECS: Record<TaskId, TaskSpec> = {
  en: man(["manpages", "manpages-dev"], "", "GPL-2+ and others (Linux man-pages project, see copyright)"),
  de: man(["manpages-de", "manpages-de-dev"], "de", "GPL-3+ (translations), see copyright"),
  fr: man(["manpages-fr", "manpages-fr-dev"], "fr", "GPL-3+ (translations), see copyright"),
  es: man(["manpages-es", "manpages-es-dev"], "es", "GPL-3+ (translations), see copyright"),
  ru: man(["manpages-ru", "manpages-ru-dev"], "ru", "GPL-3+ (translations), see copyright"),
  ja: man(["manpages-ja", "manpages-ja-dev"], "ja", "JM project license / GPL (see copyright)"),
  zh: man(["manpages-zh"], "zh_CN", "GFDL-1.2+ (see copyright)"),
  ar: {
    sources: [{ kind: "npm", name: "quran-json@3.1.2", license: "CC-BY-4.0" }],
    *documents(roots) {
      const chapters = JSON.parse(readFileSync(join(roots["quran-json@3.1.2"]!, "package/dist/quran.json"), "utf8"));
      for (const ch of chapters as { id: number; verses: { text: string }[] }[]) {
        yield [`quran-json:surah-${ch.id}`, ch.verses.map((v) => v.text).join("\n") + "\n"];
      }
    },
  },
  "code-py": files("libpython3.11-stdlib", "usr/lib/python3.11", /\.py$/, "PSF-2.0"),
  "code-c": files("linux-libc-dev", "usr/include", /\.h$/, "GPL-2 WITH Linux-syscall-note"),
  math: {
    sources: [{ kind: "deb", name: "pari-doc", license: "GPL-2+" }],
    *documents(roots) {
      // The PARI manual is a few huge .tex files; its sections are the natural documents.
      for (const file of walk(join(roots["pari-doc"]!, "usr/share/pari/doc"))) {
        if (!file.endsWith(".tex")) continue;
        const parts = readFileSync(file, "latin1").split(/\n(?=\\(?:section|subsec|subsubsec)\{)/);
        for (let i = 0; i < parts.length; i++) yield [`pari-doc:${relative(roots["pari-doc"]!, file)}#${i}`, parts[i]!];
      }
    },
  },
};

function* walk(dir: string): Generator<string> {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = lstatSync(p); // symlinks are aliases of files we already read, or dangling
    if (st.isDirectory()) yield* walk(p);
    else if (st.isFile()) yield p;
  }
}

function renderManPage(file: string): string {
  const r = spawnSync("mandoc", ["-T", "utf8", "-O", "width=78", file], { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0 && !r.stdout) return "";
  // mandoc marks bold/underline by overstriking ("c\bc", "_\bc"); keep the visible character.
  return r.stdout.replace(/[^\n]\u0008/gu, "");
}

/** Plain-text normalisation shared by every task: no control characters, tidy whitespace. */
function normalise(text: string, keepIndent: boolean): string {
  let t = text.replace(/\r\n?/g, "\n").replace(/\u001b\[[0-9;]*m/g, "");
  t = t.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "");
  t = t.replace(/[ \t]+$/gm, "");
  if (!keepIndent) t = t.replace(/^[ \t]+/gm, "").replace(/ {2,}/g, " ");
  return t.replace(/\n{3,}/g, "\n\n").trim() + "\n";
}

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

function fetchSource(src: Source): { root: string; version: string; sha256: string; file: string } {
  mkdirSync(DEBS, { recursive: true });
  if (src.kind === "deb") {
    let deb = readdirSync(DEBS).find((f) => f.startsWith(`${src.name}_`) && f.endsWith(".deb"));
    if (!deb) {
      execFileSync("apt-get", ["download", src.name], { cwd: DEBS, stdio: "inherit" });
      deb = readdirSync(DEBS).find((f) => f.startsWith(`${src.name}_`) && f.endsWith(".deb"));
      if (!deb) throw new Error(`apt-get download ${src.name} produced no .deb (run 'apt-get update' first)`);
    }
    const root = join(EXTRACTED, src.name);
    if (!existsSync(root)) {
      mkdirSync(EXTRACTED, { recursive: true });
      execFileSync("dpkg-deb", ["-x", join(DEBS, deb), root]);
    }
    return { root, version: deb.split("_")[1]!, sha256: sha256(readFileSync(join(DEBS, deb))), file: deb };
  }
  const [name, version] = src.name.split("@") as [string, string];
  const tgz = `${name}-${version}.tgz`;
  if (!existsSync(join(DEBS, tgz))) execFileSync("npm", ["pack", src.name, "--silent"], { cwd: DEBS, stdio: "ignore" });
  const root = join(EXTRACTED, src.name);
  if (!existsSync(root)) {
    mkdirSync(root, { recursive: true });
    execFileSync("tar", ["xzf", join(DEBS, tgz), "-C", root]);
  }
  return { root, version, sha256: sha256(readFileSync(join(DEBS, tgz))), file: tgz };
}

function buildTask(task: TaskId) {
  const spec = SPECS[task];
  const roots: Record<string, string> = {};
  const sources = spec.sources.map((src) => {
    const got = fetchSource(src);
    roots[src.name] = got.root;
    return { ...src, version: got.version, file: got.file, sha256: got.sha256 };
  });
  const keepIndent = task.startsWith("code-") || task === "math";
  const docs: { id: string; text: string; key: string }[] = [];
  const seen = new Set<string>();
  for (const [id, raw] of spec.documents(roots)) {
    const text = normalise(raw, keepIndent);
    if (Buffer.byteLength(text) < MIN_DOC_BYTES) continue;
    const h = sha256(text);
    if (seen.has(h)) continue; // identical pages (e.g. symlinked aliases) count once
    seen.add(h);
    docs.push({ id, text, key: sha256(`${task}\n${id}`) });
  }
  // Deterministic document order by hash; the first documents (under the size caps) are held out.
  docs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const split: Record<"test" | "validation" | "train", typeof docs> = { test: [], validation: [], train: [] };
  const filled = { test: 0, validation: 0 };
  for (const d of docs) {
    const n = Buffer.byteLength(d.text);
    const target = n > HELDOUT_MAX_DOC_BYTES ? "train" : filled.test < HELDOUT_BYTES ? "test" : filled.validation < HELDOUT_BYTES ? "validation" : "train";
    if (target !== "train") filled[target] += n;
    split[target].push(d);
  }
  const outDir = join(DATA, task);
  mkdirSync(outDir, { recursive: true });
  mkdirSync(TRAIN, { recursive: true });
  const outputs: Record<string, { documents: number; bytes: number; sha256: string }> = {};
  for (const name of ["test", "validation"] as const) {
    const body = split[name].map((d) => JSON.stringify({ id: d.id, text: d.text })).join("\n") + "\n";
    writeFileSync(join(outDir, `${name}.jsonl`), body);
    outputs[name] = { documents: split[name].length, bytes: split[name].reduce((s, d) => s + Buffer.byteLength(d.text), 0), sha256: sha256(body) };
  }
  const train = Buffer.concat(split.train.flatMap((d) => [Buffer.from(d.text), Buffer.from([0])]));
  writeFileSync(join(TRAIN, `${task}.bin`), train);
  outputs.train = { documents: split.train.length, bytes: train.length - split.train.length, sha256: sha256(train) };
  return { task, sources, outputs };
}

function main() {
  const only = process.argv.includes("--only") ? process.argv[process.argv.indexOf("--only") + 1] : undefined;
  if (only && !(TASKS as readonly string[]).includes(only)) {
    console.error(`unknown task '${only}': choose one of ${TASKS.join(", ")}`);
    process.exit(2);
  }
  for (const tool of ["apt-get", "dpkg-deb", "mandoc"]) {
    if (spawnSync("which", [tool]).status !== 0) {
      console.error(`corpora: '${tool}' not found — install it with: apt-get install -y ${tool === "mandoc" ? "mandoc" : "dpkg"}`);
      process.exit(2);
    }
  }
  const manifestPath = join(ROOT, "manifest.json");
  const manifest = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, "utf8")) : { tasks: {} };
  for (const task of only ? [only as TaskId] : TASKS) {
    const t0 = Date.now();
    const r = buildTask(task);
    manifest.tasks[task] = { sources: r.sources, outputs: r.outputs };
    console.log(
      `${task.padEnd(8)} train ${(r.outputs.train!.bytes / 1e6).toFixed(2)} MB (${r.outputs.train!.documents} docs)  ` +
        `validation ${r.outputs.validation!.documents} docs  test ${r.outputs.test!.documents} docs  ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  manifest.description = "Built by corpora/build.ts; splits are by document (sha256 of task and document id).";
  writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
}

main();
