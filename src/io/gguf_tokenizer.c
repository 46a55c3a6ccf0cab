/* tokenizer.json + tokenizer_config.json from a GGUF file's tokenizer.ggml.* metadata.
 *
 * A "gpt2" tokenizer (byte-level BPE) is written as Hugging Face's tokenizers has it:
 *   - vocabulary: tokenizer.ggml.tokens by id. Normal tokens are stored in the byte-level
 *     alphabet already (GPT-2's bytes_to_unicode: "Ġ" for a space); one with a character
 *     outside it is respelled from its UTF-8 bytes, as transformers' GGUF loader does.
 *     Control (token_type 3) and user-defined (4) tokens are stored as their raw text (what
 *     llama.cpp matches in the input) and become added tokens, special and not special;
 *   - merges: tokenizer.ggml.merges ("left right");
 *   - the pre-tokenizer from tokenizer.ggml.pre, as the model family's own tokenizer.json
 *     has it (and llama.cpp's llama-vocab.cpp splits): see pre_[] below;
 *   - add_bos_token / add_eos_token: a TemplateProcessing post-processor around the text.
 * A "llama" (sentencepiece) tokenizer is refused by name: spectrain's tokenizer reads
 * byte-level BPE only. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/gguf_import.h"
#include "util/err.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* The Split regexes of the families (the tokenizer.json files of Llama 3 and Qwen2). */
#define LLAMA3_SPLIT                                                                   \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+" \
  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_SPLIT                                                                 \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+" \
  "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
  const char *names;    /* tokenizer.ggml.pre values, '|'-separated */
  const char *split;    /* Split regex before ByteLevel (ByteLevel then has use_regex false) */
  int digits;           /* Digits(individual_digits) before ByteLevel (SmolLM2) */
  int nfc;              /* an NFC normalizer (Qwen2's tokenizer.json has it) */
  int ignore_merges;    /* model.ignore_merges (Llama 3's; llama.cpp sets it for llama3) */
} pre_kind_;

static const pre_kind_ pre_[] = {
    {"gpt-2|gpt2", NULL, 0, 0, 0},
    {"smollm", NULL, 1, 0, 0},
    {"llama-bpe|llama3|llama-v3", LLAMA3_SPLIT, 0, 0, 1},
    {"qwen2", QWEN2_SPLIT, 0, 1, 0},
};
#define N_PRE ((int)(sizeof pre_ / sizeof pre_[0]))

