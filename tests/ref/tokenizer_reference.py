#!/usr/bin/env python3
"""An independent reference for ember's tokenizers: the algorithms of the
Hugging Face `tokenizers` library (and SentencePiece) written out in plain
Python, so that ember can be compared with what each model was trained
with on inputs beyond llama.cpp's test vectors.

Written for the test only, from the behaviour documented in the
`tokenizers` source (normalizers/bert.rs, pre_tokenizers/{byte_level,
digits,punctuation,split,bert}.rs, models/{bpe,wordpiece}, added_vocabulary.rs)
and the models' own tokenizer.json files; nothing here is shared with
ember's C code.  The vocabulary (tokens, types, merges) is read from the
GGUF files with a small reader of our own.

    tokenizer_reference.py VOCAB_NAME VOCAB_FILE CASES_HEX > ids.txt

VOCAB_NAME picks the pipeline (see PIPELINES; the names starting with
"llama.cpp/" emulate llama.cpp instead, for the figures of
docs/TOKENIZERS.md, and are not used by the test); VOCAB_FILE is the GGUF, or
for llama3.2-bpe the directory with encoder.json and vocab.bpe.  CASES_HEX
holds one input per line, hex-encoded UTF-8.  Output: one line of ids per
input, encoded without special tokens.

Needs /usr/bin/python3 with the `regex` module (Debian: python3-regex) for
\\p{..} classes; Python's unicodedata gives NFC/NFD and categories.
"""
import json
import os
import struct
import sys
import unicodedata

import regex

# --------------------------------------------------------------- GGUF


def read_gguf(path):
    """The key/value metadata of a GGUF file (tensors are not needed)."""
    with open(path, "rb") as f:
        data = f.read()
    off = 0

    def rd(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, data, off)[0]
        off += struct.calcsize("<" + fmt)
        return v

    def rstr():
        nonlocal off
        n = rd("Q")
        s = data[off:off + n]
        off += n
        return s.decode("utf-8", "surrogateescape")

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?",
              10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return rd(scalar[t])
        if t == 8:
            return rstr()
        if t == 9:
            et = rd("I")
            n = rd("Q")
            return [value(et) for _ in range(n)]
        raise ValueError("GGUF value type %d" % t)

    if data[:4] != b"GGUF":
        raise ValueError("%s is not a GGUF file" % path)
    off = 4
    rd("I")  # version
    rd("Q")  # tensor count
    n_kv = rd("Q")
    kv = {}
    for _ in range(n_kv):
        k = rstr()
        kv[k] = value(rd("I"))
    return kv


# ----------------------------------------------------- byte-level BPE

def bytes_to_unicode():
    """GPT-2's printable stand-in character for each byte."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHAR = bytes_to_unicode()

# Oniguruma's \s (what Hugging Face's regexes run on): the ASCII spaces,
# NEL and the Z categories.  Python's own \s would also take U+001C-U+001F.
WS_CLASS = r"\t\n\x0B\f\r\x20\x85\p{Z}"


def onig(pattern):
    """Rewrites \\s and \\S to Oniguruma's meaning."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            d = pattern[i + 1]
            if d == "s":
                out.append(WS_CLASS if in_class else "[" + WS_CLASS + "]")
            elif d == "S":
                if in_class:
                    raise ValueError("\\S inside a class")
                out.append("[^" + WS_CLASS + "]")
            else:
                out.append(c + d)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return regex.compile("".join(out))


GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# The letters of DeepSeek LLM's second Split regex (its tokenizer.json spells
# them out as ranges of characters: the cased letters of its Unicode version).
DEEPSEEK_LLM_RANGES = [
    (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF), (0x1C4, 0x293),
    (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x376), (0x377, 0x377), (0x37B, 0x37D), (0x37F,
    0x37F), (0x386, 0x386), (0x388, 0x38A), (0x38C, 0x38C), (0x38E, 0x3A1), (0x3A3, 0x3F5),
    (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5),
    (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B,
    0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45),
    (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D,
    0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE),
    (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0,
    0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107),
    (0x210A, 0x2113), (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126,
    0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139),
    (0x213C, 0x213F), (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2183), (0x2184,
    0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF2),
    (0x2CF3, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771,
    0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17),
    (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8,
    0x104FB), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)]
