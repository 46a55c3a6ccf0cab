/* Checkpoint files in HDF5 (interface: ckpt/h5.h, layout: docs/checkpoints.md).
 *
 * The one file outside mpi/ that includes mpi.h: the parallel HDF5 header (hdf5.h ->
 * H5public.h) includes it, and the MPI-IO file driver takes the communicator. Everything
 * that touches HDF5 is here; it uses only the format helpers below it (ckpt/format.h), and
 * resume selection, job checks, inspect and export (ckpt/ckpt.c, export.c) sit above it.
 *
 * Collective discipline: with the MPI-IO driver every rank makes the same sequence of
 * HDF5 metadata calls (create/open/close, attributes) with the same arguments, and calls
 * H5Dwrite/H5Dread on every tensor dataset (an empty selection where it holds nothing).
 * Errors never return early from the middle of that sequence: a rank that fails keeps
 * going through the remaining calls with empty selections and the status is agreed at the
 * end (comm_max_status), so no rank is left waiting in a collective. Every handle is
 * closed on every path: an unclosed handle makes H5Fclose fail with MPI-IO. */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/h5.h"
#include "mpi/comm.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/mem.h"

static void h5_quiet_(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* A file-access property list: MPI-IO on MPI_COMM_WORLD when collective, else default. */
static hid_t fapl_(int collective) {
  hid_t p = H5Pcreate(H5P_FILE_ACCESS);
  if (collective) {
    H5Pset_fapl_mpio(p, MPI_COMM_WORLD, MPI_INFO_NULL);
    H5Pset_coll_metadata_write(p, 1);
  }
  return p;
}

/* A transfer property list: collective MPI-IO when collective, else default. */
static hid_t dxpl_(int collective) {
  hid_t p = H5Pcreate(H5P_DATASET_XFER);
  if (collective) H5Pset_dxpl_mpio(p, H5FD_MPIO_COLLECTIVE);
  return p;
}

static void close_(hid_t *id, herr_t (*fn)(hid_t)) {
  if (*id >= 0) fn(*id);
  *id = -1;
}

/* ---- selections --------------------------------------------------------------------- */

/* Add the flat range [b, b+n) of a row-major tensor to a file-space selection: one block
 * in 1-D; in 2-D at most three rectangles (tail of the first row, full rows, head of the
 * last row). *first says whether the selection is still empty (SET, then OR). */
static int select_range_(hid_t space, int ndim, const int64_t *shape, uint64_t b, uint64_t n,
                         int *first) {
  hsize_t start[2], count[2];
  int nblk = 0;
  hsize_t blk[3][4]; /* row0, col0, rows, cols */
  if (n == 0) return 0;
  if (ndim == 1) {
    start[0] = b;
    count[0] = n;
    herr_t e = H5Sselect_hyperslab(space, *first ? H5S_SELECT_SET : H5S_SELECT_OR, start, NULL,
                                   count, NULL);
    *first = 0;
    return e < 0 ? -1 : 0;
  }
  uint64_t cols = (uint64_t)shape[1], e = b + n;
  uint64_t r0 = b / cols, c0 = b % cols, r1 = e / cols, c1 = e % cols;
  if (r0 == r1) {
    blk[nblk][0] = r0, blk[nblk][1] = c0, blk[nblk][2] = 1, blk[nblk][3] = c1 - c0, nblk++;
  } else {
    if (c0 > 0) {
      blk[nblk][0] = r0, blk[nblk][1] = c0, blk[nblk][2] = 1, blk[nblk][3] = cols - c0, nblk++;
      r0++;
    }
    if (r1 > r0) blk[nblk][0] = r0, blk[nblk][1] = 0, blk[nblk][2] = r1 - r0, blk[nblk][3] = cols, nblk++;
    if (c1 > 0) blk[nblk][0] = r1, blk[nblk][1] = 0, blk[nblk][2] = 1, blk[nblk][3] = c1, nblk++;
  }
  for (int i = 0; i < nblk; i++) {
    start[0] = blk[i][0], start[1] = blk[i][1], count[0] = blk[i][2], count[1] = blk[i][3];
    if (H5Sselect_hyperslab(space, *first ? H5S_SELECT_SET : H5S_SELECT_OR, start, NULL, count,
                            NULL) < 0)
      return -1;
    *first = 0;
  }
  return 0;
}

/* This rank's part of one dataset: slices sorted by begin, not overlapping. */
typedef struct {
  const ckpt_slice **s;
  int n;
  uint64_t total;
} part_;

/* Transfer one dataset collectively: write (`writing`) from or read into the slices of
 * `p`. Ranks with nothing select nothing. Several slices go through a staging buffer in
 * file order (a combined hyperslab selection is traversed in row-major order). */
static int xfer_(hid_t dset, const tensor_desc *t, const part_ *p, int writing, hid_t dxpl) {
  int rc = 0;
  hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim == 2 ? (hsize_t)t->shape[1] : 1};
  hid_t fs = H5Screate_simple(t->ndim, dims, NULL);
  hsize_t mdim = p->total ? p->total : 1;
  hid_t ms = H5Screate_simple(1, &mdim, NULL);
  float dummy = 0, *buf = &dummy, *stage = NULL;
  if (p->total == 0) {
    H5Sselect_none(fs);
    H5Sselect_none(ms);
  } else {
    int first = 1;
    for (int i = 0; i < p->n && !rc; i++)
      rc = select_range_(fs, t->ndim, t->shape, p->s[i]->begin, p->s[i]->count, &first);
    if (p->n == 1) {
      buf = p->s[0]->data;
    } else {
      stage = xmalloc(p->total * sizeof(float));
      buf = stage;
      if (writing) {
        uint64_t o = 0;
        for (int i = 0; i < p->n; i++) {
          memcpy(stage + o, p->s[i]->data, p->s[i]->count * sizeof(float));
          o += p->s[i]->count;
        }
      }
    }
  }
  if (rc)
    H5Sselect_none(fs), H5Sselect_none(ms); /* still take part in the collective call */
  herr_t e = writing ? H5Dwrite(dset, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf)
                     : H5Dread(dset, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf);
  if (e < 0 || rc) {
    rc = st_fail(ST_ERUNTIME, "HDF5 %s of tensor '%s' failed", writing ? "write" : "read",
                 t->name);
  } else if (stage && !writing) {
    uint64_t o = 0;
    for (int i = 0; i < p->n; i++) {
      memcpy(p->s[i]->data, stage + o, p->s[i]->count * sizeof(float));
      o += p->s[i]->count;
    }
  }
  free(stage);
  H5Sclose(fs);
  H5Sclose(ms);
  return rc;
}

