#include "spectrum/unfrozen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/err.h"
#include "util/fs.h"

static int add_pattern_(unfrozen_set *s, const char *text, int line) {
  size_t len = strlen(text);
  char *anchored = xmalloc(len + 4);
  /* "^(" p ")": re.match anchors the whole pattern (every alternative) at the start. */
  snprintf(anchored, len + 4, "^(%s)", text);
  unfrozen_pattern *p = &s->p[s->n];
  memset(p, 0, sizeof *p);
  int rc = regcomp(&p->re, anchored, REG_EXTENDED | REG_NOSUB);
  free(anchored);
  if (rc != 0) {
    char why[256];
    regerror(rc, &p->re, why, sizeof why);
    return st_fail(ST_EINPUT,
                   "%s:%d: unfrozen_parameters entry '%s' is not a valid regular expression "
                   "(POSIX extended): %s",
                   s->path, line, text, why);
  }
  p->pattern = xstrdup(text);
  p->line = line;
  s->n++;
  return ST_OK;
}

static int load_doc_(unfrozen_set *s, yaml_document_t *doc) {
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root || root->type != YAML_MAPPING_NODE)
    return st_fail(ST_EINPUT, "%s: expected a YAML mapping with key 'unfrozen_parameters', found %s",
                   s->path, root ? "another kind of document" : "an empty file");
  yaml_node_t *list = NULL;
  for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(doc, pr->key);
    if (k && k->type == YAML_SCALAR_NODE &&
        strcmp((const char *)k->data.scalar.value, "unfrozen_parameters") == 0)
      list = yaml_document_get_node(doc, pr->value);
  }
  if (!list)
    return st_fail(ST_EINPUT, "%s: key 'unfrozen_parameters' not found (expected a list of regular "
                              "expressions naming the parameters to train)",
                   s->path);
  if (list->type == YAML_SCALAR_NODE && list->data.scalar.length == 0) return ST_OK; /* empty: all frozen */
  if (list->type != YAML_SEQUENCE_NODE)
    return st_fail(ST_EINPUT, "%s:%d: key 'unfrozen_parameters': expected a list, found %s", s->path,
                   (int)list->start_mark.line + 1,
                   list->type == YAML_MAPPING_NODE ? "a mapping" : "a scalar");
  int cap = (int)(list->data.sequence.items.top - list->data.sequence.items.start);
  s->p = xcalloc((size_t)(cap > 0 ? cap : 1), sizeof *s->p);
  for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
    yaml_node_t *e = yaml_document_get_node(doc, *it);
    int line = (int)e->start_mark.line + 1;
    if (e->type != YAML_SCALAR_NODE)
      return st_fail(ST_EINPUT, "%s:%d: unfrozen_parameters entry: expected a string (regular "
                                "expression), found a %s",
                     s->path, line, e->type == YAML_MAPPING_NODE ? "mapping" : "list");
    int rc = add_pattern_(s, (const char *)e->data.scalar.value, line);
    if (rc) return rc;
  }
  return ST_OK;
}

int unfrozen_load(const char *yaml_path, unfrozen_set *s) {
  memset(s, 0, sizeof *s);
  s->path = xstrdup(yaml_path);
  int crc = fs_check_file(yaml_path, "a Spectrum unfrozen_parameters YAML file", 0);
  if (crc) {
    unfrozen_free(s);
    return crc;
  }
  FILE *f = fopen(yaml_path, "rb");
  if (!f) {
    int rc = st_fail(ST_EINPUT, "%s: cannot open the unfrozen_parameters file", yaml_path);
    unfrozen_free(s);
    return rc;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  int rc = ST_OK;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = st_fail(ST_EINPUT, "%s:%d: not valid YAML: %s", yaml_path, (int)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "parse error");
  } else {
    rc = load_doc_(s, &doc);
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  if (rc) unfrozen_free(s);
  return rc;
}

void unfrozen_free(unfrozen_set *s) {
  for (int i = 0; i < s->n; i++) {
    regfree(&s->p[i].re);
    free(s->p[i].pattern);
  }
  free(s->p);
  free(s->path);
  memset(s, 0, sizeof *s);
}

int unfrozen_match(unfrozen_set *s, const char *param_name) {
  int any = 0;
  for (int i = 0; i < s->n; i++)
    if (regexec(&s->p[i].re, param_name, 0, NULL, 0) == 0) {
      s->p[i].n_matched++;
      any = 1;
    }
  return any;
}

/* tied: the model's lm_head is its embedding. Python's named_parameters() lists a shared
 * parameter once, under its first name (model.embed_tokens.weight), so an entry naming
 * lm_head.weight (Spectrum's "^lm_head.weight$", always in its YAMLs) matches nothing there
 * either: expected, and said once (log_info: rank 0) rather than warned on every rank. */
static int report_unmatched_(const unfrozen_set *s, int tied) {
  int n = 0;
  for (int i = 0; i < s->n; i++) {
    if (s->p[i].n_matched) continue;
    n++;
    if (tied && regexec(&s->p[i].re, "lm_head.weight", 0, NULL, 0) == 0)
      log_info("%s:%d: unfrozen_parameters entry '%s' names the tied lm_head: it is "
               "model.embed_tokens.weight (trained when an entry matches that name)",
               s->path, s->p[i].line, s->p[i].pattern);
    else
      log_warn("%s:%d: unfrozen_parameters entry '%s' matches no parameter of this model",
               s->path, s->p[i].line, s->p[i].pattern);
  }
  return n;
}

int unfrozen_warn_unmatched(const unfrozen_set *s) { return report_unmatched_(s, 0); }

int unfrozen_apply(const char *yaml_path, tensor_table *tt, int *n_trainable) {
  unfrozen_set s;
  int rc = unfrozen_load(yaml_path, &s);
  if (rc) return rc;
  int n = 0;
  for (int i = 0; i < tt->n; i++) {
    tt->t[i].trainable = unfrozen_match(&s, tt->t[i].name);
    n += tt->t[i].trainable;
  }
  int tied = tensor_table_find(tt, "lm_head.weight") < 0 &&
             tensor_table_find(tt, "model.embed_tokens.weight") >= 0;
  report_unmatched_(&s, tied);
  unfrozen_free(&s);
  if (n_trainable) *n_trainable = n;
  return ST_OK;
}