DEEPSEEK_LLM_LETTERS = "A-Za-z" + "".join(
    "\\U%08X-\\U%08X" % r for r in DEEPSEEK_LLM_RANGES)


def split_isolated(pieces, pattern):
    """Split with behaviour Isolated: every match and every gap is a piece."""
    out = []
    for p in pieces:
        last = 0
        for m in pattern.finditer(p):
            if m.end() == m.start():
                continue
            if m.start() > last:
                out.append(p[last:m.start()])
            out.append(m.group())
            last = m.end()
        if last < len(p):
            out.append(p[last:])
    return out


def split_runs(pieces, pred, contiguous):
    """Digits / Punctuation: characters with pred isolated, one by one or
    as contiguous runs."""
    out = []
    for p in pieces:
        cur, cur_kind = "", None
        for c in p:
            k = bool(pred(c))
            if cur and (k != cur_kind or (k and not contiguous)):
                out.append(cur)
                cur = ""
            cur += c
            cur_kind = k
        if cur:
            out.append(cur)
    return out


def is_numeric(c):
    # Rust's char::is_numeric: Nd, Nl and No.
    return unicodedata.category(c) in ("Nd", "Nl", "No")


def is_punct(c):
    # The Punctuation pre-tokenizer: ASCII punctuation or any P category.
    o = ord(c)
    if o < 128:
        return (33 <= o <= 47) or (58 <= o <= 64) or (91 <= o <= 96) or (123 <= o <= 126)
    return unicodedata.category(c).startswith("P")


def byte_level(pieces):
    return ["".join(BYTE_CHAR[b] for b in p.encode("utf-8")) for p in pieces]


def regex_step(pat):
    compiled = onig(pat)
    return lambda ps: split_isolated(ps, compiled)


def digits(individual):
    return lambda ps: split_runs(ps, is_numeric, not individual)


