"""Token ids from HF `tokenizers` (the oracle) for tests/sh/tokenizer_hf.sh.

    python3 tests/gpu/make_tokenizer_fixtures.py TOKENIZER_DIR TEXT_DIR OUT.json
For every TOKENIZER_DIR/NAME.json and every TEXT_DIR/*.txt: the ids of encode(text) with
special tokens added (what `lemo tokenize` prints) and without (`--no-special`).
"""
import glob
import json
import os
import sys

from tokenizers import Tokenizer

tok_dir, text_dir, out = sys.argv[1:4]
result = {}
for tpath in sorted(glob.glob(f"{tok_dir}/*.json")):
    tok = Tokenizer.from_file(tpath)
    name = os.path.basename(tpath)[:-5]
    result[name] = {}
    for xpath in sorted(glob.glob(f"{text_dir}/*.txt")):
        text = open(xpath, encoding="utf-8").read()
        result[name][os.path.basename(xpath)] = {
            "special": tok.encode(text).ids,
            "plain": tok.encode(text, add_special_tokens=False).ids,
        }
json.dump(result, open(out, "w"))
print("tokenizer fixtures:", {k: len(v) for k, v in result.items()})
