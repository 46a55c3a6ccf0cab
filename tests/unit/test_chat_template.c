/* unit.chat_template: every supported chat template rendered as transformers'
 * apply_chat_template renders it (tests/fixtures/tokenizer/chat_templates.json, made by
 * make_fixtures.py there), recognised by its text and nothing else. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/chat_template.h"
#include "test.h"
#include "util/err.h"

static const char *fixtures_(void) {
  const char *f = getenv("FIXTURES");
  return f ? f : SPECTRAIN_SOURCE_DIR "/tests/fixtures";
}

int main(void) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer/chat_templates.json", fixtures_());
  json_error_t e;
  json_t *all = json_load_file(path, 0, &e);
  CHECK_MSG(all != NULL, "%s: %s", path, e.text);
  if (!all) return test_done();
  size_t ti;
  json_t *tj;
  int cases = 0;
  json_array_foreach(all, ti, tj) {
    const char *name = json_string_value(json_object_get(tj, "name"));
    const char *text = json_string_value(json_object_get(tj, "template"));
    const char *bos = json_string_value(json_object_get(tj, "bos_token"));
    const char *date = json_string_value(json_object_get(tj, "date_string")); /* llama3.2 */
    const chat_template *ct = chat_template_find(text);
    CHECK_MSG(ct != NULL, "template %s is not recognised", name);
    if (!ct) continue;
    CHECK_STR_EQ(chat_template_name(ct), name);
    /* Jinja drops one trailing newline: with or without it, the same template */
    size_t tl = strlen(text);
    char *alt = malloc(tl + 2);
    memcpy(alt, text, tl + 1);
    if (tl && text[tl - 1] == '\n')
      alt[tl - 1] = '\0';
    else
      strcat(alt, "\n");
    CHECK(chat_template_find(alt) == ct);
    /* one character more or less is another template */
    alt[0] = alt[0] == '{' ? '(' : '{';
    CHECK(chat_template_find(alt) == NULL);
    free(alt);
    size_t ci;
    json_t *cj;
    json_array_foreach(json_object_get(tj, "cases"), ci, cj) {
      json_t *msgs = json_object_get(cj, "messages"), *want = json_object_get(cj, "rendered");
      int gen = json_is_true(json_object_get(cj, "add_generation_prompt"));
      int n = (int)json_array_size(msgs);
      chat_msg *m = calloc((size_t)n + 1, sizeof *m);
      for (int i = 0; i < n; i++) {
        json_t *mj = json_array_get(msgs, (size_t)i);
        m[i].role = json_string_value(json_object_get(mj, "role"));
        m[i].content = json_string_value(json_object_get(mj, "content"));
        m[i].content_len = json_string_length(json_object_get(mj, "content"));
      }
      char *out;
      size_t len;
      int rc = chat_template_render(ct, m, n, gen, bos, date, &out, &len);
      if (json_is_null(want)) {
        CHECK_MSG(rc == ST_EINPUT, "%s case %zu: transformers raises, spectrain rendered '%s'",
                  name, ci, rc ? "" : out);
      } else {
        CHECK_MSG(rc == 0, "%s case %zu: %s", name, ci, st_errmsg());
        if (!rc)
          CHECK_MSG(
              len == json_string_length(want) && memcmp(out, json_string_value(want), len) == 0,
              "%s case %zu (generation prompt %d):\n  spectrain:    '%s'\n  transformers: '%s'",
              name, ci, gen, out, json_string_value(want));
      }
      free(out);
      free(m);
      cases++;
    }
  }
  printf("%zu templates, %d renderings compared\n", json_array_size(all), cases);
  CHECK(json_array_size(all) >= 6 && cases >= 100);

  /* an unknown template: recognised as nothing, described by its style */
  const char *llama2 =
      "{% for message in messages %}{{ bos_token + '[INST] ' + message['content'] }}{% endfor %}";
  CHECK(chat_template_find(llama2) == NULL);
  char buf[2048];
  chat_template_describe(llama2, buf, sizeof buf);
  CHECK_CONTAINS(buf, "a Llama 2/Mistral-style template that spectrain does not implement");
  CHECK_CONTAINS(buf, "qwen2.5 (Qwen2.5-Instruct)");
  CHECK_CONTAINS(buf, "llama3.1");

  /* roles and tool calls a template renders specially are refused by name */
  const chat_template *q =
      chat_template_find(json_string_value(json_object_get(json_array_get(all, 2), "template")));
  chat_msg tool[2] = {{"user", "hi", 2, 0, 0}, {"tool", "42", 2, 0, 0}};
  char *out = NULL;
  size_t len;
  if (q) {
    CHECK_EQ_INT(chat_template_render(q, tool, 2, 0, NULL, NULL, &out, &len), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(),
                   "messages[1]: role 'tool' is not supported by chat template qwen2.5");
    tool[1].role = "assistant";
    tool[1].has_tool_calls = 1;
    CHECK_EQ_INT(chat_template_render(q, tool, 2, 0, NULL, NULL, &out, &len), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "messages[1]: tool calls are not supported");
  }
  /* llama3.2 without a date: today's, as strftime_now("%d %b %Y") */
  const chat_template *l32 = NULL;
  for (size_t i = 0; i < json_array_size(all); i++)
    if (strcmp(json_string_value(json_object_get(json_array_get(all, i), "name")), "llama3.2") == 0)
      l32 = chat_template_find(
          json_string_value(json_object_get(json_array_get(all, i), "template")));
  CHECK(l32 != NULL);
  if (l32) {
    char want[64], date[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%d %b %Y", &tm); /* the C locale: English month names */
    snprintf(want, sizeof want, "Today Date: %s\n", date);
    chat_msg one = {"user", "hi", 2, 0, 0};
    CHECK_EQ_INT(chat_template_render(l32, &one, 1, 0, "<s>", NULL, &out, &len), 0);
    CHECK_CONTAINS(out, want);
    free(out);
  }
  json_decref(all);
  return test_done();
}
