/* SFT records -> ids and labels, as scripts/prepare_sft_jsonl.py (see sft.h). */
#include "io/sft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/err.h"

static const char *kind_(const json_t *v) {
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

static int exists_(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* a special token in tokenizer_config.json: "..." or {"content": "...", ...}; NULL if none */
static int config_token_(const char *path, const json_t *cfg, const char *key, char **out) {
  json_t *v = json_object_get(cfg, key);
  *out = NULL;
  if (!v || json_is_null(v)) return 0;
  if (json_is_object(v)) v = json_object_get(v, "content");
  if (!json_is_string(v))
    return st_fail(ST_EINPUT, "%s: %s: expected a string or {\"content\": string}, found %s", path,
                   key, kind_(v));
  *out = xstrdup(json_string_value(v));
  return 0;
}

static char *read_text_(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, k;
  char *buf = xmalloc(cap);
  while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += k;
    if (n + 1 == cap) buf = xrealloc(buf, cap *= 2);
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

int sft_tokenizer_open(const char *dir, sft_tokenizer *t) {
  memset(t, 0, sizeof *t);
  t->eos_id = -1;
  t->dir = xstrdup(dir);
  char *path = xasprintf("%s/tokenizer.json", dir);
  int rc = 0;
  if (!exists_(path))
    rc = st_fail(ST_EINPUT,
                 "%s: no tokenizer.json (spectrain reads Hugging Face's fast tokenizer "
                 "file; vocab.json + merges.txt alone are not enough)",
                 dir);
  if (!rc) rc = tokenizer_load(path, &t->tok);
  free(path);
  path = xasprintf("%s/tokenizer_config.json", dir);
  json_t *cfg = NULL;
  if (!rc && exists_(path)) {
    json_error_t e;
    /* integers as reals: transformers writes model_max_length = int(1e30), beyond int64 (no
     * key read here is an integer) */
    cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, &e);
    if (!cfg)
      rc = st_fail(ST_EINPUT, "%s: line %d, column %d: not valid JSON: %s", path, e.line, e.column,
                   e.text);
    else if (!json_is_object(cfg))
      rc = st_fail(ST_EINPUT, "%s: expected an object, found %s", path, kind_(cfg));
  }
  char *eos = NULL;
  if (!rc && cfg) rc = config_token_(path, cfg, "bos_token", &t->bos);
  if (!rc && cfg) rc = config_token_(path, cfg, "eos_token", &eos);
  if (!rc && eos) {
    t->eos_id = tokenizer_token_id(t->tok, eos);
    if (t->eos_id < 0)
      rc = st_fail(ST_EINPUT, "%s: eos_token '%s' is not a token of %s/tokenizer.json", path, eos,
                   dir);
  }
  free(eos);
  if (!rc && cfg) { /* chat_template: a string, or named templates of which "default" is used */
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_array(ct)) {
      json_t *found = NULL, *e;
      size_t i;
      json_array_foreach(
          ct, i, e) if (json_is_string(json_object_get(e, "name")) &&
                        strcmp(json_string_value(json_object_get(e, "name")), "default") == 0)
          found = json_object_get(e, "template");
      if (!found)
        rc = st_fail(ST_EINPUT, "%s: chat_template: named templates without one named 'default'",
                     path);
      ct = found;
    }
    if (!rc && ct && !json_is_null(ct)) {
      if (!json_is_string(ct)) {
        rc = st_fail(ST_EINPUT, "%s: chat_template: expected a string, found %s", path, kind_(ct));
      } else {
        t->template_text = xstrdup(json_string_value(ct));
        t->template_source = xstrdup(path);
      }
    }
  }
  json_decref(cfg);
  free(path);
  path = xasprintf("%s/chat_template.jinja", dir);
  if (!rc && exists_(path)) { /* transformers: this file takes priority over the config */
    free(t->template_text);
    free(t->template_source);
    t->template_text = read_text_(path);
    t->template_source = xstrdup(path);
    if (!t->template_text) rc = st_fail(ST_EINPUT, "%s: cannot read", path);
  }
  free(path);
  if (!rc && t->template_text) t->template = chat_template_find(t->template_text);
  if (rc) sft_tokenizer_close(t);
  return rc;
}

void sft_tokenizer_close(sft_tokenizer *t) {
  tokenizer_free(t->tok);
  free(t->dir);
  free(t->template_text);
  free(t->template_source);
  free(t->bos);
  memset(t, 0, sizeof *t);
  t->eos_id = -1;
}

/* the chat template, or the error that says why there is none to use */
static int template_(const sft_tokenizer *t, const char *what) {
  if (t->template) return 0;
  if (!t->template_text)
    return st_fail(ST_EINPUT,
                   "%s are rendered with the chat template, and %s has none "
                   "(tokenizer_config.json: chat_template, or chat_template.jinja)",
                   what, t->dir);
  char desc[2048];
  chat_template_describe(t->template_text, desc, sizeof desc);
  return st_fail(ST_EINPUT, "%s are rendered with the chat template, and %s holds %s", what,
                 t->template_source, desc);
}

static int render_ids_(const sft_tokenizer *t, tok_scratch *s, const chat_msg *m, int n, int gen,
                       tok_ids *out) {
  char *text;
  size_t len;
  int rc = chat_template_render(t->template, m, n, gen, t->bos, NULL, &text, &len);
  if (!rc) rc = tokenizer_encode(t->tok, s, text, len, 0, out);
  free(text);
  return rc;
}

static int str_(const json_t *o, const char *key, const char *where, const char **s, size_t *len) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v))
    return st_fail(ST_EINPUT, "%s%s: expected a string, found %s", where, key, kind_(v));
  *s = json_string_value(v);
  *len = json_string_length(v);
  return 0;
}