# Each pipeline: normalizer, then the pre-tokenizer steps in order (a
# "bytelevel" step maps the pieces to GPT-2 characters; steps after it see
# those), as the models' tokenizer.json files give them.
PIPELINES = {
    "gpt-2": dict(nfc=False, steps=[regex_step(GPT2_RE), byte_level]),
    # EleutherAI/gpt-neox-20b (and MPT, which uses it): NFC normalizer.
    "gpt-neox": dict(nfc=True, steps=[regex_step(GPT2_RE), byte_level]),
    "mpt": dict(nfc=True, steps=[regex_step(GPT2_RE), byte_level]),
    "starcoder": dict(nfc=False, steps=[digits(True), regex_step(GPT2_RE), byte_level]),
    "refact": dict(nfc=False, steps=[digits(True), regex_step(GPT2_RE), byte_level]),
    "falcon": dict(nfc=False, steps=[
        lambda ps: split_runs(ps, is_punct, True), regex_step(GPT2_RE), byte_level,
        digits(False), regex_step(r"[0-9][0-9][0-9]")]),
    "deepseek-coder": dict(nfc=False, steps=[
        regex_step(r"[\r\n]"), regex_step(r"\s?\p{L}+"), regex_step(r"\s?\p{P}+"),
        regex_step("[一-龥ࠀ-一가-퟿]+"), digits(True), byte_level]),
    "deepseek-llm": dict(nfc=False, steps=[
        regex_step(r"[\r\n]"), regex_step(r"\s?[" + DEEPSEEK_LLM_LETTERS + "]+"),
        regex_step(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"), regex_step(r"\s+$"),
        regex_step("[一-龥ࠀ-一가-퟿]+"), digits(False), byte_level]),
    "llama3.2": dict(nfc=False, ignore_merges=True, steps=[regex_step(LLAMA3_RE), byte_level]),
    # Not a model's tokenizer: what llama.cpp does with a GGUF that names
    # no pre-tokenizer (GPT-NeoX's), for the figures of docs/TOKENIZERS.md.
    "llama.cpp/gpt-neox": dict(nfc=False, steps=[
        regex_step(r"[\p{P}\$\+<=>\^~\|]+"), regex_step(GPT2_RE), regex_step(r"\p{N}+"),
        regex_step(r"[0-9][0-9][0-9]"), byte_level]),
}


class ByteLevelBPE:
    def __init__(self, tokens, types, merges, pipeline):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {}
        for r, m in enumerate(merges):
            a, b = m.split(" ", 1)
            self.ranks.setdefault((a, b), r)
        self.pipe = pipeline
        # Added tokens that are not special (HF matches them in any text).
        self.added = sorted((t for t, ty in zip(tokens, types) if ty == 4),
                            key=len, reverse=True)

    def word(self, w):
        if self.pipe.get("ignore_merges") and w in self.vocab:
            return [self.vocab[w]]
        syms = list(w)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        return [self.vocab[s] for s in syms if s in self.vocab]

    def segment(self, text):
        if self.pipe["nfc"]:
            text = unicodedata.normalize("NFC", text)
        pieces = [text]
        for step in self.pipe["steps"]:
            pieces = step(pieces)
        ids = []
        for p in pieces:
            ids += self.word(p)
        return ids

    def encode(self, text):
        return split_added(text, self.added, self.vocab, self.segment)


def split_added(text, added, vocab, segment):
    """Leftmost-longest matching of added tokens, the rest to segment()."""
    ids, last, i = [], 0, 0
    while i < len(text):
        hit = next((a for a in added if text.startswith(a, i)), None)
        if hit is None:
            i += 1
            continue
        if i > last:
            ids += segment(text[last:i])
        ids.append(vocab[hit])
        i += len(hit)
        last = i
    if last < len(text):
        ids += segment(text[last:])
    return ids


# --------------------------------------------------------- WordPiece

def bert_is_chinese(c):
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF
            or 0x2A700 <= o <= 0x2B73F or 0x2B740 <= o <= 0x2B81F
            or 0x2B920 <= o <= 0x2CEAF or 0xF900 <= o <= 0xFAFF
            or 0x2F800 <= o <= 0x2FA1F)


def rust_is_whitespace(c):
    # char::is_whitespace: the White_Space property.
    o = ord(c)
    return (0x09 <= o <= 0x0D or o in (0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F,
                                       0x205F, 0x3000) or 0x2000 <= o <= 0x200A)


class WordPiece:
    """BertNormalizer(clean_text, handle_chinese_chars, strip_accents=None ->
    lowercase, lowercase) + BertPreTokenizer + WordPiece(max 100 chars)."""

    def __init__(self, tokens, types, unk, lowercase=True, strip_accents=None, llamacpp=False):
        # llama.cpp's converter stored "##x" as "x" and "x" as "▁x".
        self.vocab = {}
        for i, t in enumerate(tokens):
            if types[i] == 3 or (t.startswith("[") and t.endswith("]")):
                hf = t
            elif t.startswith("\u2581"):
                hf = t[1:]
            else:
                hf = "##" + t
            self.vocab.setdefault(hf, i)
        self.unk = unk
        self.lowercase = lowercase
        self.strip = lowercase if strip_accents is None else strip_accents
        # llama.cpp's variant (docs' figures only): NFD without dropping the
        # marks, and no limit on the length of a word.
        self.llamacpp = llamacpp

    def normalize(self, s):
        out = []
        for c in s:  # clean_text
            cat = unicodedata.category(c)
            if ord(c) in (0, 0xFFFD):
                continue
            if c not in "\t\n\r" and cat in ("Cc", "Cf", "Cn", "Co"):
                continue
            out.append(" " if rust_is_whitespace(c) else c)
        s = "".join(" " + c + " " if bert_is_chinese(c) else c for c in out)
        if self.llamacpp:
            return "".join(c.lower() for c in unicodedata.normalize("NFD", s))
        if self.strip:
            s = "".join(c for c in unicodedata.normalize("NFD", s)
                        if unicodedata.category(c) != "Mn")
        if self.lowercase:
            s = "".join(c.lower() for c in s)
        return s

    @staticmethod
    def pre_tokenize(s):
        words, cur = [], ""
        for c in s:
            if rust_is_whitespace(c):
                if cur:
                    words.append(cur)
                cur = ""
            elif is_punct(c):
                if cur:
                    words.append(cur)
                words.append(c)
                cur = ""
            else:
                cur += c
        if cur:
            words.append(cur)
        return words

    def word(self, w):
        if len(w) > 100 and not self.llamacpp:
            return [self.unk]
        out, start = [], 0
        while start < len(w):
            end, found = len(w), None
            while start < end:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            out.append(found)
            start = end
        return out

    def encode(self, text):
        ids = []
        for w in self.pre_tokenize(self.normalize(text)):
            ids += self.word(w)
        return ids