static const pre_kind_ *pre_find_(const char *name) {
  for (int i = 0; i < N_PRE; i++) {
    const char *p = pre_[i].names;
    size_t n = strlen(name);
    while (p && *p) {
      const char *bar = strchr(p, '|');
      size_t len = bar ? (size_t)(bar - p) : strlen(p);
      if (len == n && strncmp(p, name, n) == 0) return &pre_[i];
      p = bar ? bar + 1 : NULL;
    }
  }
  return NULL;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + k. */
static int byte_to_cp_(int b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
  int k = 0;
  for (int x = 0; x < b; x++)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
  return 256 + k;
}
static int cp_in_alphabet_(uint32_t cp) {
  return (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255) ||
         (cp >= 256 && cp < 256 + 68);
}

static size_t put_utf8_(char *o, uint32_t cp) {
  if (cp < 0x80) return (size_t)(o[0] = (char)cp, 1);
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  o[0] = (char)(0xE0 | cp >> 12);
  o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[2] = (char)(0x80 | (cp & 0x3F));
  return 3;
}

/* Decode one UTF-8 character at s[0..n); its length, or 0 when invalid. */
static size_t get_utf8_(const unsigned char *s, size_t n, uint32_t *cp) {
  if (s[0] < 0x80) return (size_t)(*cp = s[0], 1);
  size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
  if (!len || len > n || s[0] > 0xF4) return 0;
  uint32_t v = s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3F);
  }
  static const uint32_t min_[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min_[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

/* A normal token as a vocabulary key: as stored when every character is in the byte-level
 * alphabet, else respelled byte by byte. NULL (error recorded) for invalid UTF-8. */
static char *vocab_key_(const gguf_file *g, const gguf_str *s, uint64_t id) {
  const unsigned char *p = (const unsigned char *)s->s;
  int inside = 1;
  for (size_t i = 0; i < s->len;) {
    uint32_t cp;
    size_t l = get_utf8_(p + i, (size_t)s->len - i, &cp);
    if (!l) {
      st_fail(ST_EINPUT, "%s: tokenizer.ggml.tokens[%llu]: not valid UTF-8 (byte %zu)", g->path,
              (unsigned long long)id, i);
      return NULL;
    }
    if (!cp_in_alphabet_(cp)) inside = 0;
    i += l;
  }
  char *out = xmalloc((size_t)s->len * 2 + 1);
  size_t o = 0;
  if (inside) {
    memcpy(out, s->s, (size_t)s->len);
    o = (size_t)s->len;
  } else {
    for (size_t i = 0; i < s->len; i++) o += put_utf8_(out + o, (uint32_t)byte_to_cp_(p[i]));
  }
  out[o] = 0;
  return out;
}

static char *raw_(const gguf_str *s) {
  char *r = xmalloc((size_t)s->len + 1);
  memcpy(r, s->s, (size_t)s->len);
  r[s->len] = 0;
  return r;
}

typedef struct {
  int64_t bos, eos, unk, pad;
  int add_bos, add_eos, has_add_eos;
} special_;

static int special_id_(const gguf_file *g, const char *key, uint64_t n_tok, int64_t *id) {
  int found;
  *id = -1;
  int rc = gguf_get_int(g, key, id, &found);
  if (rc) return rc;
  if (!found) *id = -1;
  else if (*id < 0 || (uint64_t)*id >= n_tok)
    return st_fail(ST_EINPUT, "%s: %s is %lld, but the vocabulary has %llu tokens", g->path, key,
                   (long long)*id, (unsigned long long)n_tok);
  return 0;
}

static json_t *template_piece_(const char *special, const char *seq, int type_id) {
  json_t *o = json_object(), *in = json_object();
  json_object_set_new(in, "id", json_string(special ? special : seq));
  json_object_set_new(in, "type_id", json_integer(type_id));
  json_object_set_new(o, special ? "SpecialToken" : "Sequence", in);
  return o;
}

/* ByteLevel for offsets; TemplateProcessing when BOS or EOS is added (Llama 3's layout). */
static json_t *post_processor_(const special_ *sp, const char *bos, const char *eos) {
  json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                         "trim_offsets", 0, "use_regex", 1);
  const int b = sp->add_bos && bos, e = sp->add_eos && eos;
  if (!b && !e) return bl;
  json_t *single = json_array(), *pair = json_array(), *st = json_object();
  for (int k = 0; k < 2; k++) {
    json_t *arr = k ? pair : single;
    for (int part = 0; part <= k; part++) {
      if (b) json_array_append_new(arr, template_piece_(bos, NULL, part));
      json_array_append_new(arr, template_piece_(NULL, part ? "B" : "A", part));
      if (e) json_array_append_new(arr, template_piece_(eos, NULL, part));
    }
  }
  const char *toks[2] = {b ? bos : NULL, e ? eos : NULL};
  const int64_t ids[2] = {sp->bos, sp->eos};
  for (int k = 0; k < 2; k++)
    if (toks[k])
      json_object_set_new(st, toks[k],
                          json_pack("{s:s,s:[I],s:[s]}", "id", toks[k], "ids", (json_int_t)ids[k],
                                    "tokens", toks[k]));
  json_t *tp = json_pack("{s:s,s:o,s:o,s:o}", "type", "TemplateProcessing", "single", single,
                         "pair", pair, "special_tokens", st);
  return json_pack("{s:s,s:[o,o]}", "type", "Sequence", "processors", bl, tp);
}

static json_t *pre_tokenizer_(const pre_kind_ *pk) {
  json_t *bl = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                         "trim_offsets", 1, "use_regex", pk->split == NULL);
  if (!pk->split && !pk->digits) return bl;
  json_t *first = pk->digits
                      ? json_pack("{s:s,s:b}", "type", "Digits", "individual_digits", 1)
                      : json_pack("{s:s,s:{s:s},s:s,s:b}", "type", "Split", "pattern", "Regex",
                                  pk->split, "behavior", "Isolated", "invert", 0);
  return json_pack("{s:s,s:[o,o]}", "type", "Sequence", "pretokenizers", first, bl);
}

