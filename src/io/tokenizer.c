/* tokenizer.json byte-level BPE (see tokenizer.h for the pipeline). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/tokenizer.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util/err.h"
#include "util/hash.h"

/* ---- small containers ---------------------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
} bbuf;

static void bbuf_reserve_(bbuf *b, size_t extra) {
  if (b->n + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra) cap *= 2;
  b->p = xrealloc(b->p, cap);
  b->cap = cap;
}

static size_t bbuf_append_(bbuf *b, const void *data, size_t len) {
  bbuf_reserve_(b, len);
  size_t at = b->n;
  memcpy(b->p + at, data, len);
  b->n += len;
  return at;
}

typedef struct {
  size_t off, len; /* bytes of a buffer */
} span;

typedef struct {
  span *v;
  size_t n, cap;
} spans;

static void spans_push_(spans *a, size_t off, size_t len) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n].off = off;
  a->v[a->n].len = len;
  a->n++;
}

typedef struct {
  size_t off, len;
  int match; /* a regex match, or an added token's id (>= 0) for added-token splits */
} seg;

typedef struct {
  seg *v;
  size_t n, cap;
} segs;

static void segs_push_(segs *a, size_t off, size_t len, int match) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n].off = off;
  a->v[a->n].len = len;
  a->v[a->n].match = match;
  a->n++;
}

void tok_ids_push(tok_ids *a, int32_t id) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 64;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = id;
}

void tok_ids_free(tok_ids *a) {
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

/* ---- hash maps -------------------------------------------------------------------------- */

/* bytes -> id; keys point into memory the tokenizer owns */
typedef struct {
  uint32_t *slot; /* index into the entries + 1; 0 = empty */
  size_t mask;
  const char **key;
  uint32_t *klen;
  int32_t *val;
  size_t n, cap;
} strmap;

static void strmap_init_(strmap *m, size_t expected) {
  size_t cap = 16;
  while (cap < 2 * expected + 2) cap *= 2;
  m->slot = xcalloc(cap, sizeof *m->slot);
  m->mask = cap - 1;
  m->cap = expected + 1;
  m->key = xmalloc(m->cap * sizeof *m->key);
  m->klen = xmalloc(m->cap * sizeof *m->klen);
  m->val = xmalloc(m->cap * sizeof *m->val);
  m->n = 0;
}

static void strmap_free_(strmap *m) {
  free(m->slot);
  free(m->key);
  free(m->klen);
  free(m->val);
  memset(m, 0, sizeof *m);
}

static uint64_t hash_bytes_(const char *s, size_t len) {
  uint64_t h = hash64_bytes(HASH64_INIT, s, len);
  return h ^ (h >> 29);
}

static size_t strmap_find_(const strmap *m, const char *s, size_t len) {
  size_t i = (size_t)hash_bytes_(s, len) & m->mask;
  while (m->slot[i]) {
    uint32_t e = m->slot[i] - 1;
    if (m->klen[e] == len && memcmp(m->key[e], s, len) == 0) return i;
    i = (i + 1) & m->mask;
  }
  return i;
}

static int32_t strmap_get_(const strmap *m, const char *s, size_t len) {
  if (!m->slot) return -1;
  size_t i = strmap_find_(m, s, len);
  return m->slot[i] ? m->val[m->slot[i] - 1] : -1;
}

/* insert or overwrite; the map is sized at init for every key it will get */
static void strmap_put_(strmap *m, const char *s, size_t len, int32_t val) {
  size_t i = strmap_find_(m, s, len);
  if (m->slot[i]) {
    m->val[m->slot[i] - 1] = val;
    return;
  }
  if (m->n == m->cap) { /* not expected: grow the entries; slots were sized with slack */
    m->cap *= 2;
    m->key = xrealloc(m->key, m->cap * sizeof *m->key);
    m->klen = xrealloc(m->klen, m->cap * sizeof *m->klen);
    m->val = xrealloc(m->val, m->cap * sizeof *m->val);
  }
  m->key[m->n] = s;
  m->klen[m->n] = (uint32_t)len;
  m->val[m->n] = val;
  m->slot[i] = (uint32_t)(++m->n);
}

/* (left id, right id) -> (rank, merged id) */
typedef struct {
  uint64_t *key; /* UINT64_MAX = empty */
  uint32_t *rank;
  int32_t *id;
  size_t mask;
} pairmap;

static uint64_t pair_key_(int32_t a, int32_t b) {
  return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static size_t pair_slot_(uint64_t k, size_t mask) {
  uint64_t h = k * 0x9E3779B97F4A7C15ULL;
  return (size_t)(h >> 17) & mask;
}

static void pairmap_init_(pairmap *m, size_t expected) {
  size_t cap = 16;
  while (cap < 2 * expected + 2) cap *= 2;
  m->key = xmalloc(cap * sizeof *m->key);
  memset(m->key, 0xff, cap * sizeof *m->key);
  m->rank = xmalloc(cap * sizeof *m->rank);
  m->id = xmalloc(cap * sizeof *m->id);
  m->mask = cap - 1;
}

static void pairmap_put_(pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
  uint64_t k = pair_key_(a, b);
  size_t i = pair_slot_(k, m->mask);
  while (m->key[i] != UINT64_MAX && m->key[i] != k) i = (i + 1) & m->mask;
  m->key[i] = k; /* a later duplicate overwrites, as tokenizers' HashMap collect does */
  m->rank[i] = rank;
  m->id[i] = id;
}

static int pairmap_get_(const pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
  uint64_t k = pair_key_(a, b);
  size_t i = pair_slot_(k, m->mask);
  while (m->key[i] != UINT64_MAX) {
    if (m->key[i] == k) {
      *rank = m->rank[i];
      *id = m->id[i];
      return 1;
    }
    i = (i + 1) & m->mask;
  }
  return 0;
}

static void pairmap_free_(pairmap *m) {
  free(m->key);
  free(m->rank);
  free(m->id);
  memset(m, 0, sizeof *m);
}

/* ---- the tokenizer ----------------------------------------------------------------------- */

typedef enum {
  SPLIT_REMOVED,
  SPLIT_ISOLATED,
  SPLIT_MERGED_PREV,
  SPLIT_MERGED_NEXT,
  SPLIT_CONTIGUOUS
} split_behavior;

typedef struct {
  pcre2_code *re; /* NULL: no split (ByteLevel without use_regex) */
  split_behavior behavior;
  int invert;
  int prefix_space; /* ByteLevel's add_prefix_space (before its regex) */
  int meta;         /* Metaspace: 0 not, 1 prepend_scheme always, 2 first, 3 never */
  char rep[8];      /* Metaspace's replacement (one character, UTF-8) */
} pre_step;

/* one normalizer: a utf8proc form (NFC ...), Prepend or Replace (literal) */
typedef enum { NORM_FORM, NORM_PREPEND, NORM_REPLACE } norm_kind;
typedef struct {
  norm_kind kind;
  utf8proc_option_t opt;
  char *a, *b; /* Prepend: a; Replace: a -> b */
} norm_step;

typedef struct {
  const char *s; /* what is matched: the content, normalized when normalized=true */
  size_t len;
  char *orig; /* the content as written (owned, like s) */
  int32_t id;
  int single_word, lstrip, rstrip;
} added_tok;

typedef struct {
  added_tok *tok; /* owned array */
  int n;
  int *first[256]; /* indices of tokens starting with that byte, longest first */
  int nfirst[256];
} added_set;

struct tokenizer {
  char *path;
  char *arena; /* vocabulary keys (as in the file) and their bytes, added tokens' contents */
  int64_t vocab_size;
  strmap vocab_str;   /* key as written -> id */
  strmap vocab_bytes; /* the bytes a byte-level key stands for -> id */
  int32_t byte_id[256];
  pairmap merges;
  int ignore_merges, fuse_unk;
  int sp;                   /* byte_fallback: sentencepiece-style BPE over characters (Llama 2) */
  int32_t fallback_id[256]; /* the <0xNN> tokens (-1: absent) */
  int32_t unk_id;
  norm_step *norm; /* the normalizers in order */
  int n_norm;
  uint32_t *protect; /* sorted code points the normalizer passes through (protected_) */
  size_t n_protect;
  added_set raw, normalized; /* added tokens matched before / after the normalizer */
  strmap added_ids;          /* content -> id, for tokenizer_token_id */
  pre_step *steps;
  int n_steps;
  int32_t *post_pre, *post_suf; /* ids the post-processor puts around a single sequence */
  int n_post_pre, n_post_suf;
  const char **id_s; /* id -> bytes (NULL: no token) */
  uint32_t *id_len;
  pcre2_code *alnum; /* [\p{Alphabetic}\p{N}]: Rust's char::is_alphanumeric, for single_word */
};

/* GPT-2's byte <-> character map: printable Latin-1 stand for themselves, the other bytes
 * for U+0100 upwards in byte order. */
static void byte_level_map_(int cp_of_byte[256], int byte_of_cp[324]) {
  for (int c = 0; c < 324; c++) byte_of_cp[c] = -1;
  int next = 256;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    cp_of_byte[b] = printable ? b : next++;
    byte_of_cp[cp_of_byte[b]] = b;
  }
}

/* Decode a byte-level key into the bytes it stands for (dst has room for len bytes).
 * Returns the byte count, or -1 when a character is outside the byte-level alphabet. */
static long byte_level_decode_(const char *s, size_t len, const int byte_of_cp[324], char *dst) {
  size_t i = 0, n = 0;
  while (i < len) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
    if (k <= 0 || cp >= 324 || byte_of_cp[cp] < 0) return -1;
    dst[n++] = (char)byte_of_cp[cp];
    i += (size_t)k;
  }
  return (long)n;
}