static void fill_ignore_(tok_ids *labels, size_t n) {
  for (size_t i = 0; i < n; i++) tok_ids_push(labels, SFT_IGNORE);
}

static int prompt_completion_(const sft_tokenizer *t, tok_scratch *s, const json_t *rec, int chat,
                              tok_ids *ids, tok_ids *labels) {
  const char *p, *c;
  size_t lp, lc;
  int rc = str_(rec, "prompt", "", &p, &lp);
  if (!rc) rc = str_(rec, "completion", "", &c, &lc);
  if (rc) return rc;
  if (chat) {
    if ((rc = template_(t, "prompt/completion records (without --no-chat)"))) return rc;
    chat_msg m[2] = {{"user", p, lp, 0, 0}, {"assistant", c, lc, 0, 0}};
    tok_ids prompt = {0};
    rc = render_ids_(t, s, m, 1, 1, &prompt);
    if (!rc) rc = render_ids_(t, s, m, 2, 0, ids);
    if (!rc && (prompt.n > ids->n || memcmp(prompt.v, ids->v, prompt.n * sizeof *prompt.v) != 0))
      rc = st_fail(ST_EINPUT,
                   "the chat template renders the prompt differently inside the "
                   "conversation (its tokens are not a prefix of the conversation's, as when the "
                   "completion starts with white space); use --no-chat");
    if (!rc) {
      fill_ignore_(labels, prompt.n);
      for (size_t i = prompt.n; i < ids->n; i++) tok_ids_push(labels, ids->v[i]);
    }
    tok_ids_free(&prompt);
    return rc;
  }
  if ((rc = tokenizer_encode(t->tok, s, p, lp, 1, ids))) return rc;
  size_t np = ids->n;
  if ((rc = tokenizer_encode(t->tok, s, c, lc, 0, ids))) return rc;
  if (t->eos_id >= 0) tok_ids_push(ids, t->eos_id);
  fill_ignore_(labels, np);
  for (size_t i = np; i < ids->n; i++) tok_ids_push(labels, ids->v[i]);
  return 0;
}

static int messages_(const sft_tokenizer *t, tok_scratch *s, const json_t *list, tok_ids *ids,
                     tok_ids *labels, int *misaligned) {
  if (!json_is_array(list))
    return st_fail(ST_EINPUT, "messages: expected an array of {\"role\", \"content\"}, found %s",
                   kind_(list));
  int rc = template_(t, "messages records");
  if (rc) return rc;
  int n = (int)json_array_size(list);
  chat_msg *m = xcalloc((size_t)n + 1, sizeof *m);
  for (int i = 0; i < n && !rc; i++) {
    json_t *o = json_array_get(list, (size_t)i);
    char where[64];
    size_t len;
    snprintf(where, sizeof where, "messages[%d].", i);
    if (!json_is_object(o)) {
      rc = st_fail(ST_EINPUT, "messages[%d]: expected an object, found %s", i, kind_(o));
      break;
    }
    if ((rc = str_(o, "role", where, &m[i].role, &len))) break;
    if (strlen(m[i].role) != len)
      rc = st_fail(ST_EINPUT, "messages[%d].role: holds a NUL character", i);
    if (!rc) rc = str_(o, "content", where, &m[i].content, &m[i].content_len);
    m[i].has_tool_calls = json_object_get(o, "tool_calls") != NULL;
    m[i].has_reasoning_content = json_object_get(o, "reasoning_content") != NULL;
  }
  if (!rc) rc = render_ids_(t, s, m, n, 0, ids);
  if (!rc) fill_ignore_(labels, ids->n);
  tok_ids part = {0};
  for (int i = 0; i < n && !rc; i++) {
    if (strcmp(m[i].role, "assistant") != 0) continue;
    part.n = 0;
    rc = render_ids_(t, s, m, i, 1, &part);
    size_t start = part.n;
    part.n = 0;
    if (!rc) rc = render_ids_(t, s, m, i + 1, 0, &part);
    if (!rc && (part.n > ids->n || memcmp(part.v, ids->v, part.n * sizeof *part.v) != 0))
      *misaligned = 1; /* the conversation up to this turn is not a prefix of the whole */
    size_t end = part.n < ids->n ? part.n : ids->n;
    for (size_t j = start; !rc && j < end; j++) labels->v[j] = ids->v[j];
  }
  tok_ids_free(&part);
  free(m);
  return rc;
}

