/* `spectrain tokenize INPUT OUTPUT --tokenizer DIR`: SFT and text records as the JSONL token
 * records `train` reads, with the loss masks of scripts/prepare_sft_jsonl.py, without
 * Python (io/sft.h: tokenizer.json BPE, the chat template). Records are tokenized in
 * parallel (OpenMP threads, a batch at a time) and written in input order. */
#include <errno.h>
#include <libgen.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "io/sft.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/mem.h"
#include "util/opt.h"

#define BATCH_RECORDS 2048
#define BATCH_BYTES (16u << 20)

typedef struct {
  char *line; /* the input line (NULL for SQuAD records) */
  size_t len;
  long lineno;
  const json_t *rec; /* SQuAD: the record */
  char *out;         /* the output line */
  size_t out_len;
  size_t n_ids, counted;
  int misaligned;
  char *err; /* NULL, or the message */
  int rc;
} item;

/* Python's json.dumps of a list of ints: "[1, 2, 3]" */
static void put_ints_(char **p, const tok_ids *a) {
  char *w = *p;
  *w++ = '[';
  for (size_t i = 0; i < a->n; i++) {
    if (i) *w++ = ',', *w++ = ' ';
    w += sprintf(w, "%d", a->v[i]);
  }
  *w++ = ']';
  *p = w;
}

static void run_item_(const sft_tokenizer *t, tok_scratch *s, item *it, int chat) {
  json_t *rec = (json_t *)it->rec;
  int own = 0;
  it->rc = 0;
  if (!rec) {
    json_error_t e;
    rec = json_loadb(it->line, it->len, 0, &e);
    if (!rec) {
      it->rc = strstr(e.text, "unable to decode byte")
                   ? st_fail(ST_EINPUT, "invalid UTF-8 at column %d: %s", e.column, e.text)
                   : st_fail(ST_EINPUT, "not valid JSON (column %d): %s", e.column, e.text);
      it->err = xstrdup(st_errmsg());
      return;
    }
    own = 1;
  }
  tok_ids ids = {0}, labels = {0};
  it->rc = sft_encode(t, s, rec, chat, &ids, &labels, &it->misaligned);
  if (it->rc) {
    it->err = xstrdup(st_errmsg());
  } else {
    /* {"input_ids": [...], "labels": [...]}\n: at most 13 bytes per number */
    it->out = xmalloc(64 + 13 * (ids.n + labels.n));
    char *w = it->out;
    w += sprintf(w, "{\"input_ids\": ");
    put_ints_(&w, &ids);
    w += sprintf(w, ", \"labels\": ");
    put_ints_(&w, &labels);
    w += sprintf(w, "}\n");
    it->out_len = (size_t)(w - it->out);
    it->n_ids = ids.n;
    it->counted = 0;
    for (size_t i = 1; i < labels.n; i++) it->counted += labels.v[i] != SFT_IGNORE;
  }
  tok_ids_free(&ids);
  tok_ids_free(&labels);
  if (own) json_decref(rec);
}

static int blank_(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!strchr(" \t\r\n\f\v", s[i])) return 0;
  return 1;
}

typedef struct {
  const char *input, *output;
  const sft_tokenizer *t;
  int chat, threads;
  long max_length;
} job_;