/* a sentencepiece-style key as bytes: U+2581 (▁) as a space, the rest as it is */
static long sp_decode_(const char *s, size_t len, char *dst) {
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    if (len - i >= 3 && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
      dst[n++] = ' ';
      i += 3;
    } else {
      dst[n++] = s[i++];
    }
  }
  return (long)n;
}

/* Rust's char::is_whitespace (Unicode White_Space): lstrip/rstrip of added tokens */
static int is_white_space_(utf8proc_int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/* ---- loading ------------------------------------------------------------------------------- */

static int bad_(const tokenizer *t, const char *key, const char *fmt, ...) ST_PRINTF(3, 4);
static int bad_(const tokenizer *t, const char *key, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return st_fail(ST_EINPUT, "%s: %s: %s", t->path, key, msg);
}

static const char *json_kind_(const json_t *v) {
  if (!v) return "nothing (the key is missing)";
  switch (json_typeof(v)) {
    case JSON_OBJECT:
      return "an object";
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
      return "an integer";
    case JSON_REAL:
      return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    default:
      return "null";
  }
}

/* optional boolean: absent or null = dflt */
static int get_bool_(const tokenizer *t, const json_t *o, const char *k, const char *key, int dflt,
                     int *out) {
  json_t *v = json_object_get(o, k);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_boolean(v)) return bad_(t, key, "expected true or false, found %s", json_kind_(v));
  *out = json_is_true(v);
  return 0;
}

static int get_type_(const tokenizer *t, const json_t *o, const char *key, const char **type) {
  json_t *v = json_object_get(o, "type");
  if (!json_is_object(o) || !json_is_string(v))
    return bad_(t, key, "expected an object with a string \"type\", found %s",
                json_is_object(o) ? "no type" : json_kind_(o));
  *type = json_string_value(v);
  return 0;
}

/* Unicode White_Space as the inside of a character class */
static const char WHITE_SPACE_CLASS[] =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

/* HF's regex (Oniguruma syntax) as a PCRE2 pattern with the same meaning. */
static int translate_regex_(const tokenizer *t, const char *key, const char *re, bbuf *out) {
  int in_class = 0;
  for (size_t i = 0; re[i]; i++) {
    char c = re[i];
    if (c == '\\' && re[i + 1]) {
      char e = re[++i];
      if (strchr("wWbBhH", e))
        return bad_(t, key,
                    "the regex '%s' uses \\%c, whose Unicode meaning differs between "
                    "Oniguruma (tokenizers) and PCRE2: not supported",
                    re, e);
      if (e == 's') { /* Oniguruma's \s: Unicode White_Space (PCRE2's differs at U+0085, U+180E) */
        if (!in_class) bbuf_append_(out, "[", 1);
        bbuf_append_(out, WHITE_SPACE_CLASS, strlen(WHITE_SPACE_CLASS));
        if (!in_class) bbuf_append_(out, "]", 1);
      } else if (e == 'S') {
        if (in_class)
          return bad_(t, key, "the regex '%s' uses \\S inside a character class: not supported",
                      re);
        bbuf_append_(out, "[^", 2);
        bbuf_append_(out, WHITE_SPACE_CLASS, strlen(WHITE_SPACE_CLASS));
        bbuf_append_(out, "]", 1);
      } else {
        char two[2] = {'\\', e};
        bbuf_append_(out, two, 2);
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = 1;
      bbuf_append_(out, &c, 1);
      /* a ']' or '^]' right after '[' is a literal */
      if (re[i + 1] == '^') bbuf_append_(out, &re[++i], 1);
      if (re[i + 1] == ']') bbuf_append_(out, &re[++i], 1);
      continue;
    }
    if (c == '[' && in_class && re[i + 1] == ':') { /* POSIX class [:alpha:] */
      const char *end = strstr(re + i, ":]");
      if (end) {
        size_t n = (size_t)(end + 2 - (re + i));
        bbuf_append_(out, re + i, n);
        i += n - 1;
        continue;
      }
    }
    if (c == ']' && in_class) in_class = 0;
    bbuf_append_(out, &c, 1);
  }
  bbuf_append_(out, "", 1);
  return 0;
}

static int compile_(const tokenizer *t, const char *key, const char *pattern, int literal,
                    pcre2_code **out) {
  bbuf pat = {0};
  int rc = 0;
  if (literal)
    bbuf_append_(&pat, pattern, strlen(pattern) + 1);
  else
    rc = translate_regex_(t, key, pattern, &pat);
  if (rc) {
    free(pat.p);
    return rc;
  }
  int err;
  PCRE2_SIZE erroff;
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
  pcre2_code *re =
      pcre2_compile((PCRE2_SPTR)pat.p, PCRE2_ZERO_TERMINATED, opts, &err, &erroff, NULL);
  free(pat.p);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return bad_(t, key, "the %s '%s' does not compile (PCRE2, at offset %zu): %s",
                literal ? "pattern" : "regex", pattern, (size_t)erroff, (const char *)msg);
  }
  uint32_t minlen = 0;
  pcre2_pattern_info(re, PCRE2_INFO_MINLENGTH, &minlen);
  if (minlen == 0) {
    pcre2_code_free(re);
    return bad_(t, key, "the %s '%s' can match the empty string: not supported",
                literal ? "pattern" : "regex", pattern);
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT (not built in) it still matches */
  *out = re;
  return 0;
}

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int add_step_(tokenizer *t, pre_step s) {
  t->steps = xrealloc(t->steps, (size_t)(t->n_steps + 1) * sizeof *t->steps);
  t->steps[t->n_steps++] = s;
  return 0;
}

static int parse_pre_(tokenizer *t, const json_t *o, const char *key, int *saw_byte_level) {
  const char *type;
  char sub[256];
  int rc = get_type_(t, o, key, &type);
  if (rc) return rc;
  if (*saw_byte_level)
    return bad_(t, key,
                "'%s' after ByteLevel: spectrain needs ByteLevel to be the last "
                "pre-tokenizer (as in GPT-2, Llama 3, Qwen2, SmolLM2)",
                type);
  if (strcmp(type, "Sequence") == 0) {
    json_t *list = json_object_get(o, "pretokenizers");
    if (!json_is_array(list))
      return bad_(t, key, "Sequence: expected an array \"pretokenizers\", found %s",
                  json_kind_(list));
    for (size_t i = 0; i < json_array_size(list) && !rc; i++) {
      snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", key, i);
      rc = parse_pre_(t, json_array_get(list, i), sub, saw_byte_level);
    }
    return rc;
  }
  pre_step s = {0};
  if (strcmp(type, "Metaspace") == 0) {
    if (!t->sp)
      return bad_(t, key,
                  "pre-tokenizer 'Metaspace' needs model.byte_fallback true (spectrain implements "
                  "it for the sentencepiece-style BPE of Llama 2 / Mistral v0.1)");
    if (t->n_steps)
      return bad_(t, key,
                  "Metaspace after another pre-tokenizer is not supported: spectrain "
                  "needs it first (as in Llama 2 / Mistral v0.1)");
    json_t *r = json_object_get(o, "replacement"), *ps = json_object_get(o, "prepend_scheme");
    snprintf(sub, sizeof sub, "%s.replacement", key);
    if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 4 ||
        utf8proc_iterate((const utf8proc_uint8_t *)json_string_value(r),
                         (utf8proc_ssize_t)json_string_length(r),
                         &(utf8proc_int32_t){0}) != (utf8proc_ssize_t)json_string_length(r))
      return bad_(t, sub, "expected one character, found %s",
                  json_is_string(r) ? "another string" : json_kind_(r));
    memcpy(s.rep, json_string_value(r), json_string_length(r) + 1);
    if (ps && !json_is_null(ps)) {
      snprintf(sub, sizeof sub, "%s.prepend_scheme", key);
      const char *v = json_is_string(ps) ? json_string_value(ps) : "";
      s.meta = strcmp(v, "always") == 0  ? 1
               : strcmp(v, "first") == 0 ? 2
               : strcmp(v, "never") == 0 ? 3
                                         : 0;
      if (!s.meta)
        return bad_(t, sub, "expected 'always', 'first' or 'never', found %s%s%s",
                    json_is_string(ps) ? "'" : "", json_is_string(ps) ? v : json_kind_(ps),
                    json_is_string(ps) ? "'" : "");
    } else { /* the older layout: add_prefix_space */
      int aps;
      snprintf(sub, sizeof sub, "%s.add_prefix_space", key);
      if ((rc = get_bool_(t, o, "add_prefix_space", sub, 1, &aps))) return rc;
      s.meta = aps ? 1 : 3;
    }
    int split;
    snprintf(sub, sizeof sub, "%s.split", key);
    if ((rc = get_bool_(t, o, "split", sub, 1, &split))) return rc;
    if ((rc = add_step_(t, s))) return rc;
    if (!split) return 0;
    pre_step sp = {0}; /* split on the replacement, each piece starting with it */
    sp.behavior = SPLIT_MERGED_NEXT;
    if ((rc = compile_(t, key, s.rep, 1, &sp.re))) return rc;
    return add_step_(t, sp);
  }
  if (strcmp(type, "ByteLevel") == 0) {
    int regex = 1;
    snprintf(sub, sizeof sub, "%s.add_prefix_space", key);
    if ((rc = get_bool_(t, o, "add_prefix_space", sub, 1, &s.prefix_space))) return rc;
    snprintf(sub, sizeof sub, "%s.use_regex", key);
    if ((rc = get_bool_(t, o, "use_regex", sub, 1, &regex))) return rc;
    s.behavior = SPLIT_ISOLATED;
    if (regex && (rc = compile_(t, key, GPT2_RE, 0, &s.re))) return rc;
    *saw_byte_level = 1;
    return add_step_(t, s);
  }
  if (strcmp(type, "Digits") == 0) {
    int individual = 0;
    snprintf(sub, sizeof sub, "%s.individual_digits", key);
    if ((rc = get_bool_(t, o, "individual_digits", sub, 0, &individual))) return rc;
    /* Rust's char::is_numeric, as there: general categories Nd, Nl, No */
    s.behavior = individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
    if ((rc = compile_(t, key, "\\p{N}", 0, &s.re))) return rc;
    return add_step_(t, s);
  }
  if (strcmp(type, "Split") == 0) {
    json_t *pat = json_object_get(o, "pattern"), *beh = json_object_get(o, "behavior");
    json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    if (!json_is_string(rx) && !json_is_string(lit))
      return bad_(t, key,
                  "Split: expected \"pattern\" {\"Regex\": ...} or {\"String\": ...}, found %s",
                  json_kind_(pat));
    static const struct {
      const char *name;
      split_behavior b;
    } behaviors[] = {{"Removed", SPLIT_REMOVED},
                     {"Isolated", SPLIT_ISOLATED},
                     {"MergedWithPrevious", SPLIT_MERGED_PREV},
                     {"MergedWithNext", SPLIT_MERGED_NEXT},
                     {"Contiguous", SPLIT_CONTIGUOUS}};
    int found = 0;
    for (size_t i = 0; i < sizeof behaviors / sizeof *behaviors; i++)
      if (json_is_string(beh) && strcmp(json_string_value(beh), behaviors[i].name) == 0) {
        s.behavior = behaviors[i].b;
        found = 1;
      }
    if (!found)
      return bad_(t, key,
                  "Split: \"behavior\" must be Removed, Isolated, MergedWithPrevious, "
                  "MergedWithNext or Contiguous, found %s%s%s",
                  json_is_string(beh) ? "'" : "",
                  json_is_string(beh) ? json_string_value(beh) : json_kind_(beh),
                  json_is_string(beh) ? "'" : "");
    snprintf(sub, sizeof sub, "%s.invert", key);
    if ((rc = get_bool_(t, o, "invert", sub, 0, &s.invert))) return rc;
    snprintf(sub, sizeof sub, "%s.pattern", key);
    if (json_is_string(rx))
      rc = compile_(t, sub, json_string_value(rx), 0, &s.re);
    else
      rc = compile_(t, sub, json_string_value(lit), 1, &s.re);
    if (rc) return rc;
    return add_step_(t, s);
  }
  return bad_(t, key,
              "pre-tokenizer '%s' is not supported (spectrain implements Split, "
              "ByteLevel, Digits, Sequence and, with byte_fallback, Metaspace)",
              type);
}

