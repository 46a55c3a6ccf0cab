/* spectrum/unfrozen: unfrozen_parameters YAML read with Python re.match semantics
 * (spectrum-method.md §5): prefix matching, anchors, alternation, unmatched warnings,
 * errors that name the file and line. */
#include <fcntl.h>
#include <unistd.h>

#include "spectrum/unfrozen.h"
#include "test.h"
#include "util/err.h"

static char dir_[512];

static const char *write_(const char *name, const char *text) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir_, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

static const char *names_[] = {
    "lm_head.weight",
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.mlp.gate_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.layers.10.mlp.down_proj.weight",
    "model.layers.10.self_attn.q_proj.bias",
    "model.layers.10.self_attn.q_proj.weight",
    "model.norm.weight",
    "xmodel.layers.1.mlp.down_proj.weight",
};
#define NNAMES ((int)(sizeof names_ / sizeof names_[0]))

/* Apply a YAML to the name list above (from names_[first]: 1 = a tied model, no lm_head);
 * returns a string of 0/1 per name. */
static int apply_from_(int first, const char *yaml, char *bits, int *n_train) {
  tensor_desc t[NNAMES];
  memset(t, 0, sizeof t);
  int n = NNAMES - first;
  for (int i = 0; i < n; i++) {
    snprintf(t[i].name, sizeof t[i].name, "%s", names_[first + i]);
    t[i].trainable = 1;
  }
  tensor_table tt = {n, t, 0};
  int rc = unfrozen_apply(yaml, &tt, n_train);
  for (int i = 0; i < n; i++) bits[i] = (char)('0' + t[i].trainable);
  bits[n] = 0;
  return rc;
}
static int apply_(const char *yaml, char *bits, int *n_train) {
  return apply_from_(0, yaml, bits, n_train);
}

/* Run f with stderr (fd 2, or fd 1 for stdout) captured into buf. */
static int cap_fd_ = 2;
static void capture_begin_(int *saved) {
  fflush(stderr);
  fflush(stdout);
  *saved = dup(cap_fd_);
  char p[600];
  snprintf(p, sizeof p, "%s/stderr.txt", dir_);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, cap_fd_);
  close(fd);
}
static void capture_end_(int saved, char *buf, size_t len) {
  fflush(stderr);
  fflush(stdout);
  dup2(saved, cap_fd_);
  close(saved);
  char p[600];
  snprintf(p, sizeof p, "%s/stderr.txt", dir_);
  FILE *f = fopen(p, "r");
  size_t n = fread(buf, 1, len - 1, f);
  buf[n] = 0;
  fclose(f);
}

