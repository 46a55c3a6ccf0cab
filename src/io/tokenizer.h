/* Hugging Face tokenizer.json, byte-level BPE (GPT-2, Llama 3, Qwen2/3, SmolLM2 and their
 * kin) and sentencepiece-style BPE with byte fallback (Llama 2, Mistral v0.1), encoding only: the ids `tokenizers`' Tokenizer.encode(text, add_special_tokens)
 * gives for the same file.
 *
 * The pipeline, as in `tokenizers`:
 *   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest;
 *      single_word, lstrip, rstrip as there);
 *   2. each remaining piece goes through the normalizer (NFC, NFD, NFKC, NFKD or a Sequence
 *      of them; utf8proc; Prepend and literal Replace, as Llama 2's "▁") and added tokens with normalized=true are cut out of the result;
 *   3. the pre-tokenizer splits what remains: Split (a regex, through PCRE2 with UTF + UCP,
 *      or a literal; every SplitDelimiterBehavior, invert), Digits, and ByteLevel, which
 *      must come last (its add_prefix_space, and its GPT-2 regex when use_regex); with
 *      byte_fallback: none, or Metaspace first (replacement, prepend_scheme, split);
 *   4. each piece is byte-level BPE: its bytes are the initial symbols, merged by rank
 *      (lowest rank first, leftmost first among equals) — ignore_merges (a piece that is a
 *      vocabulary entry is taken whole), unk_token and fuse_unk as there; with byte_fallback
 *      the initial symbols are the characters, and a character not in the vocabulary
 *      becomes its UTF-8 bytes' <0xNN> tokens (unk where one of those is missing);
 *   5. add_special: the post-processor's ids around the sequence (TemplateProcessing's
 *      single template, RobertaProcessing/BertProcessing, ByteLevel, a Sequence of them).
 * Vocabulary entries are kept as the bytes their byte-level characters stand for, so the
 * text is never mapped to the byte-level alphabet and back.
 *
 * Regexes are Oniguruma's in `tokenizers`; they are compiled by PCRE2 with one change
 * that keeps the meaning: \s and \S become explicit classes of Unicode White_Space, which
 * Oniguruma's \s is (PCRE2's differs at U+0085 and U+180E).
 * Constructs whose Unicode meaning differs between the two (\w \W \b \B \h \H, and \S
 * inside a character class) are refused by name. Anything else the loader does not
 * implement (another model type, dropout, byte_fallback with ByteLevel, a normalizer or pre-tokenizer
 * type it does not know, ...) is an input error naming the key and what was found. */
#ifndef SPECTRAIN_IO_TOKENIZER_H
#define SPECTRAIN_IO_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;     /* immutable after load; shared by threads */
typedef struct tok_scratch tok_scratch; /* per-thread working memory (match data, cache) */

typedef struct {
  int32_t *v;
  size_t n, cap;
} tok_ids;

/* Load PATH (a tokenizer.json). Errors are ST_EINPUT naming PATH and the key. */
int tokenizer_load(const char *path, tokenizer **out);
void tokenizer_free(tokenizer *t);

tok_scratch *tok_scratch_new(const tokenizer *t);
void tok_scratch_free(tok_scratch *s);

/* Append the ids of text[0..len) to *out. text must be valid UTF-8 (else ST_EINPUT naming
 * the byte offset of the first bad byte). add_special: the post-processor's tokens too.
 * Thread-safe with one scratch per thread. */
int tokenizer_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                     int add_special, tok_ids *out);

/* The id of a token given as its text: an added token's content, else a vocabulary entry
 * (as written in tokenizer.json). -1 when there is none. */
int32_t tokenizer_token_id(const tokenizer *t, const char *token);
/* 1 + the largest id of the vocabulary and the added tokens. */
int64_t tokenizer_vocab_size(const tokenizer *t);
/* The bytes id stands for (an added token's content; a vocabulary entry's bytes); NULL
 * when no token has that id. Not NUL-terminated: *len bytes. */
const char *tokenizer_id_bytes(const tokenizer *t, int32_t id, size_t *len);

void tok_ids_push(tok_ids *a, int32_t id);
void tok_ids_free(tok_ids *a);

#endif