static int parse_norm_(tokenizer *t, const json_t *o, const char *key) {
  if (!o || json_is_null(o)) return 0;
  const char *type;
  int rc = get_type_(t, o, key, &type);
  if (rc) return rc;
  if (strcmp(type, "Sequence") == 0) {
    json_t *list = json_object_get(o, "normalizers");
    if (!json_is_array(list))
      return bad_(t, key, "Sequence: expected an array \"normalizers\", found %s",
                  json_kind_(list));
    for (size_t i = 0; i < json_array_size(list) && !rc; i++) {
      char sub[256];
      snprintf(sub, sizeof sub, "%s.normalizers[%zu]", key, i);
      rc = parse_norm_(t, json_array_get(list, i), sub);
    }
    return rc;
  }
  static const struct {
    const char *name;
    utf8proc_option_t opt;
  } forms[] = {{"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
               {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
               {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
               {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT}};
  for (size_t i = 0; i < sizeof forms / sizeof *forms; i++)
    if (strcmp(type, forms[i].name) == 0) {
      t->norm = xrealloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
      t->norm[t->n_norm++] = (norm_step){NORM_FORM, forms[i].opt, NULL, NULL};
      return 0;
    }
  char sub[256];
  if (strcmp(type, "Prepend") == 0) {
    json_t *v = json_object_get(o, "prepend");
    snprintf(sub, sizeof sub, "%s.prepend", key);
    if (!json_is_string(v)) return bad_(t, sub, "expected a string, found %s", json_kind_(v));
    t->norm = xrealloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
    t->norm[t->n_norm++] = (norm_step){NORM_PREPEND, 0, xstrdup(json_string_value(v)), NULL};
    return 0;
  }
  if (strcmp(type, "Replace") == 0) {
    json_t *pat = json_object_get(o, "pattern"), *c = json_object_get(o, "content");
    json_t *lit = json_object_get(pat, "String");
    snprintf(sub, sizeof sub, "%s.pattern", key);
    if (!json_is_string(lit) || json_string_length(lit) == 0)
      return bad_(t, sub,
                  "Replace: expected {\"String\": \"...\"} (a non-empty literal; spectrain does "
                  "not implement Replace with a regex), found %s",
                  json_object_get(pat, "Regex") ? "a Regex" : json_kind_(pat));
    snprintf(sub, sizeof sub, "%s.content", key);
    if (!json_is_string(c)) return bad_(t, sub, "expected a string, found %s", json_kind_(c));
    t->norm = xrealloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *t->norm);
    t->norm[t->n_norm++] = (norm_step){NORM_REPLACE, 0, xstrdup(json_string_value(lit)),
                                       xstrdup(json_string_value(c))};
    return 0;
  }
  return bad_(t, key,
              "normalizer '%s' is not supported (spectrain implements NFC, NFD, NFKC, "
              "NFKD, Prepend, Replace (literal) and Sequence)",
              type);
}

static void post_add_(int32_t **v, int *n, const int32_t *ids, int k, int front) {
  if (k == 0) return;
  *v = xrealloc(*v, (size_t)(*n + k) * sizeof **v);
  if (front) {
    memmove(*v + k, *v, (size_t)*n * sizeof **v);
    memcpy(*v, ids, (size_t)k * sizeof **v);
  } else {
    memcpy(*v + *n, ids, (size_t)k * sizeof **v);
  }
  *n += k;
}

static int token_pair_id_(const tokenizer *t, const json_t *pair, const char *key, int32_t *id) {
  json_t *v = json_array_get(pair, 1);
  if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(v))
    return bad_(t, key, "expected [\"token\", id], found %s", json_kind_(pair));
  *id = (int32_t)json_integer_value(v);
  return 0;
}

static int parse_post_(tokenizer *t, const json_t *o, const char *key) {
  if (!o || json_is_null(o)) return 0;
  const char *type;
  char sub[256];
  int rc = get_type_(t, o, key, &type);
  if (rc) return rc;
  if (strcmp(type, "Sequence") == 0) {
    json_t *list = json_object_get(o, "processors");
    if (!json_is_array(list))
      return bad_(t, key, "Sequence: expected an array \"processors\", found %s", json_kind_(list));
    for (size_t i = 0; i < json_array_size(list) && !rc; i++) {
      snprintf(sub, sizeof sub, "%s.processors[%zu]", key, i);
      rc = parse_post_(t, json_array_get(list, i), sub);
    }
    return rc;
  }
  if (strcmp(type, "ByteLevel") == 0) return 0; /* offsets only */
  if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
    int32_t cls, sep;
    snprintf(sub, sizeof sub, "%s.cls", key);
    if ((rc = token_pair_id_(t, json_object_get(o, "cls"), sub, &cls))) return rc;
    snprintf(sub, sizeof sub, "%s.sep", key);
    if ((rc = token_pair_id_(t, json_object_get(o, "sep"), sub, &sep))) return rc;
    post_add_(&t->post_pre, &t->n_post_pre, &cls, 1, 1);
    post_add_(&t->post_suf, &t->n_post_suf, &sep, 1, 0);
    return 0;
  }
  if (strcmp(type, "TemplateProcessing") == 0) {
    json_t *single = json_object_get(o, "single"), *specials = json_object_get(o, "special_tokens");
    snprintf(sub, sizeof sub, "%s.single", key);
    if (!json_is_array(single))
      return bad_(t, sub, "expected an array, found %s", json_kind_(single));
    int32_t *pre = NULL, *suf = NULL;
    int npre = 0, nsuf = 0, seen_a = 0;
    for (size_t i = 0; i < json_array_size(single) && !rc; i++) {
      json_t *item = json_array_get(single, i);
      json_t *sp = json_object_get(item, "SpecialToken"), *sq = json_object_get(item, "Sequence");
      snprintf(sub, sizeof sub, "%s.single[%zu]", key, i);
      if (json_is_object(sq)) {
        json_t *id = json_object_get(sq, "id");
        if (!json_is_string(id) || strcmp(json_string_value(id), "A") != 0 || seen_a)
          rc = bad_(t, sub, "expected the one sequence $A of a single template");
        seen_a = 1;
      } else if (json_is_object(sp) && json_is_string(json_object_get(sp, "id"))) {
        const char *name = json_string_value(json_object_get(sp, "id"));
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids)) {
          rc = bad_(t, sub, "special token '%s' is not in %s.special_tokens (with its ids)", name,
                    key);
          break;
        }
        for (size_t j = 0; j < json_array_size(ids) && !rc; j++) {
          json_t *v = json_array_get(ids, j);
          if (!json_is_integer(v)) {
            rc = bad_(t, sub, "special token '%s': ids must be integers", name);
            break;
          }
          int32_t id = (int32_t)json_integer_value(v);
          if (seen_a)
            post_add_(&suf, &nsuf, &id, 1, 0);
          else
            post_add_(&pre, &npre, &id, 1, 0);
        }
      } else {
        rc = bad_(t, sub,
                  "expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}");
      }
    }
    if (!rc && !seen_a) rc = bad_(t, key, "TemplateProcessing: the single template has no $A");
    if (!rc) {
      post_add_(&t->post_pre, &t->n_post_pre, pre, npre, 1);
      post_add_(&t->post_suf, &t->n_post_suf, suf, nsuf, 0);
    }
    free(pre);
    free(suf);
    return rc;
  }
  return bad_(t, key,
              "post-processor '%s' is not supported (spectrain implements "
              "TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel and Sequence)",
              type);
}