static int tokenize_(const job_ *j, FILE *in, const json_t *squad, FILE *out, size_t *n_out,
                     size_t *counted, size_t *longer, size_t *tokens, size_t *misaligned,
                     long *first_misaligned) {
  int nt = j->threads;
  tok_scratch **scratch = xcalloc((size_t)nt, sizeof *scratch);
  for (int i = 0; i < nt; i++) scratch[i] = tok_scratch_new(j->t->tok);
  item *items = xcalloc(BATCH_RECORDS, sizeof *items);
  char *line = NULL;
  size_t cap = 0, next_squad = 0, bytes = 0;
  long lineno = 0;
  int rc = 0, eof = 0;
  double t0 = time_now_s(), last = t0;
  while (!rc && !eof) {
    int n = 0;
    size_t batch_bytes = 0;
    while (n < BATCH_RECORDS && batch_bytes < BATCH_BYTES) { /* read a batch */
      if (squad) {
        if (next_squad == json_array_size(squad)) {
          eof = 1;
          break;
        }
        memset(&items[n], 0, sizeof items[n]);
        items[n].rec = json_array_get(squad, next_squad);
        items[n].lineno = (long)++next_squad;
        n++;
        continue;
      }
      errno = 0;
      ssize_t k = getline(&line, &cap, in);
      if (k < 0) {
        if (errno) rc = st_fail(ST_ERUNTIME, "%s: read failed: %s", j->input, strerror(errno));
        eof = 1;
        break;
      }
      lineno++;
      bytes += (size_t)k;
      if (blank_(line, (size_t)k)) continue;
      memset(&items[n], 0, sizeof items[n]);
      items[n].line = xmalloc((size_t)k + 1);
      memcpy(items[n].line, line, (size_t)k + 1);
      items[n].len = (size_t)k;
      items[n].lineno = lineno;
      batch_bytes += (size_t)k;
      n++;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int i = 0; i < n; i++) run_item_(j->t, scratch[omp_get_thread_num()], &items[i], j->chat);
    for (int i = 0; i < n; i++) { /* in input order; the first bad record stops everything */
      item *it = &items[i];
      if (!rc && it->rc) {
        rc = squad ? st_fail(it->rc, "%s: question %ld: %s", j->input, it->lineno, it->err)
                   : st_fail(it->rc, "%s:%ld: %s", j->input, it->lineno, it->err);
      } else if (!rc) {
        if (fwrite(it->out, 1, it->out_len, out) != it->out_len)
          rc = st_fail(ST_ERUNTIME, "%s.tmp: write failed: %s", j->output, strerror(errno));
        (*n_out)++;
        *counted += it->counted;
        *tokens += it->n_ids;
        *longer += j->max_length > 0 && it->n_ids > (size_t)j->max_length;
        if (it->misaligned && !(*misaligned)++) *first_misaligned = it->lineno;
      }
      free(it->line);
      free(it->out);
      free(it->err);
    }
    double now = time_now_s();
    if (!rc && now - last > 2.0) {
      last = now;
      log_info("tokenize: %zu records, %zu tokens, %.1f MB read (%.1f MB/s)", *n_out, *tokens,
               (double)bytes / 1e6, (double)bytes / 1e6 / (now - t0));
    }
  }
  free(line);
  free(items);
  for (int i = 0; i < nt; i++) tok_scratch_free(scratch[i]);
  free(scratch);
  return rc;
}

