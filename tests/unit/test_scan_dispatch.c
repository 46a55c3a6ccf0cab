/* spectrum/scan: where each matrix's SVD runs (scan_place: LAPACK on one rank, cuSOLVER on
 * the rank's GPU, or a ScaLAPACK grid), given its shape, the solver asked for, whether every
 * rank has a GPU, the GPU and host memory limits and the rank count; the --solver names; and,
 * on a machine without a GPU, `--solver gpu` failing with a message instead of quietly
 * running on the CPU. Expected values worked out by hand from the documented rule (scan.h)
 * and the memory estimates (LAPACK: 8 x (elements + workspace); grid: 2.2 x 8 x elements / g
 * + 32 x (m + n); GPU host side: a float copy). */
#include <unistd.h>

#include "kernels/gpu.h"
#include "spectrum/analyze.h"
#include "spectrum/scan.h"
#include "test.h"
#include "util/err.h"

static int place_(const scan_dispatch *d, int64_t rows, int64_t cols, int *g) {
  *g = -7;
  return scan_place(d, rows, cols, g);
}

int main(void) {
  int g;
  /* 4 ranks with GPUs taking up to 1e6 elements each, 1 GiB of host memory per rank */
  scan_dispatch d = {SCAN_SOLVER_AUTO, 1, 1000000, SCAN_GPU_MIN_DIM, 1ull << 30, 4};

  /* fits the GPU, both sides >= 256: cuSOLVER (wide and tall alike) */
  CHECK_EQ_INT(place_(&d, 512, 1024, &g), SCAN_ON_GPU);
  CHECK_EQ_INT(g, 0);
  CHECK_EQ_INT(place_(&d, 1024, 512, &g), SCAN_ON_GPU);
  CHECK_EQ_INT(place_(&d, 1000, 1000, &g), SCAN_ON_GPU); /* exactly the limit */
  CHECK_EQ_INT(place_(&d, 256, 3906, &g), SCAN_ON_GPU);  /* 999936 elements */
  /* one element over the GPU's limit: a 2-rank grid (share 8.8 MB + 64 KB <= 1 GiB), not
   * LAPACK, though one rank's host memory would hold it */
  CHECK_EQ_INT(place_(&d, 1000, 1001, &g), SCAN_ON_GRID);
  CHECK_EQ_INT(g, 2);
  CHECK_EQ_INT(place_(&d, 4096, 4096, &g), SCAN_ON_GRID);
  CHECK_EQ_INT(g, 2);
  /* auto: a short side under 256 stays on LAPACK; --solver gpu takes it */
  CHECK_EQ_INT(place_(&d, 255, 2000, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&d, 2000, 255, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&d, 256, 256, &g), SCAN_ON_GPU);
  /* 1-D (1 x d) and empty matrices need no SVD: always the CPU's edge cases */
  CHECK_EQ_INT(place_(&d, 1, 4096, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&d, 0, 0, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&d, 5, 0, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(g, 0);

  scan_dispatch dg = d;
  dg.solver = SCAN_SOLVER_GPU;
  CHECK_EQ_INT(place_(&dg, 255, 2000, &g), SCAN_ON_GPU);
  CHECK_EQ_INT(place_(&dg, 2, 3, &g), SCAN_ON_GPU);
  CHECK_EQ_INT(place_(&dg, 3000, 2, &g), SCAN_ON_GPU);
  CHECK_EQ_INT(place_(&dg, 1, 4096, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&dg, 1000, 1001, &g), SCAN_ON_GRID); /* too big for the GPU: grid */
  CHECK_EQ_INT(g, 2);

  /* --solver cpu, or a rank without a GPU: today's rule (LAPACK when one rank holds it) */
  scan_dispatch dc = d;
  dc.solver = SCAN_SOLVER_CPU;
  CHECK_EQ_INT(place_(&dc, 512, 1024, &g), SCAN_ON_CPU);
  CHECK_EQ_INT(place_(&dc, 4096, 4096, &g), SCAN_ON_CPU); /* 134 MB + work <= 1 GiB */
  scan_dispatch dn = d;
  dn.gpu_ok = 0;
  CHECK_EQ_INT(place_(&dn, 512, 1024, &g), SCAN_ON_CPU);
  dn.solver = SCAN_SOLVER_GPU; /* (the probe refuses this before placing: scan_run) */
  CHECK_EQ_INT(place_(&dn, 512, 1024, &g), SCAN_ON_CPU);
  scan_dispatch dz = d;
  dz.gpu_max_elems = 0; /* a GPU with no room at all */
  CHECK_EQ_INT(place_(&dz, 512, 1024, &g), SCAN_ON_CPU);

  /* host memory decides where the GPU can't: LAPACK needs 8 x (numel + work) on one rank */
  scan_dispatch dh = dc;
  dh.host_limit_bytes = 16100; /* the e2e grid case: 32 x 48 needs more on one rank */
  CHECK(scan_single_bytes(32, 48) > 16100);
  CHECK_EQ_INT(place_(&dh, 32, 48, &g), SCAN_ON_GRID);
  CHECK_EQ_INT(g, 2); /* 2.2 * 8 * 1536 / 2 + 32 * 80 = 16076 */
  CHECK_EQ_INT(place_(&dh, 16, 16, &g), SCAN_ON_CPU);

  /* fits the GPU, but the rank cannot hold the float copy (4 x 524288 + 8 x 512 = 2101248
   * bytes > 1.9e6): grid by host memory, 9227469 / g + 49152 <= 1.9e6 first at g = 5 */
  scan_dispatch d8 = d;
  d8.nranks = 8;
  d8.host_limit_bytes = 1900000;
  CHECK_EQ_INT(place_(&d8, 512, 1024, &g), SCAN_ON_GRID);
  CHECK_EQ_INT(g, 5);
  d8.nranks = 4; /* ... and with 4 ranks it fits nowhere */
  CHECK_EQ_INT(place_(&d8, 512, 1024, &g), SCAN_ON_NONE);
  CHECK_EQ_INT(g, 0);
  d8.host_limit_bytes = 2101248; /* exactly the float copy: the GPU again */
  CHECK_EQ_INT(place_(&d8, 512, 1024, &g), SCAN_ON_GPU);

  /* one rank: too big for the GPU and no grid possible: LAPACK when the host holds it ... */
  scan_dispatch d1 = d;
  d1.nranks = 1;
  CHECK_EQ_INT(place_(&d1, 4096, 4096, &g), SCAN_ON_CPU);
  /* ... else nothing */
  d1.host_limit_bytes = 100u << 20;
  CHECK_EQ_INT(place_(&d1, 4096, 4096, &g), SCAN_ON_NONE);

  /* solver names */
  CHECK_EQ_INT(scan_solver_parse("auto"), SCAN_SOLVER_AUTO);
  CHECK_EQ_INT(scan_solver_parse("cpu"), SCAN_SOLVER_CPU);
  CHECK_EQ_INT(scan_solver_parse("gpu"), SCAN_SOLVER_GPU);
  CHECK_EQ_INT(scan_solver_parse("grid"), -1);
  CHECK_EQ_INT(scan_solver_parse("GPU"), -1);
  CHECK_STR_EQ(scan_solver_name(SCAN_SOLVER_GPU), "gpu");

  /* no GPU here: --solver gpu is an input error that says so; auto runs on the CPU */
  if (gpu_device_count(NULL, 0) == 0) {
    const char *fx = getenv("FIXTURES");
    const char *tmp = getenv("TEST_TMP");
    if (!fx) fx = SPECTRAIN_SOURCE_DIR "/tests/fixtures";
    char *model = xasprintf("%s/spectrum/tiny-llama", fx);
    char *out = xasprintf("%s/scan_dispatch_unit.%d", tmp ? tmp : "/tmp", (int)getpid());
    log_set_quiet(1);
    double pct = 50;
    analyze_opts o;
    memset(&o, 0, sizeof o);
    o.model_path = model;
    o.model_name = "tiny-llama";
    o.out_dir = out;
    o.percents = &pct;
    o.n_percents = 1;
    o.no_heatmap = 1;
    o.rescan = 1;
    o.scan.quiet = 1;
    o.scan.solver = SCAN_SOLVER_GPU;
    analyze_result r;
    CHECK_EQ_INT(spectrum_analyze(&o, &r), ST_EINPUT);
    CHECK_CONTAINS(st_errmsg(), "--solver gpu: rank 0 has no usable GPU");
    st_clear_error();
    o.scan.solver = SCAN_SOLVER_AUTO;
    CHECK_EQ_INT(spectrum_analyze(&o, &r), ST_OK);
    CHECK_EQ_INT(r.stats.n_gpu, 0);
    CHECK_EQ_INT(r.stats.n_single, r.table.n);
    analyze_result_free(&r);
    char *cmd = xasprintf("rm -rf '%s'", out);
    CHECK(system(cmd) == 0);
    free(cmd);
    free(model);
    free(out);
  }
  return test_done();
}
