/* compat = "authors": the patch sampler the released FLIP weights were trained and evaluated with, reproduced
 * bit for bit from its documented behaviour (docs/sampler.md, "authors mode"). Written for this project; only the
 * behaviour is shared with the authors' code, not the code.
 *
 * What has to match exactly, and why it is written the way it is:
 *  - RNG: Marsaglia's KISS (MWC ^ CONG) + SHR3, normals by the Marsaglia–Tsang ziggurat with 128 strips in the
 *    float variant (float tables, the rejection path in double), seeded as initialize_ziggurat(seed).
 *  - every quantity is a float (single precision) computed in the authors' operation order; doubles appear only
 *    where C promotes to double in their expressions (the ziggurat's uniforms, the rotation normalisation).
 *    Built with -std=c11, GCC does not contract a*b+c into FMA, which would change the bits.
 *  - candidate centres come from a buffer of 256 (x, y) pairs refilled once 240 are used: 16 pairs per refill
 *    are drawn and never used.
 *  - the overlap test is their spatial hash: cell = half the patch size with the largest count; a box is pushed
 *    on the list of every cell it touches, but a box has a single `next` link, so each push re-links it and every
 *    list it joined earlier now continues into the list of the last cell. A query sums intersection areas over
 *    the lists of every cell it touches, so one stored box can be counted many times. All of it is emulated with
 *    a per-box `next` index and a per-cell head index.
 * State lives in the caller's structs: no globals except the ziggurat tables, which are constant once built. */
#include "fovea.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fa_fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, FV_ERRLEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ KISS + ziggurat */
static uint32_t zig_k[128];
static float zig_w[128], zig_f[128];
static int zig_ready = 0;

void fa_init_tables(void) {
    /* the float ziggurat tables (128 strips, r = 3.442619855899, v = 9.91256303526217e-3), built in double
     * and stored as float / uint32 exactly as the original setup does */
    double dn = 3.442619855899, tn = dn;
    const double vn = 9.91256303526217e-03, m1 = 2147483648.0;
    double q = vn / exp(-0.5 * dn * dn);
    zig_k[0] = (uint32_t)((dn / q) * m1);
    zig_k[1] = 0;
    zig_w[0] = (float)(q / m1);
    zig_w[127] = (float)(dn / m1);
    zig_f[0] = 1.0f;
    zig_f[127] = (float)exp(-0.5 * dn * dn);
    for (int i = 126; i >= 1; i--) {
        dn = sqrt(-2.0 * log(vn / dn + exp(-0.5 * dn * dn)));
        zig_k[i + 1] = (uint32_t)((dn / tn) * m1);
        tn = dn;
        zig_f[i] = (float)exp(-0.5 * dn * dn);
        zig_w[i] = (float)(dn / m1);
    }
    zig_ready = 1;
}

int fa_tables_ready(void) { return zig_ready; }

void fa_seed(fa_rng *r, uint32_t s) { /* initialize_ziggurat(s) */
    r->jsr = s ^ 0xCAFEBABEu;
    r->jcong = s * 69069u + 1234567u;
    r->w = s * 1664525u + 1013904223u;
    r->z = s * 18000u + 987654321u;
}

static inline uint32_t kiss(fa_rng *r) {
    r->z = 36969u * (r->z & 65535u) + (r->z >> 16);
    r->w = 18000u * (r->w & 65535u) + (r->w >> 16);
    uint32_t mwc = (r->z << 16) + r->w;
    r->jcong = 69069u * r->jcong + 1234567u;
    uint32_t j = r->jsr;
    r->jsr ^= r->jsr << 13;
    r->jsr ^= r->jsr >> 17;
    r->jsr ^= r->jsr << 5;
    return (mwc ^ r->jcong) + (j + r->jsr);
}

uint32_t fa_kiss(fa_rng *r) { return kiss(r); }