static int cmp_len_desc_(const void *a, const void *b, void *ctx) {
  const added_tok *tok = ctx;
  size_t la = tok[*(const int *)a].len, lb = tok[*(const int *)b].len;
  if (la != lb) return la > lb ? -1 : 1;
  return *(const int *)a - *(const int *)b;
}

/* qsort_r is a GNU extension (the build defines _GNU_SOURCE) */
static void added_index_(added_set *s) {
  for (int b = 0; b < 256; b++) {
    s->nfirst[b] = 0;
    s->first[b] = NULL;
  }
  for (int i = 0; i < s->n; i++) s->nfirst[(unsigned char)s->tok[i].s[0]]++;
  for (int b = 0; b < 256; b++) {
    if (s->nfirst[b]) s->first[b] = xmalloc((size_t)s->nfirst[b] * sizeof(int));
    s->nfirst[b] = 0;
  }
  for (int i = 0; i < s->n; i++) {
    unsigned char b = (unsigned char)s->tok[i].s[0];
    s->first[b][s->nfirst[b]++] = i;
  }
  for (int b = 0; b < 256; b++)
    if (s->nfirst[b] > 1)
      qsort_r(s->first[b], (size_t)s->nfirst[b], sizeof(int), cmp_len_desc_, s->tok);
}

static void added_free_(added_set *s) {
  for (int b = 0; b < 256; b++) free(s->first[b]);
  free(s->tok);
}

/* Code points utf8proc 2.8 (Unicode 15) decomposes under NFD or NFKD and tokenizers'
 * normalization tables (an older Unicode) leave alone: spectrain leaves them alone too, and
 * does not compose into them (tests/fixtures/tokenizer/make_fixtures.py checks this list
 * against both libraries). */
static const uint32_t hf_unnormalized_[] = {
    0x032FF, 0x0A7F2, 0x0A7F3, 0x0A7F4, 0x0AB69, 0x10781, 0x10782, 0x10783, 0x10784, 0x10785,
    0x10787, 0x10788, 0x10789, 0x1078A, 0x1078B, 0x1078C, 0x1078D, 0x1078E, 0x1078F, 0x10790,
    0x10791, 0x10792, 0x10793, 0x10794, 0x10795, 0x10796, 0x10797, 0x10798, 0x10799, 0x1079A,
    0x1079B, 0x1079C, 0x1079D, 0x1079E, 0x1079F, 0x107A0, 0x107A1, 0x107A2, 0x107A3, 0x107A4,
    0x107A5, 0x107A6, 0x107A7, 0x107A8, 0x107A9, 0x107AA, 0x107AB, 0x107AC, 0x107AD, 0x107AE,
    0x107AF, 0x107B0, 0x107B2, 0x107B3, 0x107B4, 0x107B5, 0x107B6, 0x107B7, 0x107B8, 0x107B9,
    0x107BA, 0x11938, 0x1E030, 0x1E031, 0x1E032, 0x1E033, 0x1E034, 0x1E035, 0x1E036, 0x1E037,
    0x1E038, 0x1E039, 0x1E03A, 0x1E03B, 0x1E03C, 0x1E03D, 0x1E03E, 0x1E03F, 0x1E040, 0x1E041,
    0x1E042, 0x1E043, 0x1E044, 0x1E045, 0x1E046, 0x1E047, 0x1E048, 0x1E049, 0x1E04A, 0x1E04B,
    0x1E04C, 0x1E04D, 0x1E04E, 0x1E04F, 0x1E050, 0x1E051, 0x1E052, 0x1E053, 0x1E054, 0x1E055,
    0x1E056, 0x1E057, 0x1E058, 0x1E059, 0x1E05A, 0x1E05B, 0x1E05C, 0x1E05D, 0x1E05E, 0x1E05F,
    0x1E060, 0x1E061, 0x1E062, 0x1E063, 0x1E064, 0x1E065, 0x1E066, 0x1E067, 0x1E068, 0x1E069,
    0x1E06A, 0x1E06B, 0x1E06C, 0x1E06D, 0x1F16C, 0x1FBF0, 0x1FBF1, 0x1FBF2, 0x1FBF3, 0x1FBF4,
    0x1FBF5, 0x1FBF6, 0x1FBF7, 0x1FBF8, 0x1FBF9};

/* the table, plus the last code point of each one's canonical decomposition (kept out of
 * composition: NFC must not build a character tokenizers does not know) */
static int protected_(const tokenizer *t, utf8proc_int32_t cp) {
  if (cp < 0x32FF) return 0;
  size_t lo = 0, hi = t->n_protect;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->protect[mid] < (uint32_t)cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < t->n_protect && t->protect[lo] == (uint32_t)cp;
}

static int cmp_u32_(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void protect_init_(tokenizer *t) {
  size_t n = sizeof hf_unnormalized_ / sizeof *hf_unnormalized_;
  t->protect = xmalloc(2 * n * sizeof *t->protect);
  for (size_t i = 0; i < n; i++) {
    t->protect[t->n_protect++] = hf_unnormalized_[i];
    utf8proc_int32_t dec[8];
    int last;
    utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)hf_unnormalized_[i], dec, 8,
                                                 UTF8PROC_DECOMPOSE, &last);
    if (k > 1 && k <= 8 && dec[k - 1] >= 0x32FF) t->protect[t->n_protect++] = (uint32_t)dec[k - 1];
  }
  qsort(t->protect, t->n_protect, sizeof *t->protect, cmp_u32_);
}

static int norm_run_(const tokenizer *t, int i0, int i1, const char *text, size_t len, bbuf *out) {
  char *cur = xmalloc(len + 1);
  memcpy(cur, text, len);
  size_t n = len;
  for (int i = i0; i < i1; i++) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k =
        utf8proc_map((const utf8proc_uint8_t *)cur, (utf8proc_ssize_t)n, &dst, t->norm[i].opt);
    free(cur);
    if (k < 0) {
      free(dst);
      return st_fail(ST_EINPUT, "Unicode normalization failed: %s", utf8proc_errmsg(k));
    }
    cur = (char *)dst;
    n = (size_t)k;
  }
  bbuf_append_(out, cur, n);
  free(cur);
  return 0;
}