/* Group a rank's slices by (kind, tensor): idx sorted by (kind, tensor, begin); start[d]
 * is the first position of dataset d = kind * ntensors + tensor in idx, start[d+1] the end. */
static const ckpt_slice *sort_base_;
static int cmp_slice_(const void *a, const void *b) {
  const ckpt_slice *x = &sort_base_[*(const int *)a], *y = &sort_base_[*(const int *)b];
  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  if (x->tensor != y->tensor) return x->tensor < y->tensor ? -1 : 1;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return 0;
}

typedef struct {
  const ckpt_slice **ord; /* slices in (kind, tensor, begin) order */
  int *start;             /* CKPT_NKINDS * ntensors + 1 */
} groups_;

/* Also validates: tensor index, kind, bounds, overlap. Local (no communication). */
static int group_slices_(const tensor_table *tt, const ckpt_slice *s, int ns, groups_ *g) {
  int nd = CKPT_NKINDS * tt->n, rc = 0;
  int *idx = xmalloc((size_t)(ns ? ns : 1) * sizeof(int));
  g->ord = xmalloc((size_t)(ns ? ns : 1) * sizeof(*g->ord));
  g->start = xcalloc((size_t)nd + 1, sizeof(int));
  for (int i = 0; i < ns; i++) {
    idx[i] = i;
    if (s[i].tensor < 0 || s[i].tensor >= tt->n || (unsigned)s[i].kind >= CKPT_NKINDS) {
      rc = st_fail(ST_EINPUT, "checkpoint slice %d: tensor %d / kind %d out of range", i,
                   s[i].tensor, (int)s[i].kind);
    } else {
      const tensor_desc *t = &tt->t[s[i].tensor];
      if (s[i].begin + s[i].count > t->numel || s[i].begin + s[i].count < s[i].begin)
        rc = st_fail(ST_EINPUT,
                     "checkpoint slice of '%s': elements [%llu, %llu) outside the tensor's %llu",
                     t->name, (unsigned long long)s[i].begin,
                     (unsigned long long)(s[i].begin + s[i].count), (unsigned long long)t->numel);
      else if (s[i].kind != CKPT_PARAM && !t->trainable)
        rc = st_fail(ST_EINPUT, "checkpoint slice: %s of frozen tensor '%s' (only trainable "
                     "tensors have a master copy and AdamW moments)",
                     ckpt_kind_group(s[i].kind), t->name);
      else if (s[i].count && !s[i].data)
        rc = st_fail(ST_EINPUT, "checkpoint slice of '%s': NULL data", t->name);
    }
  }
  if (!rc) {
    sort_base_ = s;
    qsort(idx, (size_t)ns, sizeof(int), cmp_slice_);
    for (int i = 0; i < ns; i++) {
      g->ord[i] = &s[idx[i]];
      g->start[g->ord[i]->kind * tt->n + g->ord[i]->tensor + 1]++;
      if (i > 0 && g->ord[i - 1]->kind == g->ord[i]->kind &&
          g->ord[i - 1]->tensor == g->ord[i]->tensor &&
          g->ord[i - 1]->begin + g->ord[i - 1]->count > g->ord[i]->begin)
        rc = st_fail(ST_EINPUT, "checkpoint slices of %s/%s overlap at element %llu",
                     ckpt_kind_group(g->ord[i]->kind), tt->t[g->ord[i]->tensor].name,
                     (unsigned long long)g->ord[i]->begin);
    }
    for (int d = 0; d < nd; d++) g->start[d + 1] += g->start[d];
  }
  free(idx);
  return rc;
}

static void groups_free_(groups_ *g) {
  free(g->ord);
  free(g->start);
}

static part_ part_of_(const groups_ *g, int d) {
  part_ p = {g->ord + g->start[d], g->start[d + 1] - g->start[d], 0};
  for (int i = 0; i < p.n; i++) p.total += p.s[i]->count;
  return p;
}

/* Make every rank return the same status; a rank that did not fail itself gets a message
 * saying another one did (its own message, if any, is kept). */
static int agree_(int rc, const char *path) {
  int all = comm_max_status(rc);
  if (all && !rc)
    st_fail(all, "checkpoint %s: another rank failed (see its message)", path);
  return all;
}

/* ---- small metadata ------------------------------------------------------------------ */

static int attr_write_(hid_t obj, const char *name, hid_t type, int n, const void *v) {
  hsize_t d = (hsize_t)n;
  hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
  hid_t ftype = type == H5T_NATIVE_UINT64 ? H5T_STD_U64LE
                : type == H5T_NATIVE_INT  ? H5T_STD_I32LE
                                          : H5T_IEEE_F64LE;
  hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = a < 0 ? -1 : H5Awrite(a, type, v);
  close_(&a, H5Aclose);
  H5Sclose(sp);
  return e < 0 ? st_fail(ST_ERUNTIME, "HDF5: cannot write attribute '%s'", name) : 0;
}

static int attr_read_(hid_t obj, const char *name, hid_t type, int n, void *v) {
  if (H5Aexists(obj, name) <= 0)
    return st_fail(ST_EINPUT, "attribute '%s' missing", name);
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t sp = a < 0 ? -1 : H5Aget_space(a);
  hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
  herr_t e = np != n ? -1 : H5Aread(a, type, v);
  close_(&sp, H5Sclose);
  close_(&a, H5Aclose);
  return e < 0 ? st_fail(ST_EINPUT, "attribute '%s': expected %d value(s), found %lld", name, n,
                         (long long)np)
               : 0;
}

/* Write a dataset of fixed-length strings (n == -1: one scalar string). Rank 0 writes the
 * data, the others take part with empty selections. */