/* the double uniform of the ziggurat: 0.5 + signed(KISS)·0.2328306e-9, in (0, 1) */
static inline double uni(fa_rng *r) { return 0.5 + (double)(int32_t)kiss(r) * 0.2328306e-09; }

float fa_uniform(fa_rng *r) { return (float)uni(r); }

static float normal_tail(fa_rng *r, int32_t hz, uint32_t iz) {
    const float rr = (float)3.442620;
    for (;;) {
        float x = (float)hz * zig_w[iz];
        if (iz == 0) { /* base strip: Marsaglia's tail method */
            float y;
            do {
                x = (float)(-log(uni(r)) * 0.2904764);
                y = (float)(-log(uni(r)));
            } while (y + y < x * x);
            return 0 < hz ? rr + x : -rr - x;
        }
        if ((double)zig_f[iz] + uni(r) * (double)(zig_f[iz - 1] - zig_f[iz]) < exp(-0.5 * x * x)) return x;
        hz = (int32_t)kiss(r);
        iz = (uint32_t)hz & 127u;
        if (fabs((double)hz) < (double)zig_k[iz]) return (float)hz * zig_w[iz];
    }
}

static inline float normal(fa_rng *r) {
    int32_t hz = (int32_t)kiss(r);
    uint32_t iz = (uint32_t)hz & 127u;
    if (fabs((double)hz) < (double)zig_k[iz]) return (float)hz * zig_w[iz];
    return normal_tail(r, hz, iz);
}

float fa_normal(fa_rng *r) { return normal(r); }

/* ------------------------------------------------------------------ preparation */
int fa_gaussian(const double g6[6], fa_gauss *out) {
    /* g6 already validated (finite, stds > 0, direction non-zero). Widening in double then one rounding to float
     * (flip.sampler.authors_gaussian_px gives the g6 for which this equals the authors' float chain exactly). */
    out->mx = (float)g6[0];
    out->my = (float)g6[1];
    out->s1 = (float)(g6[2] * 1.4142135623730951);
    out->s2 = (float)(g6[3] * 1.4142135623730951);
    float a = (float)(-g6[4]), b = (float)g6[5]; /* the sampler flips a */
    float scale = (float)sqrt(a * a + b * b); /* float products and sum, double root stored as float */
    if (scale > 1e-16) {
        a /= scale;
        b /= scale;
    }
    out->a = a;
    out->b = b;
    return 0;
}

/* Counts in the authors' way: n̄_i = (int)(float(2π σ1 σ2)·c / p_i²), assigned from the LAST size in the given
 * order to the first, n_i = max(0, min(remaining, n̄_i)). (int) of a float ≥ 2³¹ is INT_MIN on x86 (their build):
 * kept, so such a size gets 0. No size is dropped for not fitting the image. */
void fa_allocate(float s1w, float s2w, int num_tokens, const int *sizes, int k, float coverage, int *counts) {
    float integral = (float)(2.0f * 3.14159265358979323846 * s1w * s2w);
    int remaining = num_tokens;
    for (int i = k - 1; i >= 0; i--) {
        float p = (float)sizes[i];
        float v = integral * coverage / (p * p);
        int avg = v < 2147483648.0f ? (int)v : INT32_MIN;
        float m = (float)remaining < (float)avg ? (float)remaining : (float)avg;
        counts[i] = m > 0 ? (int)m : 0;
        remaining -= counts[i];
    }
}

/* ------------------------------------------------------------------ the spatial hash, emulated */
typedef struct {
    float cell;
    /* dense window [cx0, cx0+gw) × [cy0, cy0+gh) of cell heads, or an open-addressing table */
    int dense, cx0, cy0, gw, gh;
    int32_t *head;
    uint64_t *keys; /* hash mode: key = (cx, cy) packed, EMPTY_KEY when unused */
    size_t cap, used;
    /* boxes */
    float *bx; /* 4 per box: x_min y_min x_max y_max */
    int32_t *next;
    int nbox;
} fa_grid;

#define EMPTY_KEY UINT64_MAX