/* text[0..len) through the Unicode forms norm[i0..i1), protected code points passed
 * through as they are; *out is malloc'ed (caller frees) */
static int normalize_forms_(const tokenizer *t, int i0, int i1, const char *text, size_t len,
                            char **out, size_t *out_len) {
  bbuf b = {0};
  size_t run = 0, i = 0;
  int rc = 0;
  while (i < len && !rc) {
    if ((unsigned char)text[i] < 0xE3) { /* below U+3000: never protected */
      i++;
      continue;
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
    if (k <= 0) k = 1;
    if (protected_(t, cp)) {
      if (i > run) rc = norm_run_(t, i0, i1, text + run, i - run, &b);
      bbuf_append_(&b, text + i, (size_t)k);
      run = i + (size_t)k;
    }
    i += (size_t)k;
  }
  if (!rc && len > run) rc = norm_run_(t, i0, i1, text + run, len - run, &b);
  if (rc) {
    free(b.p);
    *out = NULL;
    return rc;
  }
  bbuf_append_(&b, "", 1);
  *out = b.p;
  *out_len = b.n - 1;
  return 0;
}

/* normalize text[0..len) through every normalizer in order (consecutive Unicode forms
 * together, as before); *out is malloc'ed (caller frees) */
static int normalize_(const tokenizer *t, const char *text, size_t len, char **out,
                      size_t *out_len) {
  char *cur = xmalloc(len + 1);
  memcpy(cur, text, len);
  cur[len] = '\0';
  size_t n = len;
  for (int i = 0; i < t->n_norm;) {
    const norm_step *st = &t->norm[i];
    if (st->kind == NORM_FORM) {
      int j = i;
      while (j < t->n_norm && t->norm[j].kind == NORM_FORM) j++;
      char *nxt;
      int rc = normalize_forms_(t, i, j, cur, n, &nxt, &n);
      free(cur);
      if (rc) return rc;
      cur = nxt;
      i = j;
      continue;
    }
    bbuf b = {0};
    if (st->kind == NORM_PREPEND) { /* tokenizers: only a non-empty string */
      if (n) bbuf_append_(&b, st->a, strlen(st->a));
      bbuf_append_(&b, cur, n);
    } else { /* Replace: every occurrence, left to right */
      size_t la = strlen(st->a), lb = strlen(st->b), at = 0;
      while (at < n) {
        if (n - at >= la && memcmp(cur + at, st->a, la) == 0) {
          bbuf_append_(&b, st->b, lb);
          at += la;
        } else {
          bbuf_append_(&b, cur + at, 1);
          at++;
        }
      }
    }
    bbuf_append_(&b, "", 1);
    free(cur);
    cur = b.p;
    n = b.n - 1;
    i++;
  }
  *out = cur;
  *out_len = n;
  return 0;
}

static int parse_added_(tokenizer *t, const json_t *list, size_t model_vocab_entries) {
  if (!list || json_is_null(list)) return 0;
  if (!json_is_array(list))
    return bad_(t, "added_tokens", "expected an array, found %s", json_kind_(list));
  size_t n = json_array_size(list);
  t->raw.tok = xcalloc(n + 1, sizeof(added_tok));
  t->normalized.tok = xcalloc(n + 1, sizeof(added_tok));
  strmap_init_(&t->added_ids, n);
  int32_t max_added = -1; /* tokenizers' AddedVocabulary assigns the ids, in list order */
  for (size_t i = 0; i < n; i++) {
    json_t *a = json_array_get(list, i);
    char key[128];
    snprintf(key, sizeof key, "added_tokens[%zu]", i);
    json_t *content = json_object_get(a, "content"), *id = json_object_get(a, "id");
    if (!json_is_string(content) || !json_is_integer(id))
      return bad_(t, key, "expected {\"id\": integer, \"content\": string, ...}, found %s",
                  json_kind_(a));
    added_tok tok = {0};
    int normalized = 0;
    int rc = get_bool_(t, a, "single_word", key, 0, &tok.single_word);
    if (!rc) rc = get_bool_(t, a, "lstrip", key, 0, &tok.lstrip);
    if (!rc) rc = get_bool_(t, a, "rstrip", key, 0, &tok.rstrip);
    if (!rc) rc = get_bool_(t, a, "normalized", key, 0, &normalized);
    if (rc) return rc;
    const char *s = json_string_value(content);
    size_t len = json_string_length(content);
    if (len == 0) continue;
    /* the id tokenizers gives it (whatever the file says): the one it already has as an
     * added token or a vocabulary entry, else the model's entry count for the first new
     * one and one past the largest added id after that */
    if (strmap_get_(&t->added_ids, s, len) >= 0) continue; /* listed twice: the first counts */
    int32_t mid = strmap_get_(&t->vocab_str, s, len);
    if (mid < 0)
      mid = max_added < 0 ? (int32_t)model_vocab_entries
            : (max_added >= (int32_t)model_vocab_entries || model_vocab_entries == 0)
                ? max_added + 1
                : (int32_t)model_vocab_entries;
    if (mid != (int32_t)json_integer_value(id))
      log_warn("%s: %s ('%s') has id %lld, but tokenizers gives it %d (as spectrain does)", t->path,
               key, s, (long long)json_integer_value(id), mid);
    if (mid > max_added) max_added = mid;
    tok.id = mid;
    char *copy = NULL;
    size_t clen = len;
    if (normalized && t->n_norm) {
      if ((rc = normalize_(t, s, len, &copy, &clen))) return bad_(t, key, "%s", st_errmsg());
    } else {
      copy = xmalloc(len + 1);
      memcpy(copy, s, len);
    }
    tok.s = copy;
    tok.len = clen;
    tok.orig = xmalloc(len + 1);
    memcpy(tok.orig, s, len + 1);
    added_set *set = normalized ? &t->normalized : &t->raw;
    set->tok[set->n++] = tok;
    strmap_put_(&t->added_ids, tok.orig, len, mid);
    if (mid + 1 > t->vocab_size) t->vocab_size = mid + 1;
  }
  added_index_(&t->raw);
  added_index_(&t->normalized);
  return 0;
}

static int parse_model_(tokenizer *t, const json_t *m) {
  const char *type = "BPE";
  json_t *tv = json_object_get(m, "type");
  if (!json_is_object(m)) return bad_(t, "model", "expected an object, found %s", json_kind_(m));
  if (tv && !json_is_string(tv))
    return bad_(t, "model.type", "expected a string, found %s", json_kind_(tv));
  if (tv) type = json_string_value(tv);
  if (strcmp(type, "BPE") != 0)
    return bad_(t, "model.type",
                "expected 'BPE', found '%s' (spectrain implements byte-level BPE: "
                "GPT-2, Llama 3, Qwen2, SmolLM2)",
                type);
  json_t *dropout = json_object_get(m, "dropout");
  if (dropout && !json_is_null(dropout) &&
      !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
    return bad_(t, "model.dropout", "BPE dropout is random: expected null, found %g",
                json_number_value(dropout));
  static const char *const empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    json_t *v = json_object_get(m, empty_keys[i]);
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
      return bad_(t, "model", "%s '%s' is not supported (byte-level BPE has none)", empty_keys[i],
                  json_is_string(v) ? json_string_value(v) : json_kind_(v));
  }
  int rc;
  if ((rc = get_bool_(t, m, "byte_fallback", "model.byte_fallback", 0, &t->sp))) return rc;
  if ((rc = get_bool_(t, m, "fuse_unk", "model.fuse_unk", 0, &t->fuse_unk))) return rc;
  if ((rc = get_bool_(t, m, "ignore_merges", "model.ignore_merges", 0, &t->ignore_merges)))
    return rc;

  json_t *vocab = json_object_get(m, "vocab");
  if (!json_is_object(vocab))
    return bad_(t, "model.vocab", "expected an object, found %s", json_kind_(vocab));
  size_t nv = json_object_size(vocab), total = 0;
  const char *k;
  json_t *v;
  json_object_foreach(vocab, k, v) total += strlen(k) + 1;
  /* the arena: every key as written, then the bytes it stands for */
  t->arena = xmalloc(2 * total + 1);
  size_t at = 0;
  strmap_init_(&t->vocab_str, nv);
  strmap_init_(&t->vocab_bytes, nv);
  int cp_of_byte[256], byte_of_cp[324];
  byte_level_map_(cp_of_byte, byte_of_cp);
  for (int b = 0; b < 256; b++) t->byte_id[b] = t->fallback_id[b] = -1;
  json_object_foreach(vocab, k, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
      return bad_(t, "model.vocab", "'%s': expected an id from 0 to 2^31-2, found %s", k,
                  json_is_integer(v) ? "a number out of range" : json_kind_(v));
    int32_t id = (int32_t)json_integer_value(v);
    size_t len = strlen(k);
    char *ks = t->arena + at;
    memcpy(ks, k, len + 1);
    at += len + 1;
    strmap_put_(&t->vocab_str, ks, len, id);
    long nb = t->sp ? sp_decode_(ks, len, t->arena + at)
                    : byte_level_decode_(ks, len, byte_of_cp, t->arena + at);
    if (t->sp) { /* the bytes a token stands for: <0xNN> its byte, else ▁ as a space */
      unsigned hi, lo;
      if (len == 6 && k[0] == '<' && k[1] == '0' && k[2] == 'x' && k[5] == '>' &&
          sscanf(k + 3, "%1X%1X", &hi, &lo) == 2 && strchr("0123456789ABCDEF", k[3]) &&
          strchr("0123456789ABCDEF", k[4])) {
        t->fallback_id[hi * 16 + lo] = id;
        t->arena[at] = (char)(hi * 16 + lo);
        nb = 1;
      }
      strmap_put_(&t->vocab_bytes, t->arena + at, (size_t)nb, id);
      at += (size_t)nb;
    } else if (nb > 0) {
      strmap_put_(&t->vocab_bytes, t->arena + at, (size_t)nb, id);
      if (nb == 1) t->byte_id[(unsigned char)t->arena[at]] = id;
      at += (size_t)nb;
    }
    if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
  }
  t->unk_id = -1;
  json_t *unk = json_object_get(m, "unk_token");
  if (unk && !json_is_null(unk)) {
    if (!json_is_string(unk))
      return bad_(t, "model.unk_token", "expected a string or null, found %s", json_kind_(unk));
    t->unk_id = strmap_get_(&t->vocab_str, json_string_value(unk), json_string_length(unk));
    if (t->unk_id < 0)
      return bad_(t, "model.unk_token", "'%s' is not in model.vocab", json_string_value(unk));
  }

  json_t *merges = json_object_get(m, "merges");
  if (!json_is_array(merges))
    return bad_(t, "model.merges", "expected an array, found %s", json_kind_(merges));
  size_t nm = json_array_size(merges);
  pairmap_init_(&t->merges, nm);
  char *joined = NULL;
  size_t jcap = 0;
  for (size_t i = 0; i < nm; i++) {
    json_t *e = json_array_get(merges, i);
    const char *a, *b;
    size_t la, lb;
    char key[64];
    snprintf(key, sizeof key, "model.merges[%zu]", i);
    if (json_is_string(e)) { /* "a b" (the older layout) */
      a = json_string_value(e);
      const char *sp = strchr(a, ' ');
      if (!sp || strchr(sp + 1, ' ')) {
        free(joined);
        return bad_(t, key, "expected \"left right\" (two tokens, one space), found '%s'", a);
      }
      la = (size_t)(sp - a);
      b = sp + 1;
      lb = strlen(b);
    } else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
      a = json_string_value(json_array_get(e, 0));
      la = json_string_length(json_array_get(e, 0));
      b = json_string_value(json_array_get(e, 1));
      lb = json_string_length(json_array_get(e, 1));
    } else {
      free(joined);
      return bad_(t, key, "expected \"left right\" or [\"left\", \"right\"], found %s",
                  json_kind_(e));
    }
    if (la + lb + 1 > jcap) {
      jcap = 2 * (la + lb + 1);
      joined = xrealloc(joined, jcap);
    }
    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    int32_t ia = strmap_get_(&t->vocab_str, a, la), ib = strmap_get_(&t->vocab_str, b, lb);
    int32_t ij = strmap_get_(&t->vocab_str, joined, la + lb);
    if (ia < 0 || ib < 0 || ij < 0) {
      joined[la + lb] = '\0';
      int rc2 = ia < 0   ? bad_(t, key, "'%.*s' + '%.*s': the left token is not in model.vocab",
                                (int)la, a, (int)lb, b)
                : ib < 0 ? bad_(t, key, "'%.*s' + '%.*s': the right token is not in model.vocab",
                                (int)la, a, (int)lb, b)
                         : bad_(t, key, "'%.*s' + '%.*s': their merge '%s' is not in model.vocab",
                                (int)la, a, (int)lb, b, joined);
      free(joined);
      return rc2;
    }
    pairmap_put_(&t->merges, ia, ib, (uint32_t)i, ij);
  }
  free(joined);
  return 0;
}