static int strings_write_(hid_t file, const char *path, char *const *v, int n, hid_t dxpl) {
  int scalar = n < 0;
  int cnt = scalar ? 1 : n;
  size_t width = 1;
  for (int i = 0; i < cnt; i++) {
    size_t l = strlen(v[i] ? v[i] : "") + 1;
    if (l > width) width = l;
  }
  char *buf = xcalloc((size_t)(cnt ? cnt : 1), width);
  for (int i = 0; i < cnt; i++)
    if (v[i]) memcpy(buf + (size_t)i * width, v[i], strlen(v[i]));
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, width);
  H5Tset_strpad(type, H5T_STR_NULLTERM);
  hsize_t d = (hsize_t)cnt;
  hid_t fs = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
  hid_t ds = H5Dcreate2(file, path, type, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t e = ds < 0 ? -1 : 0;
  if (ds >= 0 && cnt > 0) {
    hid_t ms = H5Scopy(fs);
    if (comm_rank() != 0) H5Sselect_none(ms), H5Sselect_none(fs);
    e = H5Dwrite(ds, type, ms, fs, dxpl, buf);
    H5Sclose(ms);
  }
  close_(&ds, H5Dclose);
  H5Sclose(fs);
  H5Tclose(type);
  free(buf);
  return e < 0 ? st_fail(ST_ERUNTIME, "HDF5: cannot write '%s'", path) : 0;
}

/* Read a string dataset: *n strings (n == NULL: a scalar into *v[0]). Every rank reads. */
static int strings_read_(hid_t file, const char *path, char ***v, int *n, hid_t dxpl) {
  *v = NULL;
  if (n) *n = 0;
  if (H5Lexists(file, path, H5P_DEFAULT) <= 0) return st_fail(ST_EINPUT, "'%s' missing", path);
  hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
  hid_t type = ds < 0 ? -1 : H5Dget_type(ds);
  hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
  int rc = 0;
  if (type < 0 || sp < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) > 0) {
    rc = st_fail(ST_EINPUT, "'%s': expected fixed-length strings", path);
  } else {
    size_t width = H5Tget_size(type);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    char *buf = xcalloc((size_t)(cnt > 0 ? cnt : 1), width);
    hid_t mt = H5Tcopy(type);
    if (cnt > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, dxpl, buf) < 0) {
      rc = st_fail(ST_EINPUT, "'%s': read failed", path);
    } else {
      *v = xcalloc((size_t)(cnt > 0 ? cnt : 1), sizeof(char *));
      for (hssize_t i = 0; i < cnt; i++) {
        (*v)[i] = xcalloc(1, width + 1);
        memcpy((*v)[i], buf + (size_t)i * width, width);
      }
      if (n) *n = (int)cnt;
    }
    H5Tclose(mt);
    free(buf);
  }
  close_(&sp, H5Sclose);
  close_(&type, H5Tclose);
  close_(&ds, H5Dclose);
  return rc;
}