static inline uint64_t pack(int cx, int cy) { return ((uint64_t)(uint32_t)cx << 32) | (uint32_t)cy; }
static inline size_t hash64(uint64_t k) { return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 20); }

static int32_t *slot_hash(fa_grid *g, int cx, int cy, int create) {
    uint64_t key = pack(cx, cy);
    size_t mask = g->cap - 1, i = hash64(key) & mask;
    while (g->keys[i] != EMPTY_KEY) {
        if (g->keys[i] == key) return g->head + i;
        i = (i + 1) & mask;
    }
    if (!create) return NULL;
    if (2 * (g->used + 1) > g->cap) { /* grow to keep the load ≤ 1/2 */
        size_t ncap = g->cap * 2;
        uint64_t *nk = malloc(sizeof(uint64_t) * ncap);
        int32_t *nh = malloc(sizeof(int32_t) * ncap);
        if (!nk || !nh) {
            free(nk);
            free(nh);
            return NULL;
        }
        memset(nk, 0xff, sizeof(uint64_t) * ncap);
        for (size_t j = 0; j < g->cap; j++)
            if (g->keys[j] != EMPTY_KEY) {
                size_t t = hash64(g->keys[j]) & (ncap - 1);
                while (nk[t] != EMPTY_KEY) t = (t + 1) & (ncap - 1);
                nk[t] = g->keys[j];
                nh[t] = g->head[j];
            }
        free(g->keys);
        free(g->head);
        g->keys = nk, g->head = nh, g->cap = ncap;
        return slot_hash(g, cx, cy, create);
    }
    g->keys[i] = key;
    g->head[i] = -1;
    g->used++;
    return g->head + i;
}

static inline int32_t *slot(fa_grid *g, int cx, int cy, int create) {
    if (g->dense) {
        int x = cx - g->cx0, y = cy - g->cy0;
        if (x < 0 || y < 0 || x >= g->gw || y >= g->gh) return NULL; /* never: the window holds every box */
        return g->head + (size_t)y * g->gw + x;
    }
    return slot_hash(g, cx, cy, create);
}

static void grid_free(fa_grid *g) {
    free(g->head);
    free(g->keys);
    free(g->bx);
    free(g->next);
}

/* win: the pixel window every accepted box lies in (x0, y0, x1, y1), inside the image */
static int grid_init(fa_grid *g, float cell, int nbox_cap, const double win[4], long expect_cells) {
    memset(g, 0, sizeof(*g));
    g->cell = cell;
    g->bx = malloc(sizeof(float) * 4 * (size_t)(nbox_cap > 0 ? nbox_cap : 1));
    g->next = malloc(sizeof(int32_t) * (size_t)(nbox_cap > 0 ? nbox_cap : 1));
    if (!g->bx || !g->next) return -1;
    g->cx0 = (int)floor(win[0] / cell) - 1;
    g->cy0 = (int)floor(win[1] / cell) - 1;
    double gw = floor(win[2] / cell) - g->cx0 + 2, gh = floor(win[3] / cell) - g->cy0 + 2;
    double cells = gw * gh;
    /* dense when the window is small or comparable to the work; a memset of the heads costs ~cells/16 ns */
    if (cells <= 65536.0 || cells <= 64.0 * (double)expect_cells) {
        if (cells > 67108864.0) goto hash; /* 256 MB of heads: never */
        g->dense = 1;
        g->gw = (int)gw, g->gh = (int)gh;
        g->head = malloc(sizeof(int32_t) * (size_t)cells);
        if (!g->head) return -1;
        memset(g->head, 0xff, sizeof(int32_t) * (size_t)cells);
        return 0;
    }
hash:
    g->dense = 0;
    g->cap = 1024;
    while ((long)g->cap < 2 * expect_cells && g->cap < ((size_t)1 << 26)) g->cap *= 2;
    g->keys = malloc(sizeof(uint64_t) * g->cap);
    g->head = malloc(sizeof(int32_t) * g->cap);
    if (!g->keys || !g->head) return -1;
    memset(g->keys, 0xff, sizeof(uint64_t) * g->cap);
    return 0;
}