static void id_table_(tokenizer *t) {
  size_t n = (size_t)t->vocab_size;
  t->id_s = xcalloc(n ? n : 1, sizeof *t->id_s);
  t->id_len = xcalloc(n ? n : 1, sizeof *t->id_len);
  for (size_t e = 0; e < t->vocab_str.n; e++) { /* keys as written; bytes where they decode */
    int32_t id = t->vocab_str.val[e];
    t->id_s[id] = t->vocab_str.key[e];
    t->id_len[id] = t->vocab_str.klen[e];
  }
  for (size_t e = 0; e < t->vocab_bytes.n; e++) {
    int32_t id = t->vocab_bytes.val[e];
    t->id_s[id] = t->vocab_bytes.key[e];
    t->id_len[id] = t->vocab_bytes.klen[e];
  }
  added_set *sets[2] = {&t->raw, &t->normalized};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < sets[k]->n; i++) {
      t->id_s[sets[k]->tok[i].id] = sets[k]->tok[i].s;
      t->id_len[sets[k]->tok[i].id] = (uint32_t)sets[k]->tok[i].len;
    }
}

int tokenizer_load(const char *path, tokenizer **out) {
  *out = NULL;
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) {
    if (jerr.line < 0 || strstr(jerr.text, "unable to open"))
      return st_fail(ST_EINPUT, "%s: cannot read: %s", path, jerr.text);
    return st_fail(ST_EINPUT, "%s: line %d, column %d: not valid JSON: %s", path, jerr.line,
                   jerr.column, jerr.text);
  }
  tokenizer *t = xcalloc(1, sizeof *t);
  t->path = xstrdup(path);
  int rc = 0;
  if (!json_is_object(root))
    rc = bad_(t, "(top level)", "expected an object, found %s", json_kind_(root));
  if (!rc) rc = parse_norm_(t, json_object_get(root, "normalizer"), "normalizer");
  if (!rc && t->n_norm) protect_init_(t);
  if (!rc) rc = parse_model_(t, json_object_get(root, "model"));
  if (!rc) rc = parse_added_(t, json_object_get(root, "added_tokens"), t->vocab_str.n);
  if (!rc) {
    json_t *pre = json_object_get(root, "pre_tokenizer");
    int saw = 0;
    if (!pre || json_is_null(pre)) {
      if (!t->sp)
        rc = bad_(t, "pre_tokenizer",
                  "missing: spectrain implements byte-level BPE, which needs a "
                  "ByteLevel pre-tokenizer, and sentencepiece-style BPE (model.byte_fallback "
                  "true), which may have none");
    } else {
      rc = parse_pre_(t, pre, "pre_tokenizer", &saw);
    }
    if (!rc && t->sp && saw)
      rc = bad_(t, "model.byte_fallback",
                "true together with a ByteLevel pre-tokenizer is not supported: spectrain "
                "implements byte_fallback for sentencepiece-style BPE (Llama 2, Mistral v0.1)");
    if (!rc && !t->sp && !saw)
      rc = bad_(t, "pre_tokenizer",
                "has no ByteLevel step: spectrain implements byte-level BPE and "
                "sentencepiece-style BPE (model.byte_fallback true)");
  }
  if (!rc) rc = parse_post_(t, json_object_get(root, "post_processor"), "post_processor");
  if (!rc) {
    json_t *dec = json_object_get(root, "decoder");
    const char *type;
    if (!t->sp && dec && !json_is_null(dec) && !get_type_(t, dec, "decoder", &type) &&
        strcmp(type, "ByteLevel") != 0)
      log_warn("%s: decoder '%s' (not ByteLevel) is ignored: spectrain only encodes", path, type);
    st_clear_error();
  }
  if (!rc) {
    int err;
    PCRE2_SIZE off;
    t->alnum = pcre2_compile((PCRE2_SPTR) "[\\p{Alphabetic}\\p{N}]", PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!t->alnum) rc = st_fail(ST_ERUNTIME, "PCRE2 lacks Unicode properties (\\p{Alphabetic})");
  }
  json_decref(root);
  if (rc) {
    tokenizer_free(t);
    return rc;
  }
  id_table_(t);
  *out = t;
  return 0;
}

void tokenizer_free(tokenizer *t) {
  if (!t) return;
  strmap_free_(&t->vocab_str);
  strmap_free_(&t->vocab_bytes);
  strmap_free_(&t->added_ids);
  pairmap_free_(&t->merges);
  added_set *sets[2] = {&t->raw, &t->normalized};
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < sets[k]->n; i++) {
      free((void *)sets[k]->tok[i].s);
      free(sets[k]->tok[i].orig);
    }
    added_free_(sets[k]);
  }
  for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
  free(t->steps);
  for (int i = 0; i < t->n_norm; i++) {
    free(t->norm[i].a);
    free(t->norm[i].b);
  }
  free(t->norm);
  free(t->protect);
  free(t->post_pre);
  free(t->post_suf);
  free(t->id_s);
  free(t->id_len);
  pcre2_code_free(t->alnum);
  free(t->arena);
  free(t->path);
  free(t);
}

