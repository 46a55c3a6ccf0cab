/* Supervised fine-tuning records as token ids and loss labels, exactly as
 * scripts/prepare_sft_jsonl.py makes them with transformers, from a model directory's
 * tokenizer.json (io/tokenizer.h), tokenizer_config.json (eos_token, bos_token,
 * chat_template; chat_template.jinja takes priority, as in transformers) and the chat
 * template (io/chat_template.h):
 *   {"prompt": P, "completion": C}  chat: ids = template([user P, assistant C]); the
 *                                   prompt (template([user P]) + generation prompt) is
 *                                   masked, and must be a prefix of those ids (else an
 *                                   error: use --no-chat). Not chat: ids = encode(P, with
 *                                   the post-processor's special tokens) + encode(C) + EOS,
 *                                   P masked.
 *   {"messages": [...]}             ids = template(messages); labels only on each assistant
 *                                   turn: from the length of template(messages[:i]) with
 *                                   the generation prompt to that of template(messages[:i+1]).
 *   {"text": T}                     ids = labels = encode(T, with special tokens).
 * Labels are -100 where not trained on. */
#ifndef SPECTRAIN_IO_SFT_H
#define SPECTRAIN_IO_SFT_H
#include <jansson.h>

#include "io/chat_template.h"
#include "io/tokenizer.h"

#define SFT_IGNORE (-100)

typedef struct {
  tokenizer *tok;
  char *dir;
  char *template_text;           /* NULL: no chat template */
  char *template_source;         /* the file it came from, for errors */
  const chat_template *template; /* NULL when there is none or it is not one spectrain knows */
  char *bos;                     /* bos_token (NULL: none) */
  int32_t eos_id;                /* eos_token's id, -1: none */
} sft_tokenizer;

/* DIR/tokenizer.json (required), DIR/tokenizer_config.json and DIR/chat_template.jinja
 * (optional). ST_EINPUT naming the file and key. */
int sft_tokenizer_open(const char *dir, sft_tokenizer *out);
void sft_tokenizer_close(sft_tokenizer *t);

/* One record (a JSON object) into ids and labels (appended to empty arrays). chat: render
 * prompt/completion records with the chat template. ST_EINPUT naming the key.
 * *misaligned = 1 for a messages record whose conversation up to an assistant turn is not a
 * prefix of the whole (Qwen3 writes a think block on the last turn only): its labels, made as
 * prepare_sft_jsonl.py computes them, then also cover tokens outside that turn. */
int sft_encode(const sft_tokenizer *t, tok_scratch *s, const json_t *rec, int chat, tok_ids *ids,
               tok_ids *labels, int *misaligned);

/* SQuAD v1.1/v2.0 JSON (data[].paragraphs[].qas[]) as prompt/completion records: a
 * question with answers becomes {"prompt": "Context: ...\nQuestion: ...\nAnswer:",
 * "completion": " " + its first answer}; unanswerable ones are skipped. *records is a new
 * JSON array. */
int sft_squad_records(const char *path, json_t **records);

#endif