/* 1 if the summed (per-cell, repeated) overlap area exceeds thr, as in their spatial_hash_has_significant_overlap */
static int grid_overlaps(fa_grid *g, float x_min, float y_min, float x_max, float y_max, float thr) {
    const float eps = 1e-6f;
    int cx0 = (int)floorf(x_min / g->cell), cy0 = (int)floorf(y_min / g->cell);
    int cx1 = (int)floorf(x_max / g->cell), cy1 = (int)floorf(y_max / g->cell);
    float total = 0.0f;
    for (int cy = cy0; cy <= cy1; cy++)
        for (int cx = cx0; cx <= cx1; cx++) {
            int32_t *h = slot(g, cx, cy, 0);
            if (!h) continue;
            for (int32_t j = *h; j >= 0; j = g->next[j]) {
                const float *b = g->bx + 4 * j;
                if (x_max < b[0] + eps || x_min > b[2] - eps || y_max < b[1] + eps || y_min > b[3] - eps) continue;
                float ox0 = x_min > b[0] ? x_min : b[0], oy0 = y_min > b[1] ? y_min : b[1];
                float ox1 = x_max < b[2] ? x_max : b[2], oy1 = y_max < b[3] ? y_max : b[3];
                float w = ox1 - ox0, hgt = oy1 - oy0;
                total += w * hgt;
                if (total > thr) return 1;
            }
        }
    return 0;
}

static int grid_add(fa_grid *g, float x_min, float y_min, float x_max, float y_max) {
    int j = g->nbox++;
    float *b = g->bx + 4 * j;
    b[0] = x_min, b[1] = y_min, b[2] = x_max, b[3] = y_max;
    g->next[j] = -1;
    int cx0 = (int)floorf(x_min / g->cell), cy0 = (int)floorf(y_min / g->cell);
    int cx1 = (int)floorf(x_max / g->cell), cy1 = (int)floorf(y_max / g->cell);
    for (int cy = cy0; cy <= cy1; cy++)
        for (int cx = cx0; cx <= cx1; cx++) {
            int32_t *h = slot(g, cx, cy, 1);
            if (!h) return -1;
            g->next[j] = *h; /* one link per box: re-linked at every cell (the quirk) */
            *h = j;
        }
    return 0;
}

/* ------------------------------------------------------------------ extraction (float bilinear, roundf) */
/* v = f00·(1−dx)·(1−dy) + f01·dx·(1−dy) + f10·(1−dx)·dy + f11·dx·dy in float, left to right, then roundf; the
 * SIMD path evaluates the same products in the same order (IEEE single, no FMA), so it is bit-identical. */
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FA_SSE2 1
/* q0[t] = f[t]·wx0[t], q1[t] = f[t+3]·wx1[t] for the 3p channel values of one source row */
static inline void row_products(const uint8_t *r, const float *wx0, const float *wx1, int n, float *q0, float *q1) {
    int t = 0;
    const __m128i z = _mm_setzero_si128();
    for (; t + 8 <= n; t += 8) { /* reads r[t .. t+10] ≤ r[n+2], the right tap of the last pixel: in bounds */
        __m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r + t)), z);
        __m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r + t + 3)), z);
        _mm_storeu_ps(q0 + t, _mm_mul_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(a, z)), _mm_loadu_ps(wx0 + t)));
        _mm_storeu_ps(q0 + t + 4, _mm_mul_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(a, z)), _mm_loadu_ps(wx0 + t + 4)));
        _mm_storeu_ps(q1 + t, _mm_mul_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(b, z)), _mm_loadu_ps(wx1 + t)));
        _mm_storeu_ps(q1 + t + 4, _mm_mul_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(b, z)), _mm_loadu_ps(wx1 + t + 4)));
    }
    for (; t < n; t++) {
        q0[t] = (float)r[t] * wx0[t];
        q1[t] = (float)r[t + 3] * wx1[t];
    }
}