int cmd_tokenize(int argc, char **argv) {
  static const opt_cmd cmd = {
      "tokenize",
      "INPUT OUTPUT",
      2,
      2,
      "tokenize SFT or text records into JSONL token data (tokenizer.json, chat template)",
      "INPUT holds one JSON object per line, the records TRL's SFTTrainer takes:\n"
      "  {\"prompt\": ..., \"completion\": ...}  loss on the completion only (+ EOS without the\n"
      "                                      chat template)\n"
      "  {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}  the chat template; loss on the\n"
      "                                      assistant turns only\n"
      "  {\"text\": ...}                       loss on every token\n"
      "or, with --squad, a SQuAD v1.1/v2.0 JSON file (each answered question a prompt\n"
      "'Context: ...\\nQuestion: ...\\nAnswer:' and its first answer the completion).\n"
      "OUTPUT gets one {\"input_ids\": [...], \"labels\": [...]} per record (-100 = not\n"
      "trained on), the same bytes scripts/prepare_sft_jsonl.py writes with transformers, and\n"
      "is replaced only when every record converted. The tokenizer is DIR/tokenizer.json\n"
      "(byte-level BPE: GPT-2, Llama 3, Qwen2/2.5, SmolLM2 and their kin), eos_token,\n"
      "bos_token and chat_template from DIR/tokenizer_config.json (or DIR/chat_template.jinja).\n"
      "Chat templates spectrain renders: chatml, qwen2, qwen2.5, qwen3, smollm2, llama3,\n"
      "llama3.1, llama3.2 (recognised by their exact text; another is an error when a\n"
      "record needs it).\n"
      "Runs on rank 0 only; --threads workers (default: OMP_NUM_THREADS or every core)."};
  const char *tok_dir = NULL;
  int squad = 0, no_chat = 0;
  long max_length = 0, threads = 0;
  const opt_spec specs[] = {
      {"tokenizer", OPT_STR, "DIR", "model or tokenizer directory with tokenizer.json (required)",
       &tok_dir},
      {"squad", OPT_FLAG, NULL, "INPUT is a SQuAD JSON file", &squad},
      {"no-chat", OPT_FLAG, NULL,
       "prompt/completion as plain text even when there is a chat template", &no_chat},
      {"max-length", OPT_INT, "N", "report how many records are longer than N tokens", &max_length},
      {"threads", OPT_INT, "N", "worker threads (default: OMP_NUM_THREADS, else every core)",
       &threads},
  };
  int np;
  char **pos;
  int rc = opt_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, &np, &pos);
  if (rc) return rc == OPT_HELP_SHOWN ? ST_OK : st_report(rc);
  if (!tok_dir)
    rc = st_fail(ST_EINPUT, "tokenize: --tokenizer DIR is required");
  else if (threads < 0 || threads > 4096)
    rc = st_fail(ST_EINPUT,
                 "tokenize: --threads: expected 1 to 4096 (or 0: the default), found %ld", threads);
  else if (max_length < 0)
    rc = st_fail(ST_EINPUT, "tokenize: --max-length: expected N >= 1, found %ld", max_length);
  if (rc || comm_rank() != 0) {
    free(pos);
    return rc ? st_report(rc) : ST_OK;
  }
  job_ j = {pos[0], pos[1], NULL, 0, threads ? (int)threads : omp_get_max_threads(), max_length};
  sft_tokenizer t;
  if ((rc = sft_tokenizer_open(tok_dir, &t))) {
    free(pos);
    return st_report(rc);
  }
  j.t = &t;
  j.chat = !no_chat && t.template_text != NULL;
  json_t *records = NULL;
  FILE *in = NULL, *out = NULL;
  char *tmp = xasprintf("%s.tmp", j.output);
  if (squad)
    rc = sft_squad_records(j.input, &records);
  else if (!(in = fopen(j.input, "rb")))
    rc = st_fail(ST_EINPUT, "%s: cannot open: %s", j.input, strerror(errno));
  if (!rc) {
    char *d = xstrdup(j.output);
    rc = fs_mkdir_p(dirname(d));
    free(d);
  }
  if (!rc && !(out = fopen(tmp, "wb")))
    rc = st_fail(ST_ERUNTIME, "%s: cannot create: %s", tmp, strerror(errno));
  size_t n = 0, counted = 0, longer = 0, tokens = 0, misaligned = 0;
  long first_misaligned = 0;
  double t0 = time_now_s();
  if (!rc) {
    log_info("tokenize: %s/tokenizer.json, vocabulary %lld, chat template %s, %d thread%s", tok_dir,
             (long long)tokenizer_vocab_size(t.tok),
             !j.chat      ? (t.template_text ? "not used (--no-chat)" : "none")
             : t.template ? chat_template_name(t.template)
                          : "not one spectrain knows",
             j.threads, j.threads == 1 ? "" : "s");
    rc = tokenize_(&j, in, records, out, &n, &counted, &longer, &tokens, &misaligned,
                   &first_misaligned);
  }
  if (out && fclose(out) != 0 && !rc)
    rc = st_fail(ST_ERUNTIME, "%s: write failed: %s", tmp, strerror(errno));
  if (!rc && rename(tmp, j.output) != 0)
    rc = st_fail(ST_ERUNTIME, "%s: cannot rename to %s: %s", tmp, j.output, strerror(errno));
  if (rc && out) remove(tmp);
  if (!rc) {
    double dt = time_now_s() - t0;
    if (max_length > 0)
      log_info("%s: %zu records, %zu counted targets, %zu longer than %ld", j.output, n, counted,
               longer, max_length);
    else
      log_info("%s: %zu records, %zu counted targets", j.output, n, counted);
    log_info("tokenize: %zu tokens in %.2f s (%.0f tokens/s)", tokens, dt,
             dt > 0 ? (double)tokens / dt : 0.0);
    if (misaligned)
      log_warn(
          "%s: %zu messages records (the first on line %ld): the chat template renders the "
          "conversation up to an assistant turn differently from inside the whole (Qwen3 writes "
          "a think block on the last turn only), so their labels, made as "
          "prepare_sft_jsonl.py makes them, also cover tokens outside the assistant turns",
          j.input, misaligned, first_misaligned);
  }
  if (in) fclose(in);
  json_decref(records);
  free(tmp);
  sft_tokenizer_close(&t);
  free(pos);
  return rc ? st_report(rc) : ST_OK;
}
