/* unit.tokenizer: byte-level BPE from tokenizer.json against Hugging Face `tokenizers`
 * (tests/fixtures/tokenizer, made by make_fixtures.py there): the ids of every corpus
 * document (1.2 MB of real and generated text) for five tokenizer families, and the
 * errors for bad files and bad text. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer.h"
#include "test.h"
#include "util/err.h"
#include "util/hash.h"

static const char *fixtures_(void) {
  const char *f = getenv("FIXTURES");
  return f ? f : SPECTRAIN_SOURCE_DIR "/tests/fixtures";
}

static const char *tmp_(void) {
  const char *t = getenv("TEST_TMP");
  return t ? t : "/tmp";
}

/* the whole output of a command (gzip -dc FILE) */
static char *popen_read_(const char *cmd, size_t *len) {
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  size_t cap = 1 << 20, n = 0;
  char *buf = malloc(cap);
  size_t k;
  while ((k = fread(buf + n, 1, cap - n, p)) > 0) {
    n += k;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  if (pclose(p) != 0) {
    free(buf);
    return NULL;
  }
  buf[n < cap ? n : cap - 1] = '\0';
  *len = n;
  return buf;
}

typedef struct {
  char **text;
  size_t *len;
  char **source;
  int n;
} corpus;

static int load_corpus_(corpus *c) {
  char cmd[4096];
  size_t len;
  snprintf(cmd, sizeof cmd, "gzip -dc '%s/tokenizer/corpus.jsonl.gz'", fixtures_());
  char *all = popen_read_(cmd, &len);
  if (!all) return -1;
  memset(c, 0, sizeof *c);
  for (char *line = all; *line;) {
    char *end = strchr(line, '\n');
    if (!end) break;
    json_error_t e;
    json_t *o = json_loadb(line, (size_t)(end - line), 0, &e);
    if (!o) {
      fprintf(stderr, "corpus line %d: %s\n", c->n + 1, e.text);
      free(all);
      return -1;
    }
    c->text = realloc(c->text, (size_t)(c->n + 1) * sizeof *c->text);
    c->len = realloc(c->len, (size_t)(c->n + 1) * sizeof *c->len);
    c->source = realloc(c->source, (size_t)(c->n + 1) * sizeof *c->source);
    json_t *t = json_object_get(o, "text");
    c->len[c->n] = json_string_length(t);
    c->text[c->n] = malloc(c->len[c->n] + 1);
    memcpy(c->text[c->n], json_string_value(t), c->len[c->n] + 1);
    c->source[c->n] = strdup(json_string_value(json_object_get(o, "source")));
    c->n++;
    json_decref(o);
    line = end + 1;
  }
  free(all);
  return 0;
}

static uint64_t ids_hash_(const tok_ids *ids) {
  uint64_t h = HASH64_INIT;
  for (size_t i = 0; i < ids->n; i++) {
    uint32_t v = (uint32_t)ids->v[i];
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    h = hash64_bytes(h, b, 4);
  }
  return h;
}

/* tokenizer.json of a family (smollm2's decompressed into TEST_TMP) */
static void family_path_(const char *fam, char *out, size_t n) {
  snprintf(out, n, "%s/tokenizer/%s/tokenizer.json", fixtures_(), fam);
  FILE *f = fopen(out, "r");
  if (f) {
    fclose(f);
    return;
  }
  char cmd[4096];
  snprintf(out, n, "%s/tokenizer-%s.json", tmp_(), fam);
  snprintf(cmd, sizeof cmd, "gzip -dc '%s/tokenizer/%s/tokenizer.json.gz' > '%s'", fixtures_(), fam,
           out);
  if (system(cmd) != 0) fprintf(stderr, "cannot decompress %s's tokenizer.json.gz\n", fam);
}

static void check_family_(const char *fam, const corpus *c) {
  char path[4096], exp_path[4096];
  family_path_(fam, path, sizeof path);
  tokenizer *t = NULL;
  int rc = tokenizer_load(path, &t);
  CHECK_MSG(rc == 0, "%s: %s", fam, st_errmsg());
  if (rc) return;
  snprintf(exp_path, sizeof exp_path, "%s/tokenizer/expected/%s.ids", fixtures_(), fam);
  FILE *f = fopen(exp_path, "r");
  CHECK_MSG(f != NULL, "cannot open %s", exp_path);
  if (!f) {
    tokenizer_free(t);
    return;
  }
  char line[256];
  if (!fgets(line, sizeof line, f)) line[0] = '\0'; /* the comment line */
  tok_scratch *s = tok_scratch_new(t);
  tok_ids ids = {0};
  int bad = 0, n = 0;
  size_t tokens = 0;
  for (int d = 0; d < c->n && fgets(line, sizeof line, f); d++, n++) {
    unsigned long long want_n, want_h;
    CHECK(sscanf(line, "%llu %llx", &want_n, &want_h) == 2);
    ids.n = 0;
    rc = tokenizer_encode(t, s, c->text[d], c->len[d], 1, &ids);
    CHECK_MSG(rc == 0, "%s doc %d: %s", fam, d, st_errmsg());
    tokens += ids.n;
    if (ids.n != want_n || ids_hash_(&ids) != want_h) {
      if (bad++ < 5)
        fprintf(stderr,
                "%s: corpus document %d (%s): %zu ids, Hugging Face has %llu (or other ids); "
                "see make_fixtures.py --show %s %d\n",
                fam, d, c->source[d], ids.n, want_n, fam, d);
    }
  }
  fclose(f);
  CHECK_MSG(n == c->n, "%s: %d expected lines for %d documents", fam, n, c->n);
  CHECK_MSG(bad == 0, "%s: %d of %d documents differ from Hugging Face", fam, bad, c->n);
  printf("%s: %d documents, %zu tokens, identical to tokenizers: %s\n", fam, c->n, tokens,
         bad ? "NO" : "yes");
  tok_ids_free(&ids);
  tok_scratch_free(s);
  tokenizer_free(t);
}

/* decode(encode(x)) == x where there is no normalizer (GPT-2 family) */
static void check_roundtrip_(const corpus *c) {
  char path[4096];
  family_path_("gpt2", path, sizeof path);
  tokenizer *t = NULL;
  if (tokenizer_load(path, &t)) return;
  tok_scratch *s = tok_scratch_new(t);
  tok_ids ids = {0};
  int bad = 0;
  for (int d = 0; d < c->n; d++) {
    ids.n = 0;
    tokenizer_encode(t, s, c->text[d], c->len[d], 0, &ids);
    size_t at = 0, len;
    int ok = 1;
    for (size_t i = 0; i < ids.n && ok; i++) {
      const char *b = tokenizer_id_bytes(t, ids.v[i], &len);
      ok = b && at + len <= c->len[d] && memcmp(c->text[d] + at, b, len) == 0;
      at += len;
    }
    bad += !(ok && at == c->len[d]);
  }
  CHECK_MSG(bad == 0, "gpt2: %d documents do not decode back to their text", bad);
  tok_ids_free(&ids);
  tok_scratch_free(s);
  tokenizer_free(t);
}

static void write_file_(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* tokenizer.json with the gpt2 fixture's model and `pre` as pre_tokenizer and so on */
static int load_variant_(const char *base, const char *name, const char *key,
                         const char *value_json, tokenizer **t, char *path, size_t n) {
  char src[4096];
  family_path_(base, src, sizeof src);
  json_error_t e;
  json_t *root = json_load_file(src, 0, &e);
  json_t *v = json_loads(value_json, JSON_DECODE_ANY, &e);
  if (!root || !v) {
    fprintf(stderr, "bad variant %s: %s\n", name, e.text);
    return -1;
  }
  if (strncmp(key, "model.", 6) == 0)
    json_object_set_new(json_object_get(root, "model"), key + 6, v);
  else
    json_object_set_new(root, key, v);
  snprintf(path, n, "%s/tokenizer-%s.json", tmp_(), name);
  json_dump_file(root, path, 0);
  json_decref(root);
  return tokenizer_load(path, t);
}

static void check_errors_(void) {
  char path[4096];
  tokenizer *t = NULL;
  /* malformed JSON */
  snprintf(path, sizeof path, "%s/tokenizer-truncated.json", tmp_());
  write_file_(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0");
  CHECK_EQ_INT(tokenizer_load(path, &t), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "tokenizer-truncated.json: line 1");
  CHECK_CONTAINS(st_errmsg(), "not valid JSON");
  CHECK(t == NULL);
  snprintf(path, sizeof path, "%s/no-such-dir/tokenizer.json", tmp_());
  CHECK_EQ_INT(tokenizer_load(path, &t), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "cannot read");

  static const struct {
    const char *name, *key, *value, *msg1, *msg2;
  } cases[] = {
      {"metaspace", "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"_\"}",
       "pre_tokenizer: pre-tokenizer 'Metaspace' needs model.byte_fallback true", "Llama 2"},
      {"seq", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": "
       "\"Whitespace\"}]}",
       "pre_tokenizer.pretokenizers[1]", "after ByteLevel"},
      {"nobytelevel", "pre_tokenizer", "{\"type\": \"Digits\", \"individual_digits\": true}",
       "pre_tokenizer: has no ByteLevel step", ""},
      {"nopre", "pre_tokenizer", "null", "pre_tokenizer: missing", ""},
      {"wregex", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
       "{\"Regex\": \"\\\\w+\"}, "
       "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\"}]}",
       "pre_tokenizer.pretokenizers[0].pattern", "uses \\w"},
      {"badregex", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
       "{\"Regex\": \"(ab\"}, "
       "\"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
       "does not compile", "(ab"},
      {"emptyregex", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
       "{\"Regex\": \"a*\"}, "
       "\"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
       "can match the empty string", ""},
      {"behavior", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
       "{\"String\": \"x\"}, "
       "\"behavior\": \"Sideways\"}, {\"type\": \"ByteLevel\"}]}",
       "\"behavior\" must be", "'Sideways'"},
      {"normalizer", "normalizer", "{\"type\": \"Lowercase\"}",
       "normalizer: normalizer 'Lowercase'", ""},
      {"post", "post_processor", "{\"type\": \"Nonsense\"}", "post-processor 'Nonsense'", ""},
      {"template", "post_processor",
       "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<x>\", "
       "\"type_id\": 0}}, "
       "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}",
       "special token '<x>' is not in post_processor.special_tokens", ""},
      {"unigram", "model.type", "\"Unigram\"", "model.type: expected 'BPE', found 'Unigram'", ""},
      {"fallback", "model.byte_fallback", "true", "model.byte_fallback",
       "together with a ByteLevel"},
      {"dropout", "model.dropout", "0.1", "model.dropout", "random"},
      {"suffix", "model.end_of_word_suffix", "\"</w>\"", "end_of_word_suffix '</w>'", ""},
      {"unk", "model.unk_token", "\"<nope>\"", "model.unk_token: '<nope>' is not in model.vocab",
       ""},
      {"merge", "model.merges", "[\"a b\", \"Ġ zzzq\"]", "model.merges[1]",
       "'zzzq': the right token is not"},
      {"merge3", "model.merges", "[\"a b c\"]", "model.merges[0]", "two tokens, one space"},
      {"vocab", "model.vocab", "{\"a\": \"zero\"}", "model.vocab: 'a': expected an id", ""},
      {"added", "added_tokens", "[{\"id\": 3, \"content\": 5}]", "added_tokens[0]", "expected {"},
      /* sentencepiece-style (byte_fallback): variants of the llama2 fixture */
      {"sp_bytelevel", "pre_tokenizer", "{\"type\": \"ByteLevel\"}", "model.byte_fallback",
       "together with a ByteLevel"},
      {"sp_regex", "normalizer",
       "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
       "\"x\"}, {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"x\"}]}",
       "normalizer.normalizers[1].pattern", "not implement Replace with a regex"},
      {"sp_prepend", "normalizer", "{\"type\": \"Prepend\", \"prepend\": 3}",
       "normalizer.prepend: expected a string", ""},
      {"sp_lower", "normalizer", "{\"type\": \"Lowercase\"}", "normalizer 'Lowercase'", "Prepend"},
      {"sp_scheme", "pre_tokenizer",
       "{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"sometimes\"}",
       "pre_tokenizer.prepend_scheme", "'sometimes'"},
      {"sp_rep", "pre_tokenizer", "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}",
       "pre_tokenizer.replacement: expected one character", ""},
      {"sp_after", "pre_tokenizer",
       "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}, {\"type\": "
       "\"Metaspace\", \"replacement\": \"_\"}]}",
       "pre_tokenizer.pretokenizers[1]", "needs it first"},
  };
  const size_t n_gpt2 = sizeof cases / sizeof *cases - 7; /* the last 7: llama2's */
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    t = NULL;
    int rc = load_variant_(i < n_gpt2 ? "gpt2" : "llama2", cases[i].name, cases[i].key,
                           cases[i].value, &t, path, sizeof path);
    CHECK_MSG(rc == ST_EINPUT, "%s: rc %d", cases[i].name, rc);
    CHECK_CONTAINS(st_errmsg(), path);
    CHECK_CONTAINS(st_errmsg(), cases[i].msg1);
    CHECK_CONTAINS(st_errmsg(), cases[i].msg2);
    tokenizer_free(t);
  }

  /* bad text: invalid UTF-8 names the byte */
  family_path_("llama3", path, sizeof path);
  if (tokenizer_load(path, &t)) return;
  tok_scratch *s = tok_scratch_new(t);
  tok_ids ids = {0};
  static const struct {
    const char *text;
    size_t at;
  } bad[] = {{"ok \xff", 3},
             {"caf\xc3", 3},
             {"\xed\xa0\x80 surrogate", 0},
             {"ab\xc0\xafoverlong", 2},
             {"x\xf4\x90\x80\x80 > U+10FFFF", 1}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_EQ_INT(tokenizer_encode(t, s, bad[i].text, strlen(bad[i].text), 1, &ids), ST_EINPUT);
    char want[64];
    snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
    CHECK_CONTAINS(st_errmsg(), want);
  }
  /* long runs: one whitespace piece of 1 MB, one letter piece of 256 KiB, a NUL byte */
  size_t big = 1 << 20;
  char *text = malloc(big);
  memset(text, ' ', big);
  ids.n = 0;
  CHECK_MSG(tokenizer_encode(t, s, text, big, 0, &ids) == 0, "%s", st_errmsg());
  CHECK(ids.n > 0 && ids.n < big);
  memset(text, 'a', big / 4);
  ids.n = 0;
  CHECK_MSG(tokenizer_encode(t, s, text, big / 4, 0, &ids) == 0, "%s", st_errmsg());
  CHECK(ids.n > 0 && ids.n <= big / 4);
  ids.n = 0;
  CHECK_MSG(tokenizer_encode(t, s, "a\0b", 3, 0, &ids) == 0, "%s", st_errmsg());
  CHECK_EQ_INT(ids.n, 3);
  free(text);
  /* token lookups */
  CHECK(tokenizer_token_id(t, "<|eot_id|>") >= 4000);
  CHECK(tokenizer_token_id(t, "no such token") == -1);
  CHECK(tokenizer_vocab_size(t) == 4011);
  tok_ids_free(&ids);
  tok_scratch_free(s);
  tokenizer_free(t);
}

int main(void) {
  corpus c;
  if (load_corpus_(&c) != 0) {
    fprintf(stderr, "cannot read the corpus (gzip -dc %s/tokenizer/corpus.jsonl.gz)\n",
            fixtures_());
    return 1;
  }
  size_t bytes = 0;
  for (int d = 0; d < c.n; d++) bytes += c.len[d];
  printf("corpus: %d documents, %zu bytes\n", c.n, bytes);
  CHECK(bytes > 1000000);
  static const char *const fams[] = {"gpt2",    "llama3", "qwen2",   "options",
                                     "smollm2", "llama2", "mistral", "spsplit", "mistral_v01"};
  for (size_t i = 0; i < sizeof fams / sizeof *fams; i++) check_family_(fams[i], &c);
  check_roundtrip_(&c);
  check_errors_();
  for (int d = 0; d < c.n; d++) {
    free(c.text[d]);
    free(c.source[d]);
  }
  free(c.text);
  free(c.len);
  free(c.source);
  return test_done();
}