int32_t tokenizer_token_id(const tokenizer *t, const char *token) {
  size_t len = strlen(token);
  int32_t id = strmap_get_(&t->added_ids, token, len);
  return id >= 0 ? id : strmap_get_(&t->vocab_str, token, len);
}

int64_t tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }

const char *tokenizer_id_bytes(const tokenizer *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->vocab_size || !t->id_s[id]) return NULL;
  *len = t->id_len[id];
  return t->id_s[id];
}

/* ---- per-thread scratch --------------------------------------------------------------------- */

#define CACHE_SLOTS 16384
#define CACHE_MAX_BYTES 128

typedef struct {
  uint64_t h;
  uint32_t len, nids;
  char *blob; /* ids (int32) then the bytes */
} cache_slot;

typedef struct {
  uint32_t rank, pos;
  int32_t id;
} merge_cand;

struct tok_scratch {
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit;
  bbuf work;
  spans a, b;
  segs rx, top, sub;
  int32_t *sym, *prev, *next;
  unsigned char *alive;
  size_t sym_cap;
  merge_cand *heap;
  size_t heap_cap;
  cache_slot *cache;
};

tok_scratch *tok_scratch_new(const tokenizer *t) {
  (void)t;
  tok_scratch *s = xcalloc(1, sizeof *s);
  s->md = pcre2_match_data_create(1, NULL);
  s->mctx = pcre2_match_context_create(NULL);
  s->jit = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
  if (s->jit) pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
  s->cache = xcalloc(CACHE_SLOTS, sizeof *s->cache);
  return s;
}

void tok_scratch_free(tok_scratch *s) {
  if (!s) return;
  pcre2_match_data_free(s->md);
  pcre2_match_context_free(s->mctx);
  if (s->jit) pcre2_jit_stack_free(s->jit);
  free(s->work.p);
  free(s->a.v);
  free(s->b.v);
  free(s->rx.v);
  free(s->top.v);
  free(s->sub.v);
  free(s->sym);
  free(s->prev);
  free(s->next);
  free(s->alive);
  free(s->heap);
  for (size_t i = 0; i < CACHE_SLOTS; i++) free(s->cache[i].blob);
  free(s->cache);
  free(s);
}

/* ---- encoding -----------------------------------------------------------------------------------
 */

static int utf8_check_(const char *text, size_t len) {
  size_t i = 0;
  while (i < len) {
    if ((unsigned char)text[i] < 0x80) {
      i++;
      continue;
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
    if (k <= 0)
      return st_fail(ST_EINPUT, "invalid UTF-8 at byte %zu (0x%02x)", i, (unsigned char)text[i]);
    i += (size_t)k;
  }
  return 0;
}

static int is_alnum_at_(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        size_t at) {
  int rc = pcre2_match(t->alnum, (PCRE2_SPTR)text, len, at, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                       s->md, NULL);
  return rc >= 0;
}

/* tokenizers' AddedVocabulary::find_matches: leftmost-longest matches of the set's tokens,
 * with single_word, lstrip and rstrip. Appends segments (match = id, or -1 for text). */
static void split_added_(const tokenizer *t, tok_scratch *s, const added_set *set, const char *text,
                         size_t len, segs *out) {
  size_t start_offset = 0, pos = 0;
  while (set->n && pos < len) {
    unsigned char c = (unsigned char)text[pos];
    const added_tok *hit = NULL;
    for (int k = 0; k < set->nfirst[c]; k++) {
      const added_tok *a = &set->tok[set->first[c][k]];
      if (a->len <= len - pos && memcmp(text + pos, a->s, a->len) == 0) {
        hit = a;
        break;
      }
    }
    if (!hit) {
      pos++;
      continue;
    }
    size_t start = pos, stop = pos + hit->len;
    pos = stop;             /* the automaton goes on after the match, used or not */
    if (hit->single_word) { /* the characters before and after must not be alphanumeric */
      size_t i = start;
      while (i > 0 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--;
      int word_before = start > 0 && is_alnum_at_(t, s, text, len, i > 0 ? i - 1 : 0);
      int word_after = stop < len && is_alnum_at_(t, s, text, len, stop);
      if (word_before || word_after) continue;
    }
    if (hit->lstrip) { /* take in the white space before it, down to the last match */
      size_t ns = start;
      while (ns > 0) {
        size_t i = ns - 1;
        while (i > 0 && ((unsigned char)text[i] & 0xC0) == 0x80) i--;
        utf8proc_int32_t cp = -1;
        utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(ns - i), &cp);
        if (!is_white_space_(cp)) break;
        ns = i;
      }
      start = ns > start_offset ? ns : start_offset;
    }
    if (hit->rstrip) {
      while (stop < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + stop,
                                              (utf8proc_ssize_t)(len - stop), &cp);
        if (k <= 0 || !is_white_space_(cp)) break;
        stop += (size_t)k;
      }
    }
    if (start_offset < start) segs_push_(out, start_offset, start - start_offset, -1);
    segs_push_(out, start, stop - start, hit->id);
    start_offset = stop;
  }
  if (start_offset < len) segs_push_(out, start_offset, len - start_offset, -1);
}

/* one Split step over every piece in `in` (spans of s->work), into `out` */
static int split_pieces_(const pre_step *st, tok_scratch *s, const spans *in, spans *out) {
  out->n = 0;
  for (size_t p = 0; p < in->n; p++) {
    size_t base = in->v[p].off, len = in->v[p].len;
    const char *subj = s->work.p + base;
    s->rx.n = 0;
    size_t prev = 0, at = 0;
    while (at < len) {
      int rc = pcre2_match(st->re, (PCRE2_SPTR)subj, len, at, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return st_fail(ST_ERUNTIME, "pre-tokenizer regex failed on a piece of %zu bytes: %s", len,
                       (const char *)msg);
      }
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
      size_t ms = ov[0], me = ov[1];
      if (me <= ms) return st_fail(ST_ERUNTIME, "pre-tokenizer regex made an empty match");
      if (ms > prev) segs_push_(&s->rx, prev, ms - prev, 0);
      segs_push_(&s->rx, ms, me - ms, 1);
      prev = at = me;
    }
    if (prev < len) segs_push_(&s->rx, prev, len - prev, 0);
    seg *g = s->rx.v;
    size_t n = s->rx.n;
    if (st->invert)
      for (size_t i = 0; i < n; i++) g[i].match = !g[i].match;
    size_t first = out->n;
    int prev_match = 0, have_prev = 0;
    switch (st->behavior) {
      case SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) spans_push_(out, base + g[i].off, g[i].len);
        break;
      case SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
          if (!g[i].match) spans_push_(out, base + g[i].off, g[i].len);
        break;
      case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
          if (g[i].match && !prev_match && out->n > first)
            out->v[out->n - 1].len += g[i].len;
          else
            spans_push_(out, base + g[i].off, g[i].len);
          prev_match = g[i].match;
        }
        break;
      case SPLIT_MERGED_NEXT: /* a match joins the piece after it */
        for (size_t j = n; j-- > 0;) {
          if (g[j].match && !prev_match && out->n > first) {
            out->v[out->n - 1].off -= g[j].len;
            out->v[out->n - 1].len += g[j].len;
          } else {
            spans_push_(out, base + g[j].off, g[j].len);
          }
          prev_match = g[j].match;
        }
        for (size_t i = first, j = out->n; i + 1 < j; i++, j--) {
          span tmp = out->v[i];
          out->v[i] = out->v[j - 1];
          out->v[j - 1] = tmp;
        }
        break;
      case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
          if (have_prev && g[i].match == prev_match && out->n > first)
            out->v[out->n - 1].len += g[i].len;
          else
            spans_push_(out, base + g[i].off, g[i].len);
          prev_match = g[i].match;
          have_prev = 1;
        }
        break;
    }
  }
  return 0;
}

static void heap_push_(tok_scratch *s, size_t *n, merge_cand c) {
  if (*n == s->heap_cap) {
    s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 256;
    s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
  }
  merge_cand *h = s->heap;
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p].rank < c.rank || (h[p].rank == c.rank && h[p].pos <= c.pos)) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = c;
}

static merge_cand heap_pop_(tok_scratch *s, size_t *n) {
  merge_cand *h = s->heap, top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const merge_cand *best = &last;
    if (l < *n && (h[l].rank < best->rank || (h[l].rank == best->rank && h[l].pos < best->pos)))
      m = l, best = &h[l];
    if (r < *n && (h[r].rank < best->rank || (h[r].rank == best->rank && h[r].pos < best->pos)))
      m = r, best = &h[r];
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  if (*n) h[i] = last;
  return top;
}