static int meta_write_(hid_t file, const tensor_table *tt, const ckpt_meta *m, hid_t dxpl) {
  int rc = 0, ver = CKPT_FORMAT_VERSION, ws = comm_size(), hm = m->have_master ? 1 : 0;
  uint64_t u[6] = {m->step, m->tokens_seen, m->data_seed, m->data_epoch, m->data_sample,
                   m->global_batch};
  const char *un[6] = {"step", "tokens_seen", "data_seed", "data_epoch", "data_sample_index",
                       "global_batch_size"};
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  rc = rc ? rc : attr_write_(root, "format_version", H5T_NATIVE_INT, 1, &ver);
  for (int i = 0; i < 6; i++) rc = rc ? rc : attr_write_(root, un[i], H5T_NATIVE_UINT64, 1, &u[i]);
  rc = rc ? rc : attr_write_(root, "rng_state", H5T_NATIVE_UINT64, 4, m->rng.s);
  rc = rc ? rc : attr_write_(root, "lr", H5T_NATIVE_DOUBLE, 1, &m->lr);
  rc = rc ? rc : attr_write_(root, "elapsed_s", H5T_NATIVE_DOUBLE, 1, &m->elapsed_s);
  rc = rc ? rc : attr_write_(root, "world_size", H5T_NATIVE_INT, 1, &ws);
  rc = rc ? rc : attr_write_(root, "have_master", H5T_NATIVE_INT, 1, &hm);
  close_(&root, H5Gclose);
  hid_t g = H5Gcreate2(file, "/meta", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  close_(&g, H5Gclose);
  char *txt[1];
  txt[0] = m->job_text ? m->job_text : "";
  rc = rc ? rc : strings_write_(file, "/meta/job", txt, -1, dxpl);
  txt[0] = m->job_sets ? m->job_sets : "";
  rc = rc ? rc : strings_write_(file, "/meta/job_sets", txt, -1, dxpl);
  txt[0] = m->config_json ? m->config_json : "";
  rc = rc ? rc : strings_write_(file, "/meta/config_json", txt, -1, dxpl);
  if (m->snr_json) {
    txt[0] = m->snr_json;
    rc = rc ? rc : strings_write_(file, "/meta/snr_json", txt, -1, dxpl);
  }
  rc = rc ? rc : strings_write_(file, "/meta/trainable", m->trainable, m->n_trainable, dxpl);
  char **names = xmalloc((size_t)tt->n * sizeof(char *));
  for (int i = 0; i < tt->n; i++) names[i] = (char *)tt->t[i].name;
  rc = rc ? rc : strings_write_(file, "/meta/tensors", names, tt->n, dxpl);
  free(names);
  return rc;
}

static int meta_read_(hid_t file, ckpt_meta *m, hid_t dxpl) {
  memset(m, 0, sizeof *m);
  int rc = 0, ver = 0;
  uint64_t *u[6] = {&m->step, &m->tokens_seen, &m->data_seed, &m->data_epoch, &m->data_sample,
                    &m->global_batch};
  const char *un[6] = {"step", "tokens_seen", "data_seed", "data_epoch", "data_sample_index",
                       "global_batch_size"};
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  rc = attr_read_(root, "format_version", H5T_NATIVE_INT, 1, &ver);
  if (!rc && ver != CKPT_FORMAT_VERSION)
    rc = st_fail(ST_EINPUT, "format_version %d, this spectrain reads version %d", ver,
                 CKPT_FORMAT_VERSION);
  for (int i = 0; i < 6; i++) rc = rc ? rc : attr_read_(root, un[i], H5T_NATIVE_UINT64, 1, u[i]);
  rc = rc ? rc : attr_read_(root, "rng_state", H5T_NATIVE_UINT64, 4, m->rng.s);
  rc = rc ? rc : attr_read_(root, "lr", H5T_NATIVE_DOUBLE, 1, &m->lr);
  rc = rc ? rc : attr_read_(root, "elapsed_s", H5T_NATIVE_DOUBLE, 1, &m->elapsed_s);
  rc = rc ? rc : attr_read_(root, "world_size", H5T_NATIVE_INT, 1, &m->world_size);
  rc = rc ? rc : attr_read_(root, "have_master", H5T_NATIVE_INT, 1, &m->have_master);
  close_(&root, H5Gclose);
  char **v;
  if (!rc && !(rc = strings_read_(file, "/meta/job", &v, NULL, dxpl))) m->job_text = v[0], free(v);
  if (!rc && !(rc = strings_read_(file, "/meta/job_sets", &v, NULL, dxpl)))
    m->job_sets = v[0], free(v);
  if (!rc && !(rc = strings_read_(file, "/meta/config_json", &v, NULL, dxpl)))
    m->config_json = v[0], free(v);
  if (!rc && H5Lexists(file, "/meta/snr_json", H5P_DEFAULT) > 0 &&
      !(rc = strings_read_(file, "/meta/snr_json", &v, NULL, dxpl)))
    m->snr_json = v[0], free(v);
  if (!rc) rc = strings_read_(file, "/meta/trainable", &m->trainable, &m->n_trainable, dxpl);
  return rc;
}

/* ---- save ------------------------------------------------------------------------------ */

static int fsync_path_(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return st_fail(ST_ERUNTIME, "cannot open %s for fsync: %s", path, strerror(errno));
  int e = fsync(fd);
  int err = errno;
  close(fd);
  return e ? st_fail(ST_ERUNTIME, "fsync %s: %s", path, strerror(err)) : 0;
}

static long env_long_(const char *name, long dflt) {
  const char *s = getenv(name);
  return s && *s ? strtol(s, NULL, 10) : dflt;
}

/* Rank-count independent checksums and coverage counts of every dataset, summed over ranks.
 * Index d = kind * ntensors + tensor. */
static int checksums_(const tensor_table *tt, const ckpt_slice *s, int ns, uint64_t *cs,
                      uint64_t *cover) {
  int nd = CKPT_NKINDS * tt->n;
  memset(cs, 0, (size_t)nd * sizeof *cs);
  memset(cover, 0, (size_t)nd * sizeof *cover);
  for (int i = 0; i < ns; i++) {
    int d = s[i].kind * tt->n + s[i].tensor;
    cs[d] += ckpt_hash_range(s[i].begin, s[i].count, s[i].data);
    cover[d] += s[i].count;
  }
  int rc = comm_allreduce_sum_u64(cs, nd);
  return rc ? rc : comm_allreduce_sum_u64(cover, nd);
}

static int dataset_wanted_(const tensor_desc *t, ckpt_kind k, int have_master) {
  if (k == CKPT_PARAM) return 1;
  if (!t->trainable) return 0;
  return k != CKPT_MASTER || have_master;
}

/* Test hook (h5.h): a pause inside a save, announced by a file, for node-loss tests. */
static void test_pause_(uint64_t step) {
  const char *mark = getenv("SPECTRAIN_TEST_CKPT_PAUSE_MARK");
  if (mark) {
    char *p = xasprintf("%s.%d", mark, comm_rank());
    FILE *f = fopen(p, "w");
    if (f) {
      fprintf(f, "%llu\n", (unsigned long long)step);
      fclose(f);
    }
    free(p);
  }
  struct timespec ts = {env_long_("SPECTRAIN_TEST_CKPT_PAUSE_S", 1), 0};
  nanosleep(&ts, NULL);
}

/* Test hooks at the named points of a save (h5.h): "create" (before the file exists),
 * "closed" (the .tmp complete and closed), "renamed" (rank 0: ckpt-N.h5 exists, the folder
 * not yet fsync'd), "committed" (rank 0: after the leftovers and old checkpoints are
 * removed). */
static void test_point_(const char *phase, uint64_t step) {
  long kill_step = env_long_("SPECTRAIN_TEST_CKPT_KILL_STEP", -1);
  if (kill_step >= 0 && (uint64_t)kill_step != step) return;
  const char *k = getenv("SPECTRAIN_TEST_CKPT_KILL_PHASE");
  if (k && strcmp(k, phase) == 0 &&
      comm_rank() == env_long_("SPECTRAIN_TEST_CKPT_KILL_RANK", comm_size() - 1))
    raise(SIGKILL);
  const char *p = getenv("SPECTRAIN_TEST_CKPT_PAUSE_PHASE");
  if (p && strcmp(p, phase) == 0) test_pause_(step);
}

/* Bytes to ask the file system for before writing: the tensors, the strings and a bound on
 * HDF5's own metadata (object headers, attributes, group indexes: about 0.7 KiB a dataset
 * measured; 1 KiB reserved) plus the superblock and root group. Blocks reserved past the
 * file's end are freed after the close (fs_trim). */
static uint64_t file_bytes_(const tensor_table *tt, const ckpt_meta *m, uint64_t tensor_bytes) {
  uint64_t b = tensor_bytes + 16 * 1024, width = 1, nds = 0;
  const char *txt[4] = {m->job_text, m->job_sets, m->config_json, m->snr_json};
  for (int i = 0; i < 4; i++) b += txt[i] ? strlen(txt[i]) + 1 : 1;
  for (int i = 0; i < tt->n; i++) {
    uint64_t l = strlen(tt->t[i].name) + 1;
    if (l > width) width = l;
    nds += 1 + (tt->t[i].trainable ? 2 + (m->have_master ? 1 : 0) : 0);
  }
  return b + 2 * width * (uint64_t)tt->n + 1024 * nds;
}

/* A tensor write failed on this rank: say why, as far as it can be known. MPI-IO's error
 * codes do not carry errno; a file system with less free space than the rest of the file
 * needs is the disk-full case (the MPI-IO layer may have printed the system's message). */
static int write_failed_(const char *tmp, const char *what, uint64_t still_needed) {
  uint64_t fr = fs_free_bytes(tmp);
  if (fr != UINT64_MAX && fr < still_needed) {
    char why[160];
    fs_write_error(ENOSPC, tmp, why, sizeof why);
    return st_fail(ST_ERUNTIME, "%s: writing %s failed: %s", tmp, what, why);
  }
  return st_fail(ST_ERUNTIME, "%s: writing %s failed (HDF5 / MPI-IO; the I/O layer's message, "
                 "if any, is above)", tmp, what);
}

/* Create the file and write everything; returns the status agreed by every rank. After
 * the first failure on any rank (agreed after every dataset: a rank that went on alone
 * would leave the others in a different collective) nothing more is written and the file
 * is closed without a flush: parallel HDF5's flush after a failed write does not return on
 * every rank. `reserve`: bytes rank 0 allocates for the file first (0: none). */
static int write_file_(const char *tmp, const tensor_table *tt, const ckpt_meta *m,
                       const groups_ *g, const uint64_t *cs, uint64_t reserve,
                       uint64_t tensor_bytes) {
  int rc = 0, me = comm_rank();
  long kill_after = env_long_("SPECTRAIN_TEST_CKPT_KILL_AFTER_TENSORS", -1);
  long kill_rank = env_long_("SPECTRAIN_TEST_CKPT_KILL_RANK", comm_size() - 1);
  long kill_step = env_long_("SPECTRAIN_TEST_CKPT_KILL_STEP", -1);
  if (kill_step >= 0 && (uint64_t)kill_step != m->step) kill_after = -1;
  long pause_after = env_long_("SPECTRAIN_TEST_CKPT_PAUSE_AFTER_TENSORS", -1);
  if (kill_step >= 0 && (uint64_t)kill_step != m->step) pause_after = -1;
  hid_t fapl = fapl_(1), dxpl = dxpl_(1);
  hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  close_(&fapl, H5Pclose);
  if (file < 0) {
    H5Pclose(dxpl);
    char why[160] = "";
    if (me == 0) { /* the system's reason, asked directly */
      int fd = open(tmp, O_WRONLY | O_CREAT, 0644);
      if (fd < 0) fs_write_error(errno, tmp, why, sizeof why);
      else close(fd);
    }
    return agree_(st_fail(ST_ERUNTIME, "cannot create checkpoint file %s (HDF5 with MPI-IO)%s%s",
                          tmp, why[0] ? ": " : "", why), tmp);
  }
  /* the space first: a full disk or quota is found here, with the system's reason, before
   * anything is written (and, where the file system preallocates, cannot strike later) */
  if (me == 0 && reserve) rc = fs_reserve(tmp, reserve);
  rc = agree_(rc, tmp);
  if (!rc) rc = agree_(meta_write_(file, tt, m, dxpl), tmp);
  hid_t grp[CKPT_NKINDS];
  for (int k = 0; k < CKPT_NKINDS; k++) grp[k] = -1;
  if (!rc) {
    hid_t optim = H5Gcreate2(file, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int k = 0; k < CKPT_NKINDS; k++)
      grp[k] = k == CKPT_MASTER && !m->have_master
                   ? -1
                   : H5Gcreate2(file, ckpt_kind_group(k), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    close_(&optim, H5Gclose);
  }
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every element is written: no fill pass */
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  long written = 0;
  uint64_t done_bytes = 0;
  for (int k = 0; k < CKPT_NKINDS && !rc; k++) {
    for (int i = 0; i < tt->n && !rc; i++) {
      const tensor_desc *t = &tt->t[i];
      if (!dataset_wanted_(t, (ckpt_kind)k, m->have_master)) continue;
      int d = k * tt->n + i;
      hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim == 2 ? (hsize_t)t->shape[1] : 1};
      hid_t fs = H5Screate_simple(t->ndim, dims, NULL);
      hid_t ds = grp[k] < 0 ? -1
                            : H5Dcreate2(grp[k], t->name, H5T_IEEE_F32LE, fs, H5P_DEFAULT, dcpl,
                                         H5P_DEFAULT);
      H5Sclose(fs);
      char what[320];
      snprintf(what, sizeof what, "%s/%s", ckpt_kind_group(k), t->name);
      uint64_t left = tensor_bytes > done_bytes ? tensor_bytes - done_bytes : 0;
      if (ds < 0) { /* every rank fails the create alike */
        rc = agree_(write_failed_(tmp, what, left), tmp);
        break;
      }
      int r = attr_write_(ds, "checksum", H5T_NATIVE_UINT64, 1, &cs[d]);
      part_ p = part_of_(g, d);
      r = xfer_(ds, t, &p, 1, dxpl) || r;
      close_(&ds, H5Dclose);
      rc = agree_(r ? write_failed_(tmp, what, left) : 0, tmp);
      done_bytes += t->numel * sizeof(float);
      if (++written == kill_after && me == kill_rank) raise(SIGKILL); /* test hook */
      if (written == pause_after) test_pause_(m->step);                /* test hook */
    }
  }
  H5Pclose(dcpl);
  for (int k = 0; k < CKPT_NKINDS; k++) close_(&grp[k], H5Gclose);
  H5Pclose(dxpl);
  if (rc) {
    /* Parallel HDF5's close flushes the metadata cache, and a metadata write that fails
     * there (the disk still full) takes the ranks down different paths that wait for each
     * other forever. So the file's data, worthless now, is dropped first: the close then
     * has room for its few KiB (the file is removed after it). */
    if (me == 0 && truncate(tmp, 0) != 0)
      log_warn("%s: cannot truncate after the failed write: %s", tmp, strerror(errno));
    comm_max_status(0); /* nobody closes before the space is back */
  }
  int lrc = 0;
  if (!rc && H5Fflush(file, H5F_SCOPE_GLOBAL) < 0)
    lrc = write_failed_(tmp, "the file's metadata (HDF5 flush)", 1 << 20);
  ssize_t open_ids = H5Fget_obj_count(file, H5F_OBJ_ALL) - 1; /* the file itself */
  if (open_ids > 0 && !rc && !lrc)
    lrc = st_fail(ST_ERUNTIME, "internal: %zd HDF5 handles still open in %s", open_ids, tmp);
  if (H5Fclose(file) < 0 && !rc && !lrc)
    lrc = write_failed_(tmp, "the file's metadata (HDF5 close)", 1 << 20);
  if (!rc) rc = agree_(lrc, tmp);
  if (!rc) test_point_("closed", m->step);
  return rc;
}

/* After a commit (rank 0): remove leftovers of interrupted saves and the oldest
 * checkpoints beyond the limit. The new one always stays, also when an older run left
 * checkpoints with higher steps. */
static void prune_(const char *dir, uint64_t step, int limit) {
  uint64_t *steps = NULL;
  char **paths = NULL;
  int n = 0, kept = 1;
  if (ckpt_list(dir, 0, &steps, &paths, &n)) return;
  for (int i = 0; i < n; i++) {
    if (steps[i] == step) continue;
    if (limit > 0 && kept >= limit) {
      if (unlink(paths[i]) == 0) log_info("checkpoint: removed %s (save_total_limit %d)", paths[i], limit);
    } else {
      kept++;
    }
  }
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
  free(steps);
}

int ckpt_save(const char *dir, const tensor_table *tt, const ckpt_meta *meta,
              const ckpt_slice *s, int ns, const ckpt_save_opts *o, ckpt_save_stats *st) {
  h5_quiet_();
  double t0 = time_now_s();
  ckpt_save_stats local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  snprintf(st->path, sizeof st->path, "%s/ckpt-%llu.h5", dir, (unsigned long long)meta->step);
  char *tmp = xasprintf("%s.tmp", st->path);
  groups_ g = {0};
  int nd = CKPT_NKINDS * tt->n;
  uint64_t *cs = xcalloc((size_t)nd, sizeof *cs), *cover = xcalloc((size_t)nd, sizeof *cover);
  int rc = group_slices_(tt, s, ns, &g);
  if (!rc && comm_rank() == 0) rc = fs_mkdir_p(dir);
  rc = agree_(rc, st->path);
  if (!rc) rc = checksums_(tt, s, ns, cs, cover);
  for (int k = 0; k < CKPT_NKINDS && !rc; k++)
    for (int i = 0; i < tt->n && !rc; i++) {
      const tensor_desc *t = &tt->t[i];
      uint64_t want = dataset_wanted_(t, (ckpt_kind)k, meta->have_master) ? t->numel : 0;
      uint64_t got = cover[k * tt->n + i];
      if (got != want) /* same on every rank: the counts are summed over ranks */
        rc = st_fail(ST_EINPUT,
                     "checkpoint %s: %s/%s: the ranks' slices cover %llu elements, expected %llu "
                     "(each element exactly once%s)",
                     st->path, ckpt_kind_group(k), t->name, (unsigned long long)got,
                     (unsigned long long)want,
                     k == CKPT_MASTER && !meta->have_master ? "; have_master is 0" : "");
    }
  for (int k = 0; k < CKPT_NKINDS; k++)
    for (int i = 0; i < tt->n; i++)
      if (dataset_wanted_(&tt->t[i], (ckpt_kind)k, meta->have_master))
        st->tensor_bytes += tt->t[i].numel * sizeof(float);
  int created = 0; /* rank 0 removes the .tmp of a save that failed */
  if (!rc) {
    double w0 = time_now_s();
    uint64_t reserve = getenv("SPECTRAIN_TEST_CKPT_NO_RESERVE") /* test hook (h5.h) */
                           ? 0
                           : file_bytes_(tt, meta, st->tensor_bytes);
    test_point_("create", meta->step);
    created = 1;
    /* a disk too full for the file is found before HDF5 opens it (its close needs room) */
    int r = 0;
    if (comm_rank() == 0 && reserve) {
      int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) {
        char why[160];
        fs_write_error(errno, tmp, why, sizeof why);
        r = st_fail(ST_ERUNTIME, "%s: cannot create: %s", tmp, why);
      } else {
        close(fd);
        r = fs_reserve(tmp, reserve);
      }
    }
    rc = agree_(r, tmp);
    if (!rc) rc = write_file_(tmp, tt, meta, &g, cs, reserve, st->tensor_bytes);
    st->write_seconds = time_now_s() - w0;
  }
  if (!rc) {
    int r = 0;
    if (comm_rank() == 0) {
      r = fs_trim(tmp); /* blocks reserved past the end */
      if (!r) r = fsync_path_(tmp);
      if (!r && rename(tmp, st->path) != 0)
        r = st_fail(ST_ERUNTIME, "cannot rename %s to %s: %s", tmp, st->path, strerror(errno));
      if (!r) {
        created = 0;
        test_point_("renamed", meta->step);
        r = fsync_path_(dir);
      }
      if (!r) {
        ckpt_remove_tmp(dir, tmp, 0);
        prune_(dir, meta->step, o ? o->save_total_limit : 0);
        test_point_("committed", meta->step);
      }
    }
    rc = agree_(r, st->path);
  }
  if (rc && created && comm_rank() == 0) {
    /* a failed save leaves nothing behind: every rank has closed the file (write_file_'s
     * close is collective) */
    if (unlink(tmp) == 0 || errno == ENOENT)
      st_fail_ctx(rc, "checkpoint of step %llu not written (%s removed; the checkpoints "
                  "already in %s are unchanged): ",
                  (unsigned long long)meta->step, tmp, dir);
    else
      st_fail_ctx(rc, "checkpoint of step %llu not written (%s could not be removed: %s): ",
                  (unsigned long long)meta->step, tmp, strerror(errno));
  }
  st->seconds = time_now_s() - t0;
  groups_free_(&g);
  free(cs);
  free(cover);
  free(tmp);
  return rc;
}

