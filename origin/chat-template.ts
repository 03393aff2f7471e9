/**
 * Chat messages → prompt text, through a Jinja chat template (the format real models ship in
 * `tokenizer_config.json` as `chat_template`), rendered with @huggingface/jinja — the same
 * interpreter transformers.js uses, so a model's own template renders as it does there.
 *
 * fairspec's bundled byte-level models were trained on plain text, not chats, so they ship no
 * template; they get DEFAULT_CHAT_TEMPLATE, a plain role-tagged transcript:
 *
 *     <|system|>
 *     You are terse.
 *     <|user|>
 *     Hello
 *     <|assistant|>
 *
 * Precedence: the pool's `chat_template` (config) > the model's `chat_template` (meta.json) >
 * DEFAULT_CHAT_TEMPLATE.
 */
import { Template } from "@huggingface/jinja";

export const DEFAULT_CHAT_TEMPLATE = `{%- for message in messages -%}
<|{{ message.role }}|>
{{ message.content }}
{% endfor -%}
{%- if add_generation_prompt -%}
<|assistant|>
{% endif -%}`;

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

/** A template that failed to parse or render (the caller turns a render failure into a 400). */
export class ChatTemplateError extends Error {}

export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string = DEFAULT_CHAT_TEMPLATE) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChatTemplateError(`chat template does not parse: ${(e as Error).message}`);
    }
  }

  /**
   * The prompt text. `bos_token` / `eos_token` are empty: fairspec's tokenizer encodes text bytes
   * only (special tokens in text are not mapped to their ids), so a template that writes them
   * would add literal text the model never saw.
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    try {
      return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, bos_token: "", eos_token: "" });
    } catch (e) {
      // Templates reject unsupported conversations with raise_exception(...): the client's mistake.
      throw new ChatTemplateError((e as Error).message);
    }
  }
}

/** The template for a model: the override if given, else the model's own, else the default. */
export function chatTemplateFor(override: string | null | undefined, modelMeta: Record<string, unknown>): ChatTemplate {
  if (override) return new ChatTemplate(override);
  const own = modelMeta.chat_template;
  return new ChatTemplate(typeof own === "string" && own ? own : DEFAULT_CHAT_TEMPLATE);
}