/* byte-level BPE of one piece, as tokenizers' Word::merge_all */
static void bpe_(const tokenizer *t, tok_scratch *s, const char *w, size_t len, tok_ids *out) {
  if (t->ignore_merges) {
    int32_t id = strmap_get_(t->sp ? &t->vocab_str : &t->vocab_bytes, w, len);
    if (id >= 0) {
      tok_ids_push(out, id);
      return;
    }
  }
  uint64_t h = 0;
  cache_slot *slot = NULL;
  if (len <= CACHE_MAX_BYTES) {
    h = hash_bytes_(w, len);
    slot = &s->cache[h & (CACHE_SLOTS - 1)];
    if (slot->blob && slot->h == h && slot->len == len &&
        memcmp(slot->blob + slot->nids * sizeof(int32_t), w, len) == 0) {
      const int32_t *ids = (const int32_t *)(void *)slot->blob;
      for (uint32_t i = 0; i < slot->nids; i++) tok_ids_push(out, ids[i]);
      return;
    }
  }
  if (len > s->sym_cap) {
    s->sym_cap = 2 * len;
    s->sym = xrealloc(s->sym, s->sym_cap * sizeof *s->sym);
    s->prev = xrealloc(s->prev, s->sym_cap * sizeof *s->prev);
    s->next = xrealloc(s->next, s->sym_cap * sizeof *s->next);
    s->alive = xrealloc(s->alive, s->sym_cap);
  }
  size_t n = 0;
  int unk_open = 0;  /* the last symbol is an unk that fuse_unk may extend */
  if (t->sp) {       /* per character, as tokenizers' BPE::merge_word */
    int pending = 0; /* an unk not yet added (tokenizers adds it at the next known char) */
    for (size_t i = 0; i < len;) {
      size_t k = 1;
      while (i + k < len && ((unsigned char)w[i + k] & 0xC0) == 0x80) k++;
      int32_t id = strmap_get_(&t->vocab_str, w + i, k);
      if (id >= 0) {
        if (pending) s->sym[n++] = t->unk_id;
        pending = 0;
        s->sym[n++] = id;
      } else {
        int all = 1;
        for (size_t j = 0; j < k; j++) all &= t->fallback_id[(unsigned char)w[i + j]] >= 0;
        if (all) { /* the bytes (a pending unk stays pending, as there) */
          for (size_t j = 0; j < k; j++) s->sym[n++] = t->fallback_id[(unsigned char)w[i + j]];
        } else if (t->unk_id >= 0) {
          if (pending && !t->fuse_unk) s->sym[n++] = t->unk_id;
          pending = 1;
        }
      }
      i += k;
    }
    if (pending) s->sym[n++] = t->unk_id;
  }
  for (size_t i = 0; i < len && !t->sp; i++) {
    int32_t id = t->byte_id[(unsigned char)w[i]];
    if (id < 0) {
      if (t->unk_id < 0) continue; /* no unk token: the byte is dropped, as there */
      if (t->fuse_unk && unk_open) continue;
      id = t->unk_id;
      unk_open = 1;
    } else {
      unk_open = 0;
    }
    s->sym[n] = id;
    n++;
  }
  for (size_t i = 0; i < n; i++) {
    s->prev[i] = (int32_t)i - 1;
    s->next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    s->alive[i] = 1;
  }
  size_t hn = 0;
  uint32_t rank;
  int32_t nid;
  for (size_t i = 0; i + 1 < n; i++)
    if (pairmap_get_(&t->merges, s->sym[i], s->sym[i + 1], &rank, &nid))
      heap_push_(s, &hn, (merge_cand){rank, (uint32_t)i, nid});
  while (hn) {
    merge_cand top = heap_pop_(s, &hn);
    size_t p = top.pos;
    if (!s->alive[p] || s->next[p] < 0) continue;
    size_t q = (size_t)s->next[p];
    if (!pairmap_get_(&t->merges, s->sym[p], s->sym[q], &rank, &nid) || nid != top.id) continue;
    s->sym[p] = top.id;
    s->alive[q] = 0;
    s->next[p] = s->next[q];
    if (s->next[q] >= 0) s->prev[s->next[q]] = (int32_t)p;
    if (s->prev[p] >= 0 && pairmap_get_(&t->merges, s->sym[s->prev[p]], s->sym[p], &rank, &nid))
      heap_push_(s, &hn, (merge_cand){rank, (uint32_t)s->prev[p], nid});
    if (s->next[p] >= 0 && pairmap_get_(&t->merges, s->sym[p], s->sym[s->next[p]], &rank, &nid))
      heap_push_(s, &hn, (merge_cand){rank, (uint32_t)p, nid});
  }
  size_t first = out->n;
  for (size_t i = 0; i < n; i++)
    if (s->alive[i]) tok_ids_push(out, s->sym[i]);
  if (slot) {
    uint32_t nids = (uint32_t)(out->n - first);
    free(slot->blob);
    slot->blob = xmalloc(nids * sizeof(int32_t) + len);
    memcpy(slot->blob, out->v + first, nids * sizeof(int32_t));
    memcpy(slot->blob + nids * sizeof(int32_t), w, len);
    slot->h = h;
    slot->len = (uint32_t)len;
    slot->nids = nids;
  }
}

/* pre-tokenize text (normalized, no added tokens left) and BPE every piece */
static int pre_and_bpe_(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        int at_start, tok_ids *out) {
  if (!len) return 0;
  s->work.n = 0;
  bbuf_append_(&s->work, text, len);
  spans *cur = &s->a, *nxt = &s->b;
  cur->n = 0;
  spans_push_(cur, 0, len);
  for (int k = 0; k < t->n_steps; k++) {
    const pre_step *st = &t->steps[k];
    if (st->meta) { /* Metaspace (the first step: one piece): spaces -> replacement, prepend */
      size_t rl = strlen(st->rep), l0 = cur->v[0].len;
      int pre = (st->meta == 1 || (st->meta == 2 && at_start)) &&
                !(l0 && s->work.p[cur->v[0].off] == ' ') && /* starts with it once replaced */
                !(l0 >= rl && memcmp(s->work.p + cur->v[0].off, st->rep, rl) == 0);
      bbuf_reserve_(&s->work, (l0 + 1) * rl + 1);
      const char *src = s->work.p + cur->v[0].off;
      char *dst = s->work.p + s->work.n;
      size_t m = 0;
      if (pre) memcpy(dst, st->rep, rl), m = rl;
      for (size_t i = 0; i < l0; i++)
        if (src[i] == ' ')
          memcpy(dst + m, st->rep, rl), m += rl;
        else
          dst[m++] = src[i];
      cur->v[0].off = s->work.n;
      cur->v[0].len = m;
      s->work.n += m;
      continue;
    }
    if (st->prefix_space)
      for (size_t p = 0; p < cur->n; p++) {
        if (s->work.p[cur->v[p].off] == ' ') continue;
        bbuf_reserve_(&s->work, cur->v[p].len + 1);
        size_t at = s->work.n;
        s->work.p[at] = ' ';
        memcpy(s->work.p + at + 1, s->work.p + cur->v[p].off, cur->v[p].len);
        s->work.n += cur->v[p].len + 1;
        cur->v[p].off = at;
        cur->v[p].len += 1;
      }
    if (!st->re) continue;
    int rc = split_pieces_(st, s, cur, nxt);
    if (rc) return rc;
    spans *tmp = cur;
    cur = nxt;
    nxt = tmp;
  }
  for (size_t p = 0; p < cur->n; p++)
    if (cur->v[p].len) bpe_(t, s, s->work.p + cur->v[p].off, cur->v[p].len, out);
  return 0;
}

int tokenizer_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                     int add_special, tok_ids *out) {
  int rc = utf8_check_(text, len);
  if (rc) return rc;
  if (add_special)
    for (int i = 0; i < t->n_post_pre; i++) tok_ids_push(out, t->post_pre[i]);
  s->top.n = 0;
  split_added_(t, s, &t->raw, text, len, &s->top);
  for (size_t i = 0; i < s->top.n && !rc; i++) {
    seg g = s->top.v[i];
    if (g.match >= 0) {
      tok_ids_push(out, g.match);
      continue;
    }
    const char *piece = text + g.off;
    size_t plen = g.len;
    char *norm = NULL;
    if (t->n_norm) {
      if ((rc = normalize_(t, piece, plen, &norm, &plen))) break;
      piece = norm;
    }
    s->sub.n = 0;
    split_added_(t, s, &t->normalized, piece, plen, &s->sub);
    for (size_t j = 0; j < s->sub.n && !rc; j++) {
      seg h = s->sub.v[j];
      if (h.match >= 0)
        tok_ids_push(out, h.match);
      else
        rc = pre_and_bpe_(t, s, piece + h.off, h.len, g.off == 0 && h.off == 0, out);
    }
    free(norm);
  }
  if (!rc && add_special)
    for (int i = 0; i < t->n_post_suf; i++) tok_ids_push(out, t->post_suf[i]);
  return rc;
}
