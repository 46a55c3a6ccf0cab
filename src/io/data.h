/* Token data: what the training loop reads.
 *
 * Formats (data.format "auto" picks by extension):
 *   .bin   llm.c shards: int32[256] header (magic 20240520 + version 1 = uint16 tokens,
 *          magic 20240801 + version 7 = uint32 tokens; header[2] = token count, checked
 *          against the file size), then the tokens. Memory-mapped.
 *   .jsonl one record per line: {"input_ids": [...], "labels": [...]} (labels optional,
 *          default = input_ids; -100 = not trained on). One record = one sequence, never
 *          packed with its neighbours; records longer than T are truncated (counted, one
 *          warning per file).
 *   other  UTF-8 text read as bytes (vocabulary 256). Memory-mapped.
 *
 * Samples (T = max_seq_length):
 *   stream files (bin, text): cut into windows of T+1 tokens with stride T; window i of a
 *     file gives inputs s[iT .. iT+T) and targets s[iT+1 .. iT+T]. Windows never cross a
 *     file boundary; the tail after the last whole window is unused.
 *   jsonl records: inputs = input_ids padded with 0 to T; targets[t] = labels[t+1] for
 *     t+1 < len, -100 elsewhere: exactly the shift Hugging Face applies inside the loss,
 *     so the mean over counted targets equals `model(input_ids, labels=labels).loss`.
 *   Every sample has exactly T inputs and T targets; -100 marks a target not counted.
 *
 * Order: batches are a pure function of (seed, epoch, position): each epoch visits the
 * view's samples in a pseudo-random permutation computed on the fly from
 * rng_seed3(seed, epoch, .) (a keyed Feistel bijection, O(1) memory), so any rank count
 * and any resume point see the same global sequence of samples. */
#ifndef SPECTRAIN_IO_DATA_H
#define SPECTRAIN_IO_DATA_H
#include <stdint.h>

#include "job/job.h"

#define DATA_IGNORE_INDEX (-100)
#define DATA_TEXT_VOCAB 256

typedef struct data_source data_source; /* opaque: the opened files and their samples */

typedef struct {
  const data_source *src; /* not owned */
  uint64_t n;             /* samples in this view */
  uint64_t *index;        /* view sample i -> source sample index[i] (owned; NULL = identity) */
} data_view;

/* Open token files (concatenated in order). `format` DATA_AUTO picks by extension per
 * file. `vocab_size` > 0: every token id (and label other than -100) must be below it,
 * else ST_EINPUT naming the file and position. seq_len = T >= 1. Zero samples in total is
 * an error. */
int data_open(const char *const *paths, int n_paths, job_data_format format, int64_t seq_len,
              int64_t vocab_size, data_source **out);
void data_close(data_source *s);

uint64_t data_num_samples(const data_source *s);
int64_t data_seq_len(const data_source *s);
uint64_t data_num_tokens(const data_source *s);    /* tokens read from all files */
uint64_t data_num_truncated(const data_source *s); /* jsonl records cut to T */
/* The largest token id seen (the vocabulary the data needs is this + 1). */
int64_t data_max_token(const data_source *s);

/* Views. data_view_all: every sample, in source order. data_split: a deterministic
 * held-out split by fraction (independent of the training seed): n_val =
 * round(fraction * n) (at least 1 when fraction > 0, at most n - 1), chosen by a fixed
 * pseudo-random permutation; both views keep source order. fraction 0: val->n = 0. */
void data_view_all(const data_source *s, data_view *v);
int data_split(const data_source *s, double fraction, data_view *train, data_view *val);
void data_view_free(data_view *v);

/* The view sample (0 <= result < v->n) visited at `position` (0 <= position < v->n) of
 * `epoch` under `seed`. A pure function: same arguments, same answer, in any order. */
uint64_t data_sample_at(const data_view *v, uint64_t seed, uint64_t epoch, uint64_t position);
/* Same for a global position over the whole run (epochs back to back):
 * epoch = g / v->n, position = g % v->n. */
uint64_t data_sample_global(const data_view *v, uint64_t seed, uint64_t g);

/* Fill inputs[b*T + t] and targets[b*T + t] (b < n) for view samples samples[b].
 * Inputs are token ids (padding 0), targets token ids or DATA_IGNORE_INDEX. */
void data_fill(const data_view *v, const uint64_t *samples, int n, int32_t *inputs,
               int32_t *targets);
/* Padding to the longest: rows (n, T) of inputs/targets as data_fill wrote them are
 * compacted in place to (n, T') and T' returned, T' = one past the last counted target of
 * any row, rounded up to a multiple of `multiple` (fewer distinct GEMM shapes), at most T,
 * at least 1. Nothing after a row's last counted target changes its loss (causal models),
 * so the batch means the same; SFT records far shorter than max_seq_length cost their own
 * length, as with Hugging Face's collators (padding="longest"). */
int data_trim(int32_t *inputs, int32_t *targets, int n, int T, int multiple);
/* Number of counted targets (!= -100) of these view samples (the loss of a global batch
 * is normalised by the sum of this over every rank's samples). */
uint64_t data_count_targets(const data_view *v, const uint64_t *samples, int n);

/* The job's data: the training view, and the validation view from data.validation if
 * given, else data.validation_split of the training samples (val.n == 0 when neither). */
typedef struct {
  data_source *train_src;
  data_source *val_src; /* NULL unless data.validation names a file */
  data_view train, val;
} data_job;

/* vocab_size as in data_open (0 = data.vocab_size of the job; 0 there too = no check). */
int data_open_job(const job_config *job, int64_t vocab_size, data_job *out);
void data_job_close(data_job *d);

#endif