int sft_encode(const sft_tokenizer *t, tok_scratch *s, const json_t *rec, int chat, tok_ids *ids,
               tok_ids *labels, int *misaligned) {
  *misaligned = 0;
  if (!json_is_object(rec))
    return st_fail(ST_EINPUT, "expected a JSON object, found %s", kind_(rec));
  if (json_object_get(rec, "prompt") && json_object_get(rec, "completion"))
    return prompt_completion_(t, s, rec, chat, ids, labels);
  if (json_object_get(rec, "messages"))
    return messages_(t, s, json_object_get(rec, "messages"), ids, labels, misaligned);
  if (json_object_get(rec, "text")) {
    const char *x;
    size_t len;
    int rc = str_(rec, "text", "", &x, &len);
    if (!rc) rc = tokenizer_encode(t->tok, s, x, len, 1, ids);
    for (size_t i = 0; !rc && i < ids->n; i++) tok_ids_push(labels, ids->v[i]);
    return rc;
  }
  char keys[512] = "";
  size_t w = 0;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)rec, k, v) {
    if (w < sizeof keys)
      w += (size_t)snprintf(keys + w, sizeof keys - w, "%s'%s'", w ? ", " : "", k);
  }
  return st_fail(ST_EINPUT, "expected prompt+completion, messages or text; found keys [%s]", keys);
}

int sft_squad_records(const char *path, json_t **records) {
  json_error_t e;
  *records = NULL;
  json_t *doc = json_load_file(path, 0, &e);
  if (!doc)
    return e.line < 0 ? st_fail(ST_EINPUT, "%s: cannot read: %s", path, e.text)
                      : st_fail(ST_EINPUT, "%s: line %d, column %d: not valid JSON: %s", path,
                                e.line, e.column, e.text);
  json_t *out = json_array(), *data = json_object_get(doc, "data");
  int rc = 0;
  if (!json_is_array(data))
    rc = st_fail(ST_EINPUT, "%s: data: expected the SQuAD array of articles, found %s", path,
                 kind_(data));
  size_t a, p, q;
  json_t *art, *para, *qa;
  if (!rc) json_array_foreach(data, a, art) {
      json_t *paras = json_object_get(art, "paragraphs");
      if (!json_is_array(paras)) {
        rc = st_fail(ST_EINPUT, "%s: data[%zu].paragraphs: expected an array, found %s", path, a,
                     kind_(paras));
        break;
      }
      json_array_foreach(paras, p, para) {
        json_t *ctx = json_object_get(para, "context"), *qas = json_object_get(para, "qas");
        if (!json_is_string(ctx) || !json_is_array(qas)) {
          rc = st_fail(ST_EINPUT,
                       "%s: data[%zu].paragraphs[%zu]: expected a string context and an "
                       "array qas",
                       path, a, p);
          break;
        }
        json_array_foreach(qas, q, qa) {
          json_t *ans = json_object_get(qa, "answers"), *question = json_object_get(qa, "question");
          if (!json_is_array(ans) || json_array_size(ans) == 0)
            continue; /* SQuAD 2.0 unanswerable */
          json_t *text = json_object_get(json_array_get(ans, 0), "text");
          if (!json_is_string(question) || !json_is_string(text)) {
            rc = st_fail(ST_EINPUT,
                         "%s: data[%zu].paragraphs[%zu].qas[%zu]: expected a string question "
                         "and answers[0].text",
                         path, a, p, q);
            break;
          }
          size_t lc = json_string_length(ctx), lq = json_string_length(question),
                 la = json_string_length(text);
          char *prompt = xmalloc(lc + lq + 32), *completion = xmalloc(la + 2);
          size_t n = 0;
          memcpy(prompt + n, "Context: ", 9), n += 9;
          memcpy(prompt + n, json_string_value(ctx), lc), n += lc;
          memcpy(prompt + n, "\nQuestion: ", 11), n += 11;
          memcpy(prompt + n, json_string_value(question), lq), n += lq;
          memcpy(prompt + n, "\nAnswer:", 8), n += 8;
          completion[0] = ' ';
          memcpy(completion + 1, json_string_value(text), la);
          json_t *r = json_object();
          json_object_set_new(r, "prompt", json_stringn_nocheck(prompt, n));
          json_object_set_new(r, "completion", json_stringn_nocheck(completion, la + 1));
          json_array_append_new(out, r);
          free(prompt);
          free(completion);
        }
        if (rc) break;
      }
      if (rc) break;
    }
  json_decref(doc);
  if (rc) {
    json_decref(out);
    return rc;
  }
  *records = out;
  return 0;
}
