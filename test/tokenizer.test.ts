import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadTokenizer } from "../engine/tokenizer.ts";
import { MODELS_DIR } from "./support/models.ts";

const tok = loadTokenizer(readFileSync(`${MODELS_DIR}verifier/tokenizer.json`, "utf8"));

describe("byte-level BPE tokenizer (Hugging Face tokenizer.json)", () => {
  it("round-trips every script and control byte", () => {
    for (const s of ["plain ascii", "Grüße, ça va, ¿qué?", "Привет", "日本語のテキスト", "中文", "مرحبا", "\t\n\u0000\u007f", "😀 emoji"]) {
      const ids = tok.encode(s);
      expect(ids).toEqual(Array.from(new TextEncoder().encode(s)));
      expect(tok.decode(ids)).toBe(s);
    }
  });

  it("knows <|endoftext|> as the special end token and skips it when decoding", () => {
    expect(tok.eosTokenId).toBe(256);
    expect(tok.vocabSize).toBe(257);
    expect(tok.decode([104, 105, 256])).toBe("hi");
  });

  it("stream decoding never splits a UTF-8 character", () => {
    const bytes = tok.encode("日本");
    const dec = tok.streamDecoder();
    const parts = bytes.map((b) => dec([b]));
    expect(parts.join("") + dec([], true)).toBe("日本");
    expect(parts.filter(Boolean)).toEqual(["日", "本"]);
  });

  it("applies BPE merges by rank, as real tokenizers do", () => {
    const t = loadTokenizer({ model: { type: "BPE", vocab: { a: 0, b: 1, c: 2, ab: 3, abc: 4, bc: 5 }, merges: ["a b", "ab c", "b c"] }, pre_tokenizer: null });
    expect(t.encode("abc")).toEqual([4]);
    expect(t.encode("cab")).toEqual([2, 3]);
    expect(t.decode([4, 2])).toBe("abcc");
  });

  it("rejects tokenizer kinds it cannot reproduce exactly", () => {
    expect(() => loadTokenizer({ model: { type: "WordPiece", vocab: {} } })).toThrow(/not supported/);
    expect(() => loadTokenizer({ model: { type: "BPE", vocab: {} }, pre_tokenizer: { type: "ByteLevel", use_regex: true } })).toThrow(/use_regex/);
  });
});
