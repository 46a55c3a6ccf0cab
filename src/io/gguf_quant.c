/* ggml block formats -> float32. Layouts as in ggml's ggml-common.h; the arithmetic in the
 * order of gguf-py's gguf/quants.py (which equals ggml-quants.c's dequantize_row_*). A block
 * of QK_K = 256 elements is a "super-block" of 16 or 8 sub-blocks with their own scales. */
#include "io/gguf_quant.h"

#include <string.h>

#include "io/safetensors.h"
#include "util/err.h"

#define QK_K 256

static float f16_(const uint8_t *p) { return sft_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void deq_f32_(const uint8_t *s, float *y, uint64_t nb) { memcpy(y, s, (size_t)nb * 4); }

static void deq_f16_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t i = 0; i < nb; i++) y[i] = f16_(s + 2 * i);
}

static void deq_bf16_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t i = 0; i < nb; i++) y[i] = sft_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}

/* Q8_0: f16 d, int8 qs[32]; y = q * d */
static void deq_q8_0_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 34, y += 32) {
    const float d = f16_(s);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)s[2 + j] * d;
  }
}

/* Q4_0: f16 d, qs[16] (element j in the low nibble of qs[j], j+16 in the high); y = d(q-8) */
static void deq_q4_0_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 18, y += 32) {
    const float d = f16_(s);
    const uint8_t *q = s + 2;
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)((q[j] & 0x0F) - 8);
      y[j + 16] = d * (float)((q[j] >> 4) - 8);
    }
  }
}

/* Q4_1: f16 d, f16 m, qs[16]; y = d q + m */
static void deq_q4_1_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 20, y += 32) {
    const float d = f16_(s), m = f16_(s + 2);
    const uint8_t *q = s + 4;
    for (int j = 0; j < 16; j++) {
      y[j] = d * (float)(q[j] & 0x0F) + m;
      y[j + 16] = d * (float)(q[j] >> 4) + m;
    }
  }
}

static uint32_t le32_(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q5_0: f16 d, u32 qh (bit j: the fifth bit of element j), qs[16]; y = d(q-16) */
static void deq_q5_0_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 22, y += 32) {
    const float d = f16_(s);
    const uint32_t qh = le32_(s + 2);
    const uint8_t *q = s + 6;
    for (int j = 0; j < 16; j++) {
      int lo = (q[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      int hi = (q[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
      y[j] = d * (float)(lo - 16);
      y[j + 16] = d * (float)(hi - 16);
    }
  }
}

/* Q5_1: f16 d, f16 m, u32 qh, qs[16]; y = d q + m */
static void deq_q5_1_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 24, y += 32) {
    const float d = f16_(s), m = f16_(s + 2);
    const uint32_t qh = le32_(s + 4);
    const uint8_t *q = s + 8;
    for (int j = 0; j < 16; j++) {
      int lo = (q[j] & 0x0F) | (int)((qh >> j) & 1) << 4;
      int hi = (q[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
      y[j] = d * (float)lo + m;
      y[j + 16] = d * (float)hi + m;
    }
  }
}

/* Q2_K: scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64] (2 bits:
 * element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]), f16 d, f16 dmin;
 * y = (d sc) q - (dmin m) */
static void deq_q2_k_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 84, y += QK_K) {
    const uint8_t *sc = s, *qs = s + 16;
    const float d = f16_(s + 80), dmin = f16_(s + 82);
    for (int i = 0; i < QK_K; i++) {
      const int h = i / 128, k = (i / 32) % 4, l = i % 32, g = i / 16;
      const float dl = d * (float)(sc[g] & 0x0F), ml = dmin * (float)(sc[g] >> 4);
      y[i] = dl * (float)((qs[32 * h + l] >> (2 * k)) & 3) - ml;
    }
  }
}

/* Q3_K: hmask[32] (element 32k + l: bit k of hmask[l]; set means no -4), qs[64] (as Q2_K),
 * scales[12] (16 six-bit scales, bias 32), f16 d; y = (d (sc-32)) (q - 4 [bit clear]) */
static void deq_q3_k_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 110, y += QK_K) {
    const uint8_t *hm = s, *qs = s + 32, *sb = s + 96;
    const float d = f16_(s + 108);
    float dl[16];
    for (int k = 0; k < 16; k++) {
      const int lo = (k < 8 ? sb[k] : sb[k - 8] >> 4) & 0x0F;
      const int hi = (sb[8 + k % 4] >> (2 * (k / 4))) & 3;
      dl[k] = d * (float)((int8_t)(lo | hi << 4) - 32);
    }
    for (int i = 0; i < QK_K; i++) {
      const int h = i / 128, k = (i / 32) % 4, l = i % 32;
      const int ql = (qs[32 * h + l] >> (2 * k)) & 3;
      const int qh = ((hm[i % 32] >> (i / 32)) & 1) ^ 1;
      y[i] = dl[i / 16] * (float)(ql - (qh << 2));
    }
  }
}