/* ---- load and verify --------------------------------------------------------------------- */

/* Open the dataset for tensor t of kind k and check its shape; -1 with a message if not. */
static hid_t open_tensor_(hid_t file, const char *grp, const tensor_desc *t, const char *path) {
  char *name = xasprintf("%s/%s", grp, t->name);
  hid_t ds = -1;
  if (H5Lexists(file, grp, H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    st_fail(ST_EINPUT, "checkpoint %s has no dataset %s (does it belong to this model and "
            "trainable set?)", path, name);
  } else {
    ds = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    close_(&sp, H5Sclose);
    int ok = nd == t->ndim && dims[0] == (hsize_t)t->shape[0] &&
             (nd == 1 || dims[1] == (hsize_t)t->shape[1]);
    if (!ok) {
      st_fail(ST_EINPUT, "checkpoint %s: %s has shape (%llu%s%llu), the model expects (%lld%s%lld)",
              path, name, (unsigned long long)dims[0], nd == 2 ? ", " : "",
              nd == 2 ? (unsigned long long)dims[1] : 0ULL, (long long)t->shape[0],
              t->ndim == 2 ? ", " : "", t->ndim == 2 ? (long long)t->shape[1] : 0LL);
      close_(&ds, H5Dclose);
    }
  }
  free(name);
  return ds;
}

static hid_t open_collective_(const char *path) {
  hid_t fapl = fapl_(1);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (f < 0)
    st_fail(ST_EINPUT, "cannot open checkpoint %s: not an HDF5 file, truncated, or missing",
            path);
  return f;
}

int ckpt_read_meta(const char *path, int collective, ckpt_meta *meta) {
  h5_quiet_();
  memset(meta, 0, sizeof *meta);
  hid_t fapl = fapl_(collective);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (f < 0)
    return st_fail(ST_EINPUT, "cannot open checkpoint %s: not an HDF5 file, truncated, or missing",
                   path);
  hid_t dxpl = dxpl_(collective);
  int rc = meta_read_(f, meta, dxpl);
  H5Pclose(dxpl);
  H5Fclose(f);
  if (rc) {
    st_fail_ctx(rc, "checkpoint %s: ", path);
    ckpt_meta_free(meta);
  }
  return rc;
}

int ckpt_load(const char *path, const tensor_table *tt, const ckpt_slice *s, int ns) {
  h5_quiet_();
  groups_ g = {0};
  int nd = CKPT_NKINDS * tt->n;
  uint64_t *need = xcalloc((size_t)nd, sizeof *need);
  int rc = group_slices_(tt, s, ns, &g);
  for (int i = 0; i < ns && !rc; i++) need[s[i].kind * tt->n + s[i].tensor] = 1;
  rc = agree_(rc, path);
  if (!rc) rc = comm_allreduce_sum_u64(need, nd); /* which datasets any rank reads */
  hid_t f = rc ? -1 : open_collective_(path);
  if (!rc && f < 0) rc = ST_EINPUT; /* H5Fopen is collective: all ranks see the same */
  int have_master = 0;
  if (!rc) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    rc = attr_read_(root, "have_master", H5T_NATIVE_INT, 1, &have_master);
    H5Gclose(root);
    if (rc) st_fail_ctx(rc, "checkpoint %s: ", path);
  }
  hid_t dxpl = dxpl_(1);
  int lrc = 0;
  for (int k = 0; k < CKPT_NKINDS && !rc; k++) {
    /* Without a master copy in the file, master slices are filled from /params. */
    const char *grp = ckpt_kind_group(k == CKPT_MASTER && !have_master ? CKPT_PARAM : k);
    for (int i = 0; i < tt->n && !rc; i++) {
      int d = k * tt->n + i;
      if (!need[d]) continue;
      hid_t ds = open_tensor_(f, grp, &tt->t[i], path); /* same outcome on every rank */
      if (ds < 0) {
        rc = ST_EINPUT;
        break;
      }
      part_ p = part_of_(&g, d);
      if (xfer_(ds, &tt->t[i], &p, 0, dxpl) && !lrc) lrc = ST_ERUNTIME;
      H5Dclose(ds);
    }
  }
  H5Pclose(dxpl);
  if (f >= 0 && H5Fclose(f) < 0 && !lrc) lrc = st_fail(ST_ERUNTIME, "HDF5 close of %s failed", path);
  rc = rc ? rc : agree_(lrc, path);
  groups_free_(&g);
  free(need);
  return rc;
}