# ------------------------------------------------------- SentencePiece

class SentencePieceBPE:
    """SentencePiece's BPE encoding as llama-family GGUF files describe it:
    spaces become U+2581, a dummy prefix space when the model asks, then the
    adjacent pair whose concatenation is a piece with the best score merges
    (leftmost on ties); what is left unknown falls back to <0xXX> bytes."""

    def __init__(self, tokens, types, scores, add_prefix):
        self.ids = {}
        for i, t in enumerate(tokens):
            if types[i] in (1, 4, 6):
                self.ids.setdefault(t, i)
        self.scores = scores
        self.add_prefix = add_prefix
        self.user = sorted((t for t, ty in zip(tokens, types) if ty == 4),
                           key=len, reverse=True)

    def segment(self, text, first):
        text = text.replace(" ", "\u2581")
        if self.add_prefix and first:
            text = "\u2581" + text
        syms = list(text)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                j = self.ids.get(syms[i] + syms[i + 1])
                if j is not None and (best is None or self.scores[j] > best[0]):
                    best = (self.scores[j], i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        out = []
        for s in syms:
            if s in self.ids:
                out.append(self.ids[s])
            else:
                out += [self.ids["<0x%02X>" % b] for b in s.encode("utf-8")]
        return out

    def encode(self, text):
        state = {"first": True}

        def seg(t):
            r = self.segment(t, state["first"])
            state["first"] = False
            return r
        return split_added(text, self.user, self.ids, seg)


# ------------------------------------------------------------- main

def load(name, path):
    if name == "llama3.2":
        with open(os.path.join(path, "encoder.json"), encoding="utf-8") as f:
            enc = json.load(f)
        tokens = [None] * len(enc)
        for t, i in enc.items():
            tokens[i] = t
        with open(os.path.join(path, "vocab.bpe"), encoding="utf-8") as f:
            merges = [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#version")]
        return ByteLevelBPE(tokens, [1] * len(tokens), merges, PIPELINES[name])
    kv = read_gguf(path)
    llamacpp = name.startswith("llama.cpp/")
    tokens = kv["tokenizer.ggml.tokens"]
    types = kv.get("tokenizer.ggml.token_type", [1] * len(tokens))
    model = kv["tokenizer.ggml.model"]
    if model == "gpt2":
        return ByteLevelBPE(tokens, types, kv["tokenizer.ggml.merges"], PIPELINES[name])
    if model == "bert":
        return WordPiece(tokens, types, kv.get("tokenizer.ggml.unknown_token_id", 100),
                         llamacpp=llamacpp)
    if model == "llama":
        return SentencePieceBPE(tokens, types, kv["tokenizer.ggml.scores"],
                                kv.get("tokenizer.ggml.add_space_prefix", True))
    raise ValueError("tokenizer model %s" % model)


def main():
    name, path, cases = sys.argv[1:4]
    tok = load(name, path)
    with open(cases, encoding="ascii") as f:
        for line in f:
            text = bytes.fromhex(line.strip()).decode("utf-8")
            print(" ".join(str(i) for i in tok.encode(text)))


if __name__ == "__main__":
    main()
