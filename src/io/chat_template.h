/* Chat templates: the Jinja templates of tokenizer_config.json's chat_template that
 * spectrain recognises (by their exact text) and renders as transformers'
 * apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does:
 *   chatml    Hugging Face's ChatML template (no default system message)
 *   qwen2     Qwen2-Instruct (ChatML, default system "You are a helpful assistant.")
 *   qwen2.5   Qwen2.5-Instruct (ChatML, default system "You are Qwen, created by ...")
 *   qwen3     Qwen3, its first release and its revision (ChatML without a default system;
 *             <think> blocks kept only on the assistant turns after the last user query)
 *   smollm2   SmolLM2-Instruct (ChatML, default system "You are a helpful AI assistant
 *             named SmolLM, trained by Hugging Face")
 *   llama3    Meta-Llama-3-Instruct (headers, contents stripped as Python's str.strip)
 *   llama3.1  Llama-3.1 and 3.3-Instruct (a system block with the knowledge cutoff and
 *             the template's fixed date "26 Jul 2024" in front of every conversation)
 * Messages are (role, content) strings; tools, tool calls and tool-result roles are not
 * rendered (an input error where the template would treat them specially). */
#ifndef SPECTRAIN_IO_CHAT_TEMPLATE_H
#define SPECTRAIN_IO_CHAT_TEMPLATE_H
#include <stddef.h>

typedef struct chat_template chat_template; /* a static table entry */

typedef struct {
  const char *role;    /* NUL-terminated UTF-8 */
  const char *content; /* UTF-8, content_len bytes (may hold NUL characters) */
  size_t content_len;
  int has_tool_calls;        /* the message has a "tool_calls" key */
  int has_reasoning_content; /* ... a "reasoning_content" key */
} chat_msg;

/* The template whose text is `text` (a single trailing newline ignored, as Jinja does), or
 * NULL when spectrain does not implement it. */
const chat_template *chat_template_find(const char *text);
const char *chat_template_name(const chat_template *ct);
/* "a ChatML-style template (1234 characters: '{% for ...')" — for errors about a template
 * chat_template_find does not know; also lists the supported ones. */
void chat_template_describe(const char *text, char *buf, size_t n);

/* Render into *out (malloc'ed, NUL-terminated; *len bytes). bos: the tokenizer's bos_token
 * (the Llama templates write it; NULL when it has none). date: the Llama 3.x date_string
 * (NULL: the template's own, which for llama3.2 is today's, as transformers' strftime_now).
 * ST_EINPUT naming the message for an empty conversation, a role the template renders
 * specially or a message with tool calls. */
int chat_template_render(const chat_template *ct, const chat_msg *msgs, int n,
                         int add_generation_prompt, const char *bos, const char *date, char **out,
                         size_t *len);

#endif