/* Elements per read when verifying: bounds the buffer (64 MiB). */
#define VERIFY_CHUNK_ELEMS ((uint64_t)16 << 20)

int ckpt_verify(const char *path) {
  h5_quiet_();
  int me = comm_rank(), np = comm_size(), rc = 0, lrc = 0;
  hid_t f = open_collective_(path);
  if (f < 0) return ST_EINPUT;
  hid_t dxpl = dxpl_(1);
  char **names = NULL;
  int n = 0;
  rc = strings_read_(f, "/meta/tensors", &names, &n, dxpl);
  /* the trainable tensors' moments (and master copies) must all be there: a file that
   * lacks one would verify here and fail only when loaded, instead of being skipped */
  char **tr = NULL;
  int ntr = 0, have_master = 0;
  if (!rc) rc = strings_read_(f, "/meta/trainable", &tr, &ntr, dxpl);
  if (!rc) {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    rc = attr_read_(root, "have_master", H5T_NATIVE_INT, 1, &have_master);
    close_(&root, H5Gclose);
  }
  if (rc) st_fail_ctx(rc, "checkpoint %s: ", path);
  float *buf = NULL;
  for (int k = 0; k < CKPT_NKINDS && !rc; k++) {
    hid_t grp = H5Lexists(f, ckpt_kind_group(k), H5P_DEFAULT) > 0 ? H5Gopen2(f, ckpt_kind_group(k), H5P_DEFAULT) : -1;
    if (grp < 0) {
      if (k == CKPT_PARAM || k == CKPT_M || k == CKPT_V || have_master) /* always there */
        rc = st_fail(ST_EINPUT, "checkpoint %s: group %s missing", path, ckpt_kind_group(k));
      continue;
    }
    for (int i = 0; i < n && !rc; i++) {
      if (H5Lexists(grp, names[i], H5P_DEFAULT) <= 0) {
        int trainable = 0;
        for (int j = 0; j < ntr && !trainable; j++) trainable = strcmp(tr[j], names[i]) == 0;
        if (k == CKPT_PARAM || trainable)
          rc = st_fail(ST_EINPUT, "checkpoint %s: %s/%s missing%s", path, ckpt_kind_group(k),
                       names[i], k == CKPT_PARAM ? "" : " (the tensor is trainable)");
        continue;
      }
      hid_t ds = H5Dopen2(grp, names[i], H5P_DEFAULT);
      hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
      tensor_desc t = {0};
      snprintf(t.name, sizeof t.name, "%s/%s", ckpt_kind_group(k), names[i]);
      hsize_t dims[2] = {0, 1};
      t.ndim = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
      close_(&sp, H5Sclose);
      uint64_t want = 0;
      if (ds < 0 || t.ndim < 1 || t.ndim > 2 ||
          attr_read_(ds, "checksum", H5T_NATIVE_UINT64, 1, &want)) {
        rc = st_fail(ST_EINPUT, "checkpoint %s: %s unreadable or without checksum", path, t.name);
        close_(&ds, H5Dclose);
        break;
      }
      t.shape[0] = (int64_t)dims[0], t.shape[1] = (int64_t)dims[1];
      t.numel = dims[0] * (t.ndim == 2 ? dims[1] : 1);
      /* this rank hashes [lo, hi) in chunks; every rank does the same number of reads */
      uint64_t lo = t.numel * (uint64_t)me / (uint64_t)np;
      uint64_t hi = t.numel * (uint64_t)(me + 1) / (uint64_t)np;
      uint64_t maxpart = (t.numel + (uint64_t)np - 1) / (uint64_t)np;
      uint64_t nchunks = (maxpart + VERIFY_CHUNK_ELEMS - 1) / VERIFY_CHUNK_ELEMS, h = 0;
      if (!buf) buf = xmalloc(VERIFY_CHUNK_ELEMS * sizeof(float));
      for (uint64_t c = 0; c < nchunks; c++) {
        uint64_t b = lo + c * VERIFY_CHUNK_ELEMS;
        uint64_t cnt = b >= hi ? 0 : (hi - b < VERIFY_CHUNK_ELEMS ? hi - b : VERIFY_CHUNK_ELEMS);
        ckpt_slice sl = {0, (ckpt_kind)k, b, cnt, buf};
        const ckpt_slice *ps = &sl;
        part_ p = {&ps, cnt ? 1 : 0, cnt};
        if (xfer_(ds, &t, &p, 0, dxpl)) {
          lrc = ST_EINPUT;
          st_fail(ST_EINPUT, "checkpoint %s: reading %s failed (truncated?)", path, t.name);
        }
        h += ckpt_hash_range(b, cnt, buf);
      }
      close_(&ds, H5Dclose);
      uint64_t hv[2] = {h, lrc ? 1 : 0};
      comm_allreduce_sum_u64(hv, 2);
      if (hv[1]) {
        rc = lrc ? lrc : st_fail(ST_EINPUT, "checkpoint %s: reading %s failed on another rank",
                                 path, t.name);
      } else if (hv[0] != want) {
        rc = st_fail(ST_EINPUT,
                     "checkpoint %s: %s checksum mismatch (stored %016llx, data %016llx): the "
                     "file is corrupt",
                     path, t.name, (unsigned long long)want, (unsigned long long)hv[0]);
      }
    }
    close_(&grp, H5Gclose);
  }
  free(buf);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  for (int i = 0; i < ntr; i++) free(tr[i]);
  free(tr);
  H5Pclose(dxpl);
  H5Fclose(f);
  return rc;
}

