/**
 * A loader for Hugging Face `tokenizer.json` files of the byte-level BPE family (GPT-2, Qwen,
 * Llama-3): ByteLevel pre-tokenizer/decoder, BPE model with vocab and merges, added tokens.
 * fairspec's own models ship such a file with 256 byte tokens, no merges and <|endoftext|>; a real
 * model's file loads through the same code.
 *
 * Not supported (rejected with a clear error rather than mis-tokenising): other model types
 * (WordPiece, Unigram), normalisers, and the GPT-2 split regex (`use_regex: true`).
 */

export interface Tokenizer {
  readonly vocabSize: number;
  readonly eosTokenId: number | null;
  encode(text: string): number[];
  /** Raw bytes of a token sequence (special tokens contribute none). */
  decodeBytes(ids: readonly number[]): Uint8Array;
  decode(ids: readonly number[]): string;
  /** Incremental decoding that never splits a UTF-8 character across calls. */
  streamDecoder(): (ids: readonly number[], final?: boolean) => string;
}

interface TokenizerJson {
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: unknown;
  pre_tokenizer?: { type: string; use_regex?: boolean; add_prefix_space?: boolean } | null;
  decoder?: { type: string } | null;
  model: { type: string; vocab: Record<string, number>; merges?: (string | [string, string])[] };
}

/** GPT-2's reversible byte ↔ printable-unicode mapping, used by every byte-level BPE vocabulary. */
function byteToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const map: string[] = new Array(256);
  for (const b of bs) map[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  return map;
}

export function loadTokenizer(json: TokenizerJson | string): Tokenizer {
  const spec: TokenizerJson = typeof json === "string" ? JSON.parse(json) : json;
  if (spec.model?.type !== "BPE") throw new Error(`tokenizer: model type '${spec.model?.type}' is not supported (BPE only)`);
  if (spec.normalizer) throw new Error("tokenizer: normalizers are not supported");
  if (spec.pre_tokenizer && spec.pre_tokenizer.type !== "ByteLevel") {
    throw new Error(`tokenizer: pre-tokenizer '${spec.pre_tokenizer.type}' is not supported (ByteLevel only)`);
  }
  if (spec.pre_tokenizer?.use_regex) throw new Error("tokenizer: ByteLevel with use_regex is not supported");
  const b2u = byteToUnicode();
  const u2b = new Map(b2u.map((ch, b) => [ch, b]));
  const vocab = new Map(Object.entries(spec.model.vocab));
  const idToToken: string[] = [];
  for (const [tok, id] of vocab) idToToken[id] = tok;
  const special = new Map<number, string>();
  for (const t of spec.added_tokens ?? []) {
    idToToken[t.id] = t.content;
    if (t.special) special.set(t.id, t.content);
  }
  const ranks = new Map<string, number>();
  (spec.model.merges ?? []).forEach((m, i) => ranks.set(Array.isArray(m) ? `${m[0]} ${m[1]}` : m, i));
  const eos = [...special.entries()].find(([, c]) => /endoftext|<\/s>|<\|eot_id\|>|<\|im_end\|>/.test(c))?.[0] ?? null;

  const bpe = (symbols: string[]): string[] => {
    while (symbols.length > 1 && ranks.size > 0) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const r = ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      symbols.splice(best, 2, symbols[best]! + symbols[best + 1]!);
    }
    return symbols;
  };

  const encoder = new TextEncoder();
  const tokenizer: Tokenizer = {
    vocabSize: idToToken.length,
    eosTokenId: eos,
    encode(text) {
      const chars = Array.from(encoder.encode(text), (b) => b2u[b]!);
      return bpe(chars).map((s) => {
        const id = vocab.get(s);
        if (id === undefined) throw new Error(`tokenizer: no id for symbol ${JSON.stringify(s)}`);
        return id;
      });
    },
    decodeBytes(ids) {
      const out: number[] = [];
      for (const id of ids) {
        if (special.has(id)) continue;
        const tok = idToToken[id];
        if (tok === undefined) throw new RangeError(`tokenizer: token id ${id} is outside the vocabulary`);
        for (const ch of tok) out.push(u2b.get(ch)!);
      }
      return Uint8Array.from(out);
    },
    decode(ids) {
      return new TextDecoder().decode(tokenizer.decodeBytes(ids));
    },
    streamDecoder() {
      const dec = new TextDecoder();
      return (ids, final = false) => dec.decode(tokenizer.decodeBytes(ids), { stream: !final });
    },
  };
  return tokenizer;
}