#endif

static inline uint8_t round_u8(float v) { /* roundf for 0 ≤ v < 2³¹, exact */
    int t = (int)v;
    return (uint8_t)(t + (v - (float)t >= 0.5f));
}

static void extract(const fv_image *im, float cx, float cy, int p, uint8_t *out) {
    const float half = (float)p / 2.0f;
    const size_t stride = (size_t)im->W * 3;
    int x0[FV_MAX_PATCH], y0[FV_MAX_PATCH];
    float dx[FV_MAX_PATCH], dy[FV_MAX_PATCH];
    int contiguous = 1;
    for (int i = 0; i < p; i++) {
        float off = (float)i - half + 0.5f;
        float px = cx + off, py = cy + off;
        x0[i] = (int)px;
        y0[i] = (int)py;
        dx[i] = px - (float)x0[i];
        dy[i] = py - (float)y0[i];
        contiguous &= x0[i] == x0[0] + i;
    }
    const int n = 3 * p;
#ifdef FA_SSE2
    if (contiguous && n >= 4) {
        /* products of one source row, f·(1−dx) and f_right·dx, serve the output row below and the one above it */
        float wx0[3 * FV_MAX_PATCH], wx1[3 * FV_MAX_PATCH], qa[2][3 * FV_MAX_PATCH], qb[2][3 * FV_MAX_PATCH];
        for (int i = 0; i < p; i++)
            for (int ch = 0; ch < 3; ch++) wx1[3 * i + ch] = dx[i], wx0[3 * i + ch] = 1 - dx[i];
        const __m128 half4 = _mm_set1_ps(0.5f);
        int cur = 0, have = -1; /* qa/qb[cur] hold the products of source row `have` */
        for (int yi = 0; yi < p; yi++) {
            int top;
            if (y0[yi] == have) top = cur;
            else {
                top = cur;
                row_products(im->pixels + (size_t)y0[yi] * stride + (size_t)x0[0] * 3, wx0, wx1, n, qa[top], qb[top]);
            }
            int bot = 1 - top;
            row_products(im->pixels + (size_t)(y0[yi] + 1) * stride + (size_t)x0[0] * 3, wx0, wx1, n, qa[bot], qb[bot]);
            cur = bot, have = y0[yi] + 1;
            const float fy1 = dy[yi], fy0 = 1 - fy1;
            const __m128 vy0 = _mm_set1_ps(fy0), vy1 = _mm_set1_ps(fy1);
            const float *a0 = qa[top], *a1 = qb[top], *c0 = qa[bot], *c1 = qb[bot];
            uint8_t *o = out + (size_t)yi * n;
            int t = 0;
            for (; t + 4 <= n; t += 4) {
                __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(a0 + t), vy0), _mm_mul_ps(_mm_loadu_ps(a1 + t), vy0));
                v = _mm_add_ps(v, _mm_mul_ps(_mm_loadu_ps(c0 + t), vy1));
                v = _mm_add_ps(v, _mm_mul_ps(_mm_loadu_ps(c1 + t), vy1));
                __m128i ti = _mm_cvttps_epi32(v);
                __m128 up = _mm_cmpge_ps(_mm_sub_ps(v, _mm_cvtepi32_ps(ti)), half4);
                ti = _mm_sub_epi32(ti, _mm_castps_si128(up)); /* mask = −1 where the fraction is ≥ 0.5 */
                __m128i b = _mm_packus_epi16(_mm_packs_epi32(ti, ti), _mm_setzero_si128());
                int32_t w = _mm_cvtsi128_si32(b);
                memcpy(o + t, &w, 4);
            }
            for (; t < n; t++) o[t] = round_u8(a0[t] * fy0 + a1[t] * fy0 + c0[t] * fy1 + c1[t] * fy1);
        }
        return;
    }