/* ---- serial reader (inspect, export) ----------------------------------------------------- */

struct ckpt_reader {
  hid_t file;
};

int ckpt_reader_open(const char *path, ckpt_reader **rp, ckpt_meta *meta, ckpt_entry **ep,
                     int *np) {
  h5_quiet_();
  *rp = NULL;
  *ep = NULL;
  *np = 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    return st_fail(ST_EINPUT, "cannot open checkpoint %s: not an HDF5 file, truncated, or missing",
                   path);
  char **names = NULL;
  int n = 0, rc = meta_read_(f, meta, H5P_DEFAULT);
  if (!rc) rc = strings_read_(f, "/meta/tensors", &names, &n, H5P_DEFAULT);
  ckpt_entry *e = xcalloc((size_t)(CKPT_NKINDS * n + 1), sizeof *e);
  int ne = 0;
  for (int k = 0; k < CKPT_NKINDS && !rc; k++) {
    if (H5Lexists(f, ckpt_kind_group(k), H5P_DEFAULT) <= 0) continue;
    hid_t g = H5Gopen2(f, ckpt_kind_group(k), H5P_DEFAULT);
    for (int i = 0; i < n && !rc; i++) {
      if (H5Lexists(g, names[i], H5P_DEFAULT) <= 0) continue;
      hid_t ds = H5Dopen2(g, names[i], H5P_DEFAULT);
      hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
      hsize_t dims[2] = {0, 1};
      int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
      ckpt_entry *x = &e[ne];
      snprintf(x->name, sizeof x->name, "%s", names[i]);
      x->kind = (ckpt_kind)k;
      x->ndim = nd;
      x->shape[0] = (int64_t)dims[0];
      x->shape[1] = (int64_t)dims[1];
      x->numel = dims[0] * (nd == 2 ? dims[1] : 1);
      if (nd < 1 || nd > 2 || attr_read_(ds, "checksum", H5T_NATIVE_UINT64, 1, &x->checksum))
        rc = st_fail(ST_EINPUT, "checkpoint %s: %s/%s unreadable or without checksum", path,
                     ckpt_kind_group(k), names[i]);
      close_(&sp, H5Sclose);
      close_(&ds, H5Dclose);
      ne++;
    }
    H5Gclose(g);
  }
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  if (rc) {
    free(e);
    ckpt_meta_free(meta);
    H5Fclose(f);
    return rc;
  }
  *rp = xcalloc(1, sizeof **rp);
  (*rp)->file = f;
  *ep = e;
  *np = ne;
  return 0;
}

int ckpt_reader_read(ckpt_reader *r, const ckpt_entry *e, float *out) {
  char *name = xasprintf("%s/%s", ckpt_kind_group(e->kind), e->name);
  hid_t ds = H5Dopen2(r->file, name, H5P_DEFAULT);
  herr_t x = ds < 0 ? -1 : H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  close_(&ds, H5Dclose);
  int rc = x < 0 ? st_fail(ST_EINPUT, "checkpoint: cannot read %s (truncated file?)", name) : 0;
  if (!rc && ckpt_hash_range(0, e->numel, out) != e->checksum)
    rc = st_fail(ST_EINPUT, "checkpoint: %s checksum mismatch: the file is corrupt", name);
  free(name);
  return rc;
}

void ckpt_reader_close(ckpt_reader *r) {
  if (!r) return;
  H5Fclose(r->file);
  free(r);
}
