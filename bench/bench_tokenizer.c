/* Tokenizer throughput: encode every document of a JSONL file ({"text": ...} per line)
 * REPEATS times on THREADS OpenMP threads (one scratch each), as
 * bench/bench_tokenize.sh's peer does with tokenizers' encode_batch. Prints one line:
 *   spectrain tokens N bytes B wall S cpu C hash H
 * (H: FNV-1a 64 of every id, in document order, to check both sides agree).
 *   bench_tokenizer TOKENIZER.json TEXTS.jsonl THREADS REPEATS */
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tokenizer.h"
#include "util/err.h"
#include "util/hash.h"

static double now_(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bench_tokenizer TOKENIZER.json TEXTS.jsonl THREADS REPEATS\n");
    return 2;
  }
  tokenizer *t;
  if (tokenizer_load(argv[1], &t)) {
    fprintf(stderr, "%s\n", st_errmsg());
    return 2;
  }
  int threads = atoi(argv[3]), repeats = atoi(argv[4]);
  FILE *f = fopen(argv[2], "r");
  if (!f) return 2;
  char *line = NULL;
  size_t cap = 0, n = 0, bytes = 0;
  char **doc = NULL;
  size_t *len = NULL;
  while (getline(&line, &cap, f) > 0) {
    json_error_t e;
    json_t *o = json_loads(line, 0, &e), *x = json_object_get(o, "text");
    if (!json_is_string(x)) continue;
    doc = realloc(doc, (n + 1) * sizeof *doc);
    len = realloc(len, (n + 1) * sizeof *len);
    len[n] = json_string_length(x);
    doc[n] = malloc(len[n] + 1);
    memcpy(doc[n], json_string_value(x), len[n] + 1);
    bytes += len[n++];
    json_decref(o);
  }
  fclose(f);
  free(line);
  size_t *count = calloc(n, sizeof *count);
  uint64_t *hash = calloc(n, sizeof *hash);
  tok_scratch **s = calloc((size_t)threads, sizeof *s);
  for (int i = 0; i < threads; i++) s[i] = tok_scratch_new(t);
  double w0 = now_(CLOCK_MONOTONIC), c0 = now_(CLOCK_PROCESS_CPUTIME_ID);
  int bad = 0;
  for (int r = 0; r < repeats; r++) {
#pragma omp parallel num_threads(threads)
    {
      tok_ids ids = {0};
#pragma omp for schedule(dynamic, 4) reduction(+ : bad)
      for (size_t d = 0; d < n; d++) {
        ids.n = 0;
        bad += tokenizer_encode(t, s[omp_get_thread_num()], doc[d], len[d], 1, &ids) != 0;
        count[d] = ids.n;
        uint64_t h = HASH64_INIT;
        for (size_t i = 0; i < ids.n; i++) {
          uint32_t v = (uint32_t)ids.v[i];
          unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                                (unsigned char)(v >> 24)};
          h = hash64_bytes(h, b, 4);
        }
        hash[d] = h;
      }
      tok_ids_free(&ids);
    }
  }
  double wall = now_(CLOCK_MONOTONIC) - w0, cpu = now_(CLOCK_PROCESS_CPUTIME_ID) - c0;
  size_t tokens = 0;
  uint64_t h = HASH64_INIT;
  for (size_t d = 0; d < n; d++) tokens += count[d], h = hash64_u64(h, hash[d]);
  printf("spectrain tokens %zu bytes %zu wall %.4f cpu %.4f hash %016llx\n",
         tokens * (size_t)repeats, bytes * (size_t)repeats, wall, cpu, (unsigned long long)h);
  for (int i = 0; i < threads; i++) tok_scratch_free(s[i]);
  tokenizer_free(t);
  return bad ? 1 : 0;
}