#endif
    for (int yi = 0; yi < p; yi++) { /* general path (a rounding step in the centres broke contiguity) */
        const uint8_t *r0 = im->pixels + (size_t)y0[yi] * stride, *r1 = r0 + stride;
        const float wy1 = dy[yi], wy0 = 1 - wy1;
        uint8_t *o = out + (size_t)yi * n;
        for (int xi = 0; xi < p; xi++) {
            const float wx1 = dx[xi], wx0 = 1 - wx1;
            const uint8_t *a = r0 + (size_t)x0[xi] * 3, *c = r1 + (size_t)x0[xi] * 3;
            for (int ch = 0; ch < 3; ch++) {
                float v = (float)a[ch] * wx0 * wy0 + (float)a[ch + 3] * wx1 * wy0 + (float)c[ch] * wx0 * wy1 +
                          (float)c[ch + 3] * wx1 * wy1;
                o[3 * xi + ch] = round_u8(v);
            }
        }
    }
}

int fa_extract(const fv_image *im, float cx, float cy, int p, uint8_t *out, char *err) {
    if (p < 1 || p > FV_MAX_PATCH) return fa_fail(err, "patch size %d out of range [1, %d]", p, FV_MAX_PATCH);
    const float half = (float)p / 2.0f;
    /* the sampler's own bounds test (written as "inside" so NaN is rejected) */
    if (!(cx - half >= 0 && cx + half < (float)(im->W - 1) && cy - half >= 0 && cy + half < (float)(im->H - 1)))
        return fa_fail(err, "patch of size %d at (%g, %g) leaves the %dx%d image", p, cx, cy, im->W, im->H);
    extract(im, cx, cy, p, out);
    return 0;
}

/* ------------------------------------------------------------------ the whole sampler */
#define FA_BUF 256
#define FA_REFILL 16

typedef struct {
    float x[FA_BUF], y[FA_BUF];
    int pos;
    const fa_gauss *g;
    fa_rng *r;
} cand_buf;

static void refill(cand_buf *c) {
    const fa_gauss *g = c->g;
    for (int i = 0; i < FA_BUF; i++) {
        float zx = normal(c->r);
        float zy = normal(c->r);
        zx *= g->s1;
        zy *= g->s2;
        float xr = g->a * zx - g->b * zy;
        float yr = g->b * zx + g->a * zy;
        c->x[i] = xr + g->mx;
        c->y[i] = yr + g->my;
    }
    c->pos = 0;
}