/* Q4_K/Q5_K's 12 bytes of eight 6-bit scales and mins (ggml's get_scale_min_k4). */
static void scale_min_k4_(const uint8_t *q, int j, int *sc, int *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* Q4_K: f16 d, f16 dmin, scales[12], qs[128] (element 64c + 32s + l: nibble s of
 * qs[32c + l]); sub-block g = i/32; y = (d sc_g) q - (dmin m_g) */
static void deq_q4_k_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 144, y += QK_K) {
    const float d = f16_(s), dmin = f16_(s + 2);
    const uint8_t *sb = s + 4, *qs = s + 16;
    for (int g = 0; g < 8; g++) {
      int sc, m;
      scale_min_k4_(sb, g, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      const int c = g / 2, sh = 4 * (g % 2);
      for (int l = 0; l < 32; l++) y[32 * g + l] = d1 * (float)((qs[32 * c + l] >> sh) & 0x0F) - m1;
    }
  }
}

/* Q5_K: f16 d, f16 dmin, scales[12], qh[32] (element i's fifth bit: bit i/32 of qh[i%32]),
 * qs[128] as Q4_K */
static void deq_q5_k_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 176, y += QK_K) {
    const float d = f16_(s), dmin = f16_(s + 2);
    const uint8_t *sb = s + 4, *qh = s + 16, *qs = s + 48;
    for (int g = 0; g < 8; g++) {
      int sc, m;
      scale_min_k4_(sb, g, &sc, &m);
      const float d1 = d * (float)sc, m1 = dmin * (float)m;
      const int c = g / 2, sh = 4 * (g % 2);
      for (int l = 0; l < 32; l++) {
        const int q = ((qs[32 * c + l] >> sh) & 0x0F) | ((qh[l] >> g) & 1) << 4;
        y[32 * g + l] = d1 * (float)q - m1;
      }
    }
  }
}

/* Q6_K: ql[128] (element 128h + 64s + l: nibble s of ql[64h + l]), qh[64] (its two high
 * bits: bits 2k.. of qh[32h + l] for element 128h + 32k + l), int8 scales[16], f16 d;
 * y = (d sc) (q - 32) */
static void deq_q6_k_(const uint8_t *s, float *y, uint64_t nb) {
  for (uint64_t b = 0; b < nb; b++, s += 210, y += QK_K) {
    const uint8_t *ql = s, *qh = s + 128;
    const int8_t *sc = (const int8_t *)(s + 192);
    const float d = f16_(s + 208);
    for (int i = 0; i < QK_K; i++) {
      const int h = i / 128, r = i % 128;
      const int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
      y[i] = (d * (float)sc[i / 16]) * (float)((lo | hi << 4) - 32);
    }
  }
}

/* clang-format off */
static const ggml_type_info types_[] = {
    {0, "F32", 1, 4, deq_f32_},       {1, "F16", 1, 2, deq_f16_},
    {2, "Q4_0", 32, 18, deq_q4_0_},   {3, "Q4_1", 32, 20, deq_q4_1_},
    {6, "Q5_0", 32, 22, deq_q5_0_},   {7, "Q5_1", 32, 24, deq_q5_1_},
    {8, "Q8_0", 32, 34, deq_q8_0_},   {9, "Q8_1", 32, 40, NULL},
    {10, "Q2_K", 256, 84, deq_q2_k_}, {11, "Q3_K", 256, 110, deq_q3_k_},
    {12, "Q4_K", 256, 144, deq_q4_k_}, {13, "Q5_K", 256, 176, deq_q5_k_},
    {14, "Q6_K", 256, 210, deq_q6_k_}, {15, "Q8_K", 256, 292, NULL},
    {16, "IQ2_XXS", 256, 66, NULL},   {17, "IQ2_XS", 256, 74, NULL},
    {18, "IQ3_XXS", 256, 98, NULL},   {19, "IQ1_S", 256, 50, NULL},
    {20, "IQ4_NL", 32, 18, NULL},     {21, "IQ3_S", 256, 110, NULL},
    {22, "IQ2_S", 256, 82, NULL},     {23, "IQ4_XS", 256, 136, NULL},
    {24, "I8", 1, 1, NULL},           {25, "I16", 1, 2, NULL},
    {26, "I32", 1, 4, NULL},          {27, "I64", 1, 8, NULL},
    {28, "F64", 1, 8, NULL},          {29, "IQ1_M", 256, 56, NULL},
    {30, "BF16", 1, 2, deq_bf16_},    {34, "TQ1_0", 256, 54, NULL},
    {35, "TQ2_0", 256, 66, NULL},     {39, "MXFP4", 32, 17, NULL},
    {40, "NVFP4", 64, 36, NULL},      {41, "Q1_0", 128, 18, NULL},
};
/* clang-format on */
#define N_TYPES ((int)(sizeof types_ / sizeof types_[0]))

const ggml_type_info *ggml_type_get(uint32_t id) {
  for (int i = 0; i < N_TYPES; i++)
    if (types_[i].id == id) return &types_[i];
  return NULL;
}

const char *ggml_supported_types(void) {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

int ggml_dequantize(uint32_t type, const uint8_t *src, float *dst, uint64_t n) {
  const ggml_type_info *ti = ggml_type_get(type);
  if (!ti || !ti->dequant)
    return st_fail(ST_EINPUT, "tensor type %s cannot be converted (spectrain dequantises %s)",
                   ti ? ti->name : "unknown", ggml_supported_types());
  if (n % ti->block)
    return st_fail(ST_EINPUT, "%s: %llu elements are not a whole number of %u-element blocks",
                   ti->name, (unsigned long long)n, ti->block);
  ti->dequant(src, dst, n / ti->block);
  return 0;
}