int main(void) {
  const char *tmp = getenv("TEST_TMP");
  snprintf(dir_, sizeof dir_, "%s/unfrozen.%d", tmp ? tmp : "/tmp", (int)getpid());
  char cmd[700];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir_);
  CHECK(system(cmd) == 0);
  char bits[64];
  int n = -1;

  /* A Spectrum-style file: anchored head/embedding, module prefixes, comments. */
  const char *y = write_("spectrum.yaml",
                         "unfrozen_parameters:\n"
                         "- ^lm_head.weight$\n"
                         "- ^model.embed_tokens.weight$\n"
                         "# input_layernorm layers\n"
                         "- model.layers.0.input_layernorm\n"
                         "# mlp.down_proj layers\n"
                         "- model.layers.1.mlp.down_proj\n"
                         "# self_attn.q_proj layers\n"
                         "- model.layers.10.self_attn.q_proj\n");
  CHECK_EQ_INT(apply_(y, bits, &n), 0);
  /* layers.1.mlp.down_proj must not catch layers.10 (the '.' after 1 is any char, but
   * "model.layers.1.mlp" needs "1" followed by one char and then "mlp": layers.10.mlp has
   * "0.mlp" there). re.match is anchored: xmodel... is not matched. q_proj catches the
   * weight and the bias. */
  CHECK_STR_EQ(bits, "11100101100");
  CHECK_EQ_INT(n, 6);

  /* Prefix matching: mlp.gate catches mlp.gate_proj (the MoE pitfall, same as Python). */
  y = write_("prefix.yaml", "unfrozen_parameters:\n  - model.layers.0.mlp.gate\n");
  CHECK_EQ_INT(apply_(y, bits, &n), 0);
  CHECK_STR_EQ(bits, "00010000000");
  CHECK_EQ_INT(n, 1);

  /* Anchored at the start only: no match in the middle; '$' anchors the end; alternation
   * is anchored as a whole (re.match("a|b") == re.match("^(a|b)")). */
  y = write_("anchor.yaml", "unfrozen_parameters:\n- layers.0\n- model.norm.weight$\n"
                            "- lm_head|model.embed_tokens\n");
  int saved;
  char err[4096];
  capture_begin_(&saved);
  CHECK_EQ_INT(apply_(y, bits, &n), 0);
  capture_end_(saved, err, sizeof err);
  CHECK_STR_EQ(bits, "11000000010");
  /* the pattern that matches nothing is named with its line */
  CHECK_CONTAINS(err, "anchor.yaml:2");
  CHECK_CONTAINS(err, "'layers.0'");
  CHECK(strstr(err, "model.norm") == NULL);

  /* Tied embeddings (no lm_head.weight in the table): Spectrum's "^lm_head.weight$" matches
   * nothing, as in Python (named_parameters lists the shared matrix once, as the
   * embedding): no warning, one info line saying it is the embedding; other unmatched
   * entries are still warned about. */
  y = write_("tied.yaml", "unfrozen_parameters:\n- ^lm_head.weight$\n- model.layers.10.mlp\n"
                          "- model.layers.99.mlp\n");
  capture_begin_(&saved);
  CHECK_EQ_INT(apply_from_(1, y, bits, &n), 0);
  capture_end_(saved, err, sizeof err);
  CHECK_STR_EQ(bits, "0000010000");
  CHECK(strstr(err, "lm_head") == NULL);
  CHECK_CONTAINS(err, "tied.yaml:4");
  cap_fd_ = 1;
  capture_begin_(&saved);
  CHECK_EQ_INT(apply_from_(1, y, bits, &n), 0);
  capture_end_(saved, err, sizeof err);
  cap_fd_ = 2;
  CHECK_CONTAINS(err, "tied.yaml:2: unfrozen_parameters entry '^lm_head.weight$' names the tied lm_head");

  /* A trainer config holding the key among others (axolotl style); quoted entries. */
  y = write_("axolotl.yaml", "base_model: x\nlearning_rate: 0.0002\nunfrozen_parameters:\n"
                             "  - \"^model.layers.1[0-9]*.mlp.down_proj\"\n"
                             "lora_r: 8\n");
  CHECK_EQ_INT(apply_(y, bits, &n), 0);
  CHECK_STR_EQ(bits, "00000110000");

  /* An empty list freezes everything. */
  y = write_("empty.yaml", "unfrozen_parameters:\n");
  CHECK_EQ_INT(apply_(y, bits, &n), 0);
  CHECK_STR_EQ(bits, "00000000000");
  CHECK_EQ_INT(n, 0);

  /* Invalid regex: an input error naming the file, line and pattern. */
  y = write_("bad.yaml", "unfrozen_parameters:\n- ^lm_head.weight$\n- model.layers.(3\n");
  CHECK_EQ_INT(apply_(y, bits, &n), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "bad.yaml:3");
  CHECK_CONTAINS(st_errmsg(), "model.layers.(3");

  /* Missing key, wrong kinds, missing file, broken YAML. */
  y = write_("nokey.yaml", "trainable: [a]\n");
  CHECK_EQ_INT(apply_(y, bits, &n), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "unfrozen_parameters");
  y = write_("map.yaml", "unfrozen_parameters:\n- {a: 1}\n");
  CHECK_EQ_INT(apply_(y, bits, &n), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "map.yaml:2");
  y = write_("broken.yaml", "unfrozen_parameters: [a, b\n");
  CHECK_EQ_INT(apply_(y, bits, &n), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "broken.yaml");
  CHECK_EQ_INT(apply_("/nonexistent/x.yaml", bits, &n), ST_EINPUT);
  CHECK_CONTAINS(st_errmsg(), "/nonexistent/x.yaml");

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_);
  CHECK(system(cmd) == 0);
  return test_done();
}