int fa_run(const fv_image *im, const fa_gauss *g, fa_rng *r, const int *sizes, int k, const int *counts, float tau,
           uint8_t **patches, float **coords, int *got, char *err) {
    if (!zig_ready) return fa_fail(err, "internal: ziggurat tables not built");
    int total = 0, best = 0, pmax = 1;
    for (int i = 0; i < k; i++) {
        got[i] = 0;
        total += counts[i];
        if (counts[i] > counts[best]) best = i; /* first index with the largest count */
        if (counts[i] > 0 && sizes[i] > pmax) pmax = sizes[i];
    }
    cand_buf cb;
    cb.g = g, cb.r = r;
    refill(&cb); /* the authors prefill the buffer even when nothing is requested */
    if (total == 0) return 0;
    /* every candidate lies within 8.1 normal deviates of the mean (|ziggurat normal| ≤ 8.1: its uniforms are
     * ≥ 1.5e-7), so every accepted box lies in this window */
    double reach = 8.5 * ((double)g->s1 + (double)g->s2) + pmax + 2.0;
    double win[4] = {fmax(0.0, g->mx - reach), fmax(0.0, g->my - reach), fmin(im->W - 1.0, g->mx + reach),
                     fmin(im->H - 1.0, g->my + reach)};
    if (!(win[2] >= win[0])) win[0] = 0, win[2] = im->W - 1.0;
    if (!(win[3] >= win[1])) win[1] = 0, win[3] = im->H - 1.0;
    float cell = (float)sizes[best] / 2.0f;
    long expect = 0;
    for (int i = 0; i < k; i++) {
        long span = (long)ceil((float)sizes[i] / cell) + 1;
        expect += (long)counts[i] * (span * span < 4096 ? span * span : 4096);
        if (expect > (1L << 26)) expect = 1L << 26;
    }
    fa_grid grid;
    if (grid_init(&grid, cell, total, win, expect)) {
        grid_free(&grid);
        return fa_fail(err, "out of memory for the overlap grid");
    }
    const float Wm1 = (float)(im->W - 1), Hm1 = (float)(im->H - 1);
    int rc = 0;
    for (int i = 0; i < k && !rc; i++) { /* sizes in the order given */
        int p = sizes[i], n = counts[i];
        float half = (float)p / 2.0f;
        float thr = ((float)p * (float)p) * tau;
        size_t psz = (size_t)p * p * 3;
        for (long a = 0, attempts = 10L * n; got[i] < n && a < attempts; a++) {
            if (cb.pos >= FA_BUF - FA_REFILL) refill(&cb);
            float cx = cb.x[cb.pos], cy = cb.y[cb.pos];
            cb.pos++;
            if (cx - half < 0 || cx + half >= Wm1 || cy - half < 0 || cy + half >= Hm1) continue;
            float x0 = cx - half, y0 = cy - half, x1 = cx + half, y1 = cy + half;
            if (grid_overlaps(&grid, x0, y0, x1, y1, thr)) continue;
            if (grid_add(&grid, x0, y0, x1, y1)) {
                rc = fa_fail(err, grid.dense ? "internal: box (%g, %g) outside the overlap window" : "out of memory for the overlap grid", cx, cy);
                break;
            }
            int m = got[i]++;
            extract(im, cx, cy, p, patches[i] + m * psz);
            coords[i][2 * m] = cx / 128.0f - (float)im->W / 256.0f;
            coords[i][2 * m + 1] = cy / 128.0f - (float)im->H / 256.0f;
        }
    }
    grid_free(&grid);
    return rc;
}

/* np.maximum(x, m) for a finite m: NaN propagates */
static float fa_max(float x, float m) { return (x != x || x > m) ? x : m; }

void fa_position_from_rho(const float rho[5], int width, int height, float rot[6], double g6[6]) {
    /* each line is one IEEE float32 operation in the order of authors_rot_from_rho (no contraction: -std=c11) */
    const float vx = rho[2], vy = rho[3], vxy = rho[4], eps = 1e-16f;
    const float d = vx - vy;
    const float term = sqrtf(fa_max(d * d + 4.0f * vxy * vxy, eps));
    const float half_sum = (vx + vy) / 2.0f, half_term = term / 2.0f;
    const float s1 = sqrtf(fa_max(half_sum - half_term, eps));
    const float s2 = sqrtf(fa_max(half_sum + half_term, eps));
    const float a = 2.0f * vxy * 1.0f / fa_max(vx - vy + term, eps);
    const float b = 1.0f;
    const float scale = sqrtf(fa_max(a * a + b * b, eps));
    rot[0] = rho[0]; rot[1] = rho[1]; rot[2] = s1; rot[3] = s2; rot[4] = a / scale; rot[5] = b / scale;
    /* authors_gaussian_px: μ = (m + 1)·W/2, σ = s·√2·W/2 (float32), un-widened in double */
    const float W = (float)width, H = (float)height, r2 = (float)1.4142135623730951;
    const double sqrt2 = 1.4142135623730951;
    g6[0] = (double)((rot[0] + 1.0f) * W / 2.0f);
    g6[1] = (double)((rot[1] + 1.0f) * H / 2.0f);
    g6[2] = (double)((rot[2] * r2) * W / 2.0f) / sqrt2;
    g6[3] = (double)((rot[3] * r2) * H / 2.0f) / sqrt2;
    g6[4] = (double)rot[4];
    g6[5] = (double)rot[5];
}