static int dump_(json_t *o, const char *dir, const char *name) {
  char *p = xasprintf("%s/%s", dir, name), *tmp = xasprintf("%s/%s.tmp", dir, name);
  int rc = 0;
  if (json_dump_file(o, tmp, JSON_INDENT(2)) != 0 || rename(tmp, p) != 0) {
    remove(tmp);
    rc = st_fail(ST_ERUNTIME, "%s: cannot write", p);
  }
  free(p);
  free(tmp);
  return rc;
}

int gguf_tokenizer_write(const gguf_file *g, const char *dir, int64_t model_max_length) {
  char *model = NULL, *pre = NULL, *tmpl = NULL;
  int found, rc = gguf_get_str(g, "tokenizer.ggml.model", &model, &found);
  if (rc) return rc;
  if (!found)
    return st_fail(ST_EINPUT, "%s: no tokenizer.ggml.model: the file holds no tokenizer "
                   "(import with --no-tokenizer to write the weights only)", g->path);
  if (strcmp(model, "gpt2") != 0) {
    rc = st_fail(ST_EINPUT,
                 "%s: tokenizer.ggml.model is '%s'; spectrain converts byte-level BPE "
                 "tokenizers ('gpt2': GPT-2, Llama 3, Qwen2, SmolLM2) only (import with "
                 "--no-tokenizer to write the weights without one)",
                 g->path, model);
    free(model);
    return rc;
  }
  free(model);
  if ((rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre, &found))) return rc;
  const pre_kind_ *pk = pre_find_(found ? pre : "gpt-2");
  if (!pk) {
    rc = st_fail(ST_EINPUT,
                 "%s: tokenizer.ggml.pre is '%s', a pre-tokenizer spectrain does not know "
                 "(known: gpt-2, smollm, llama-bpe, qwen2; import with --no-tokenizer to skip it)",
                 g->path, pre);
    free(pre);
    return rc;
  }
  free(pre);
  const gguf_kv *tokens, *types = NULL, *merges = NULL;
  if ((rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_T_STRING, &tokens, NULL))) return rc;
  if ((rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_T_I32, &types, &found))) return rc;
  if (!found) types = NULL;
  else if (types->n != tokens->n)
    return st_fail(ST_EINPUT, "%s: tokenizer.ggml.token_type has %llu entries, tokens %llu",
                   g->path, (unsigned long long)types->n, (unsigned long long)tokens->n);
  if ((rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_T_STRING, &merges, &found))) return rc;
  if (!found)
    return st_fail(ST_EINPUT, "%s: a 'gpt2' tokenizer without tokenizer.ggml.merges", g->path);
  const uint64_t n = tokens->n;
  special_ sp;
  if ((rc = special_id_(g, "tokenizer.ggml.bos_token_id", n, &sp.bos)) ||
      (rc = special_id_(g, "tokenizer.ggml.eos_token_id", n, &sp.eos)) ||
      (rc = special_id_(g, "tokenizer.ggml.unknown_token_id", n, &sp.unk)) ||
      (rc = special_id_(g, "tokenizer.ggml.padding_token_id", n, &sp.pad)))
    return rc;
  sp.add_bos = sp.add_eos = 0; /* transformers' default for a byte-level GGUF tokenizer */
  if ((rc = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &sp.add_bos, &found)) ||
      (rc = gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &sp.add_eos, &sp.has_add_eos)))
    return rc;
  if ((rc = gguf_get_str(g, "tokenizer.chat_template", &tmpl, &found))) return rc;

  json_t *vocab = json_object(), *added = json_array(), *mj = json_array();
  char **text = xcalloc((size_t)n + 1, sizeof *text); /* each id's token text */
  uint64_t dup = 0;
  for (uint64_t i = 0; i < n && !rc; i++) {
    const int64_t ty = types ? gguf_arr_int(types, i) : TT_NORMAL;
    const int is_added = ty == TT_CONTROL || ty == TT_USER;
    text[i] = is_added ? raw_(&tokens->strs[i]) : vocab_key_(g, &tokens->strs[i], i);
    if (!text[i]) {
      rc = ST_EINPUT;
      break;
    }
    json_t *js = json_string(text[i]);
    if (!js) {
      rc = st_fail(ST_EINPUT, "%s: tokenizer.ggml.tokens[%llu]: not valid UTF-8", g->path,
                   (unsigned long long)i);
      break;
    }
    json_decref(js);
    if (json_object_get(vocab, text[i])) dup++;
    json_object_set_new(vocab, text[i], json_integer((json_int_t)i));
    if (is_added)
      json_array_append_new(
          added, json_pack("{s:I,s:s,s:b,s:b,s:b,s:b,s:b}", "id", (json_int_t)i, "content", text[i],
                           "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special",
                           ty == TT_CONTROL));
  }
  for (uint64_t i = 0; i < merges->n && !rc; i++) {
    const gguf_str *s = &merges->strs[i];
    const char *sp1 = memchr(s->s, ' ', (size_t)s->len);
    if (!sp1 || sp1 == s->s || sp1 + 1 == s->s + s->len ||
        memchr(sp1 + 1, ' ', (size_t)(s->s + s->len - sp1 - 1))) {
      rc = st_fail(ST_EINPUT, "%s: tokenizer.ggml.merges[%llu] is '%.*s' (expected \"left right\")",
                   g->path, (unsigned long long)i, (int)(s->len > 80 ? 80 : s->len), s->s);
      break;
    }
    json_t *a = json_stringn(s->s, (size_t)(sp1 - s->s)),
           *b = json_stringn(sp1 + 1, (size_t)(s->s + s->len - sp1 - 1));
    if (!a || !b) {
      json_decref(a);
      json_decref(b);
      rc = st_fail(ST_EINPUT, "%s: tokenizer.ggml.merges[%llu]: not valid UTF-8", g->path,
                   (unsigned long long)i);
      break;
    }
    json_array_append_new(mj, json_pack("[o,o]", a, b));
  }
  if (!rc && dup)
    log_warn("%s: %llu tokens of tokenizer.ggml.tokens repeat an earlier one (the later id wins)",
             g->path, (unsigned long long)dup);
  const char *bos = sp.bos >= 0 && !rc ? text[sp.bos] : NULL;
  const char *eos = sp.eos >= 0 && !rc ? text[sp.eos] : NULL;
  if (!rc) {
    json_t *model_j = json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE",
                                "dropout", "unk_token", "continuing_subword_prefix",
                                "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                                "ignore_merges", pk->ignore_merges, "vocab", vocab, "merges", mj);
    vocab = mj = NULL;
    json_t *tj = json_pack("{s:s,s:n,s:n,s:o,s:o,s:o,s:o,s:o,s:o}", "version", "1.0", "truncation",
                           "padding", "added_tokens", added, "normalizer",
                           pk->nfc ? json_pack("{s:s}", "type", "NFC") : json_null(),
                           "pre_tokenizer", pre_tokenizer_(pk), "post_processor",
                           post_processor_(&sp, bos, eos), "decoder",
                           json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space",
                                     1, "trim_offsets", 1, "use_regex", 1),
                           "model", model_j);
    added = NULL;
    rc = dump_(tj, dir, "tokenizer.json");
    json_decref(tj);
  }
  if (!rc) {
    json_t *cj = json_object();
    json_object_set_new(cj, "add_bos_token", json_boolean(sp.add_bos));
    if (sp.has_add_eos) json_object_set_new(cj, "add_eos_token", json_boolean(sp.add_eos));
    const struct {
      const char *key;
      int64_t id;
    } names[] = {{"bos_token", sp.bos}, {"eos_token", sp.eos}, {"unk_token", sp.unk},
                 {"pad_token", sp.pad}};
    for (int k = 0; k < 4; k++)
      if (names[k].id >= 0) json_object_set_new(cj, names[k].key, json_string(text[names[k].id]));
    json_t *tj = tmpl ? json_string(tmpl) : NULL;
    if (tmpl && !tj)
      rc = st_fail(ST_EINPUT, "%s: tokenizer.chat_template: not valid UTF-8", g->path);
    if (tj) json_object_set_new(cj, "chat_template", tj);
    json_object_set_new(cj, "clean_up_tokenization_spaces", json_false());
    if (model_max_length > 0)
      json_object_set_new(cj, "model_max_length", json_integer((json_int_t)model_max_length));
    json_object_set_new(cj, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
    if (!rc) rc = dump_(cj, dir, "tokenizer_config.json");
    json_decref(cj);
  }
  for (uint64_t i = 0; i < n; i++) free(text[i]);
  free(text);
  free(tmpl);
  json_decref(vocab);
  json_decref(mj);
  json_decref(added);
  return rc;
}
