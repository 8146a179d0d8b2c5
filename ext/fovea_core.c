/* Fovea sampler core: RNG, allocation, overlap grid, placement, token count, augmentation, mask pixels. */
#include "fovea.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FV_PI 3.14159265358979323846
#define FV_EPS_OVERLAP 1e-6
#define FV_INF_DIST (INT32_MAX / 2)

static int fv_fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, FV_ERRLEN, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ RNG */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void fv_rng_seed(fv_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fv_next(fv_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[0] + s[3], 23) + s[0];
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fv_uniform(fv_rng *r) { return (double)(fv_next(r) >> 11) * 0x1.0p-53; }

uint64_t fv_below(fv_rng *r, uint64_t n) {
    /* rejection sampling on the top bits: exact for every n */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t x;
    do x = fv_next(r);
    while (x >= limit);
    return x % n;
}

double fv_normal(fv_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * fv_uniform(r) - 1.0;
        v = 2.0 * fv_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->has_spare = 1;
    return u * f;
}

double fv_gamma(fv_rng *r, double shape) {
    if (shape < 1.0) { /* boost: G(a) = G(a+1)·U^(1/a) */
        double u;
        do u = fv_uniform(r);
        while (u == 0.0);
        return fv_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = fv_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = fv_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

/* ------------------------------------------------------------------ Gaussian */
int fv_sampling_gaussian(const double g6[6], int W, int H, fv_gauss *out, char *err) {
    for (int i = 0; i < 6; i++)
        if (!isfinite(g6[i])) return fv_fail(err, "Gaussian contains NaN or inf: (%g, %g, %g, %g, %g, %g)", g6[0], g6[1], g6[2], g6[3], g6[4], g6[5]);
    if (!(g6[2] > 0.0) || !(g6[3] > 0.0))
        return fv_fail(err, "Gaussian stds must be > 0, got s1=%g s2=%g", g6[2], g6[3]);
    if (g6[2] > 1e9 || g6[3] > 1e9) return fv_fail(err, "Gaussian stds too large (> 1e9 px): s1=%g s2=%g", g6[2], g6[3]);
    double a = -g6[4], b = g6[5]; /* docs/flip.md §0: the sampler flips a */
    double n = sqrt(a * a + b * b);
    if (!(n > 1e-16)) return fv_fail(err, "Gaussian direction (a, b) is zero");
    out->mx = g6[0];
    out->my = g6[1];
    out->s1 = g6[2] * sqrt(2.0);
    out->s2 = g6[3] * sqrt(2.0);
    out->a = a / n;
    out->b = b / n;
    if (W > 0 && H > 0) {
        double far = FV_FAR_SIGMAS * fmax(out->s1, out->s2);
        if (out->mx < -far || out->mx > (W - 1) + far || out->my < -far || out->my > (H - 1) + far)
            return fv_fail(err, "Gaussian mean (%g, %g) lies more than %g widened stds outside the %dx%d image", out->mx,
                           out->my, FV_FAR_SIGMAS, W, H);
    }
    return 0;
}

/* ------------------------------------------------------------------ allocation (§3.2) */
static int check_sizes(const int *sizes, int k, char *err) {
    if (k < 1 || k > FV_MAX_SIZES) return fv_fail(err, "need 1..%d patch sizes, got %d", FV_MAX_SIZES, k);
    for (int i = 0; i < k; i++) {
        if (sizes[i] < 1 || sizes[i] > FV_MAX_PATCH)
            return fv_fail(err, "patch size %d out of range [1, %d]", sizes[i], FV_MAX_PATCH);
        for (int j = 0; j < i; j++)
            if (sizes[j] == sizes[i]) return fv_fail(err, "patch size %d given twice", sizes[i]);
    }
    return 0;
}

/* indices of sizes sorted ascending */
static void order_sizes(const int *sizes, int k, int *idx) {
    for (int i = 0; i < k; i++) idx[i] = i;
    for (int i = 1; i < k; i++) {
        int t = idx[i], j = i - 1;
        while (j >= 0 && sizes[idx[j]] > sizes[t]) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = t;
    }
}

int fv_allocate(double s1w, double s2w, int num_tokens, const int *sizes, int k, double coverage, int W, int H,
                int *counts, char *err) {
    if (check_sizes(sizes, k, err)) return -1;
    if (!isfinite(s1w) || !isfinite(s2w) || !(s1w > 0) || !(s2w > 0))
        return fv_fail(err, "allocation needs finite stds > 0, got %g, %g", s1w, s2w);
    if (!isfinite(coverage) || !(coverage > 0)) return fv_fail(err, "coverage must be finite and > 0, got %g", coverage);
    if (num_tokens < 0 || num_tokens > FV_MAX_TOKENS)
        return fv_fail(err, "num_tokens must be in [0, %d], got %d", FV_MAX_TOKENS, num_tokens);
    int idx[FV_MAX_SIZES];
    order_sizes(sizes, k, idx);
    double area = 2.0 * FV_PI * s1w * s2w * coverage;
    int remaining = num_tokens;
    for (int t = k - 1; t >= 0; t--) { /* coarsest first */
        int i = idx[t], p = sizes[i];
        counts[i] = 0;
        if (W > 0 && H > 0 && (p >= W - 1 || p >= H - 1)) continue; /* cannot fit: no budget taken */
        double nbar = floor(area / ((double)p * p));
        int n = nbar >= (double)remaining ? remaining : (int)nbar;
        if (n < 0) n = 0;
        counts[i] = n;
        remaining -= n;
    }
    return 0;
}

/* ------------------------------------------------------------------ overlap grid (§3.5, intended semantics) */
typedef struct {
    double ox, oy, inv;
    int gw, gh;
    int32_t *head;
    int32_t *enext, *ebox;
    int nent, capent;
    double *box; /* 4 per box: x0 y0 x1 y1 */
    uint32_t *stamp;
    int nbox, capbox;
    uint32_t qid;
} fv_grid;

static void grid_free(fv_grid *g) {
    free(g->head);
    free(g->enext);
    free(g->ebox);
    free(g->box);
    free(g->stamp);
}

static int grid_init(fv_grid *g, double rx0, double ry0, double rx1, double ry1, double cell, int capbox, long capent) {
    memset(g, 0, sizeof(*g));
    g->ox = rx0;
    g->oy = ry0;
    g->inv = 1.0 / cell;
    g->gw = (int)ceil((rx1 - rx0) / cell) + 1;
    g->gh = (int)ceil((ry1 - ry0) / cell) + 1;
    if (g->gw < 1) g->gw = 1;
    if (g->gh < 1) g->gh = 1;
    g->capbox = capbox > 0 ? capbox : 1;
    g->capent = capent > 0 ? (int)capent : 1;
    g->head = malloc(sizeof(int32_t) * (size_t)g->gw * g->gh);
    g->enext = malloc(sizeof(int32_t) * g->capent);
    g->ebox = malloc(sizeof(int32_t) * g->capent);
    g->box = malloc(sizeof(double) * 4 * g->capbox);
    g->stamp = calloc(g->capbox, sizeof(uint32_t));
    if (!g->head || !g->enext || !g->ebox || !g->box || !g->stamp) return -1;
    memset(g->head, 0xff, sizeof(int32_t) * (size_t)g->gw * g->gh);
    return 0;
}

static inline int cell_of(double v, double o, double inv, int n) {
    double c = floor((v - o) * inv);
    if (c < 0) return 0;
    if (c > n - 1) return n - 1;
    return (int)c;
}

/* 1 if the summed intersection area with stored boxes exceeds thr; each stored box counted once. */
static int grid_overlaps(fv_grid *g, double x0, double y0, double x1, double y1, double thr) {
    int cx0 = cell_of(x0, g->ox, g->inv, g->gw), cx1 = cell_of(x1, g->ox, g->inv, g->gw);
    int cy0 = cell_of(y0, g->oy, g->inv, g->gh), cy1 = cell_of(y1, g->oy, g->inv, g->gh);
    uint32_t q = ++g->qid;
    double sum = 0.0;
    for (int cy = cy0; cy <= cy1; cy++)
        for (int cx = cx0; cx <= cx1; cx++)
            for (int32_t e = g->head[(size_t)cy * g->gw + cx]; e >= 0; e = g->enext[e]) {
                int j = g->ebox[e];
                if (g->stamp[j] == q) continue;
                g->stamp[j] = q;
                const double *b = g->box + 4 * j;
                /* plain comparisons: inputs are finite, and fmin/fmax are library calls without -ffast-math */
                double ix = (x1 < b[2] ? x1 : b[2]) - (x0 > b[0] ? x0 : b[0]);
                double iy = (y1 < b[3] ? y1 : b[3]) - (y0 > b[1] ? y0 : b[1]);
                if (ix > FV_EPS_OVERLAP && iy > FV_EPS_OVERLAP) {
                    sum += ix * iy;
                    if (sum > thr) return 1;
                }
            }
    return 0;
}

static int grid_add(fv_grid *g, double x0, double y0, double x1, double y1) {
    int cx0 = cell_of(x0, g->ox, g->inv, g->gw), cx1 = cell_of(x1, g->ox, g->inv, g->gw);
    int cy0 = cell_of(y0, g->oy, g->inv, g->gh), cy1 = cell_of(y1, g->oy, g->inv, g->gh);
    long need = (long)g->nent + (long)(cx1 - cx0 + 1) * (cy1 - cy0 + 1);
    if (need > INT32_MAX) return -1;
    if (need > g->capent) { /* grow the entry pool geometrically */
        long cap = g->capent;
        while (cap < need) cap = cap * 2 > INT32_MAX ? INT32_MAX : cap * 2;
        int32_t *en = realloc(g->enext, sizeof(int32_t) * cap);
        if (!en) return -1;
        g->enext = en;
        int32_t *eb = realloc(g->ebox, sizeof(int32_t) * cap);
        if (!eb) return -1;
        g->ebox = eb;
        g->capent = (int)cap;
    }
    int j = g->nbox++;
    double *b = g->box + 4 * j;
    b[0] = x0, b[1] = y0, b[2] = x1, b[3] = y1;
    for (int cy = cy0; cy <= cy1; cy++)
        for (int cx = cx0; cx <= cx1; cx++) {
            int e = g->nent++;
            size_t c = (size_t)cy * g->gw + cx;
            g->ebox[e] = j;
            g->enext[e] = g->head[c];
            g->head[c] = e;
        }
    return 0;
}

/* ------------------------------------------------------------------ extraction */
/* Pixel (xi, yi) at (cx − p/2 + 0.5 + xi, cy − p/2 + 0.5 + yi): the fractional offset is the same for the whole
 * patch, so the four bilinear weights are computed once. Caller guarantees all taps are inside. */
static inline uint8_t bilinear1(const uint8_t *r0, const uint8_t *r1, float w00, float w01, float w10, float w11) {
    float v = w00 * r0[0] + w01 * r0[3] + w10 * r1[0] + w11 * r1[3];
    return (uint8_t)(v + 0.5f); /* v ≥ 0: same as roundf */
}

#if defined(__SSE2__) && !defined(FV_NO_SIMD)
/* SSE2 is part of the x86-64 baseline, so this path is portable there; other CPUs use the scalar loop */
#include <emmintrin.h>
#define FV_HAVE_SSE2 1

/* 8 consecutive channel values: out = round(w00·r0[t] + w01·r0[t+3] + w10·r1[t] + w11·r1[t+3]) */
static inline void bilinear8(const uint8_t *r0, const uint8_t *r1, __m128 w00, __m128 w01, __m128 w10, __m128 w11,
                             uint8_t *o) {
    const __m128i z = _mm_setzero_si128();
    __m128i a = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r0), z);
    __m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r0 + 3)), z);
    __m128i c = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)r1), z);
    __m128i d = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(r1 + 3)), z);
    __m128 half = _mm_set1_ps(0.5f);
    __m128 lo = _mm_add_ps(
        _mm_add_ps(_mm_mul_ps(w00, _mm_cvtepi32_ps(_mm_unpacklo_epi16(a, z))), _mm_mul_ps(w01, _mm_cvtepi32_ps(_mm_unpacklo_epi16(b, z)))),
        _mm_add_ps(_mm_mul_ps(w10, _mm_cvtepi32_ps(_mm_unpacklo_epi16(c, z))), _mm_mul_ps(w11, _mm_cvtepi32_ps(_mm_unpacklo_epi16(d, z)))));
    __m128 hi = _mm_add_ps(
        _mm_add_ps(_mm_mul_ps(w00, _mm_cvtepi32_ps(_mm_unpackhi_epi16(a, z))), _mm_mul_ps(w01, _mm_cvtepi32_ps(_mm_unpackhi_epi16(b, z)))),
        _mm_add_ps(_mm_mul_ps(w10, _mm_cvtepi32_ps(_mm_unpackhi_epi16(c, z))), _mm_mul_ps(w11, _mm_cvtepi32_ps(_mm_unpackhi_epi16(d, z)))));
    __m128i q = _mm_packs_epi32(_mm_cvttps_epi32(_mm_add_ps(lo, half)), _mm_cvttps_epi32(_mm_add_ps(hi, half)));
    _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(q, q));
}
#endif

static void extract_patch(const fv_image *im, double cx, double cy, int p, uint8_t *restrict out) {
    double sx = cx - 0.5 * p + 0.5, sy = cy - 0.5 * p + 0.5;
    int x0 = (int)sx, y0 = (int)sy;
    float dx = (float)(sx - x0), dy = (float)(sy - y0);
    float w00 = (1 - dx) * (1 - dy), w01 = dx * (1 - dy), w10 = (1 - dx) * dy, w11 = dx * dy;
    size_t stride = (size_t)im->W * 3;
    int n = 3 * p;
#ifdef FV_HAVE_SSE2
    __m128 v00 = _mm_set1_ps(w00), v01 = _mm_set1_ps(w01), v10 = _mm_set1_ps(w10), v11 = _mm_set1_ps(w11);
#endif
    for (int yi = 0; yi < p; yi++) {
        const uint8_t *r0 = im->pixels + (size_t)(y0 + yi) * stride + (size_t)x0 * 3;
        const uint8_t *r1 = r0 + stride;
        uint8_t *o = out + (size_t)yi * n;
        int t = 0;
#ifdef FV_HAVE_SSE2
        /* the last byte read is r1[t + 3 + 7] ≤ r1[n + 2], the right bilinear tap of the last pixel: in bounds */
        for (; t + 8 <= n; t += 8) bilinear8(r0 + t, r1 + t, v00, v01, v10, v11, o + t);
#endif
        for (; t < n; t++) o[t] = bilinear1(r0 + t, r1 + t, w00, w01, w10, w11);
    }
}

/* ------------------------------------------------------------------ placement (§3.3) */
int fv_place(const fv_image *im, const int *sizes, int k, const int *counts, double tau, fv_candidate_fn next,
             void *ctx, const double *region, uint8_t **patches, float **coords, double **centres, int *got, char *err) {
    if (check_sizes(sizes, k, err)) return -1;
    if (!isfinite(tau) || tau < 0) return fv_fail(err, "tau must be finite and >= 0, got %g", tau);
    int idx[FV_MAX_SIZES];
    order_sizes(sizes, k, idx);
    int total = 0, pstar = 1, best = -1, pmax = 1;
    for (int i = 0; i < k; i++) {
        got[i] = 0;
        if (counts[i] < 0 || counts[i] > FV_MAX_TOKENS) return fv_fail(err, "patch count %d out of range", counts[i]);
        total += counts[i];
        if (total > FV_MAX_TOKENS) return fv_fail(err, "more than %d patches requested", FV_MAX_TOKENS);
        if (counts[i] > best) best = counts[i], pstar = sizes[i];
        if (counts[i] > 0 && sizes[i] > pmax) pmax = sizes[i];
    }
    if (total == 0) return 0;
    /* grid region: where the Gaussian puts nearly all boxes (others are clamped to border cells). Cell size: the
     * power-of-two multiple of the most frequent patch size that minimises an estimate of the work, cells visited
     * per query × boxes per cell; the grid keeps at most max(4096, 8·total) cells. */
    double rx0 = 0, ry0 = 0, rx1 = im->W - 1, ry1 = im->H - 1;
    if (region) {
        rx0 = fmax(rx0, region[0]), ry0 = fmax(ry0, region[1]);
        rx1 = fmin(rx1, region[2]), ry1 = fmin(ry1, region[3]);
        if (!(rx1 > rx0)) rx0 = 0, rx1 = im->W - 1;
        if (!(ry1 > ry0)) ry0 = 0, ry1 = im->H - 1;
    }
    double rw = rx1 - rx0 + 1, rh = ry1 - ry0 + 1;
    double limit = fmax(4096.0, 8.0 * total), dens = total / (rw * rh);
    double cell = pstar, best_cost = -1;
    for (double c = pstar; c <= 2.0 * fmax(rw, rh) + pmax; c *= 2) {
        if ((rw / c + 1) * (rh / c + 1) > limit) continue;
        double cost = 0;
        for (int i = 0; i < k; i++) {
            double span = sizes[i] / c + 2;
            cost += counts[i] * span * span * (1.0 + dens * (c + pstar) * (c + pstar));
        }
        if (best_cost < 0 || cost < best_cost) best_cost = cost, cell = c;
    }
    if (best_cost < 0) cell = sqrt(rw * rh / limit) + 1; /* huge region: respect the cell limit */
    long capent = 0; /* initial guess; grid_add grows the pool if needed */
    for (int i = 0; i < k; i++) {
        long span = (long)floor(sizes[i] / cell) + 2;
        capent += (long)counts[i] * (span * span < 256 ? span * span : 256);
    }
    if (capent > (1L << 24)) capent = 1L << 24;
    fv_grid grid;
    if (grid_init(&grid, rx0, ry0, rx1, ry1, cell, total, capent)) {
        grid_free(&grid);
        return fv_fail(err, "out of memory for the overlap grid");
    }
    const double W1 = im->W - 1, H1 = im->H - 1;
    for (int t = 0; t < k; t++) { /* finest first */
        int i = idx[t], p = sizes[i], n = counts[i];
        if (n == 0) continue;
        double half = 0.5 * p, thr = tau * (double)p * p;
        long attempts = 10L * n;
        size_t psz = (size_t)p * p * 3;
        for (long a = 0; a < attempts && got[i] < n; a++) {
            double cx, cy;
            if (!next(ctx, i, &cx, &cy)) break;
            double x0 = cx - half, x1 = cx + half, y0 = cy - half, y1 = cy + half;
            /* written as "inside" so NaN candidates are rejected */
            if (!(x0 >= 0 && x1 < W1 && y0 >= 0 && y1 < H1)) continue;
            if (grid_overlaps(&grid, x0, y0, x1, y1, thr)) continue;
            if (grid_add(&grid, x0, y0, x1, y1)) {
                grid_free(&grid);
                return fv_fail(err, "out of memory for the overlap grid");
            }
            int m = got[i]++;
            extract_patch(im, cx, cy, p, patches[i] + m * psz);
            coords[i][2 * m] = (float)(cx / 128.0 - im->W / 256.0);
            coords[i][2 * m + 1] = (float)(cy / 128.0 - im->H / 256.0);
            if (centres && centres[i]) {
                centres[i][2 * m] = cx;
                centres[i][2 * m + 1] = cy;
            }
        }
    }
    grid_free(&grid);
    return 0;
}

/* ------------------------------------------------------------------ whole pipeline */
typedef struct {
    fv_rng *rng;
    const fv_gauss *g;
} gauss_src;

static int gauss_next(void *ctx, int level, double *x, double *y) {
    (void)level;
    gauss_src *s = ctx;
    double u = fv_normal(s->rng) * s->g->s1, v = fv_normal(s->rng) * s->g->s2;
    *x = s->g->a * u - s->g->b * v + s->g->mx;
    *y = s->g->b * u + s->g->a * v + s->g->my;
    return 1;
}

int fv_prepare(const fv_image *im, const double g6[6], int num_tokens, const int *sizes, int k, double tau,
               double coverage, uint64_t seed, int compat, fv_plan *plan, char *err) {
    if (im->W < 3 || im->H < 3)
        return fv_fail(err, "image is %dx%d; the sampler needs at least 3x3 pixels (1-px margin for bilinear taps)", im->W, im->H);
    if (compat != FV_COMPAT_EXACT && compat != FV_COMPAT_AUTHORS) return fv_fail(err, "unknown compat mode %d", compat);
    plan->compat = compat;
    if (fv_sampling_gaussian(g6, im->W, im->H, &plan->g, err)) return -1;
    if (isnan(tau) || isinf(tau)) return fv_fail(err, "tau must be finite, got %g", tau);
    if (isnan(coverage) || isinf(coverage) || coverage == 0.0) return fv_fail(err, "coverage must be finite and > 0, got %g", coverage);
    if (check_sizes(sizes, k, err)) return -1;
    if (num_tokens < 0 || num_tokens > FV_MAX_TOKENS)
        return fv_fail(err, "num_tokens must be in [0, %d], got %d", FV_MAX_TOKENS, num_tokens);
    if (compat == FV_COMPAT_AUTHORS) {
        if (seed > 0xFFFFFFFFULL) return fv_fail(err, "compat='authors' takes a seed in [0, 2**32) (their int seed), got %llu", (unsigned long long)seed);
        if (!fa_tables_ready()) return fv_fail(err, "internal: ziggurat tables not built");
        if (tau > 1e30 || coverage > 1e30) return fv_fail(err, "tau and coverage must be <= 1e30 in compat='authors' (float32), got %g, %g", tau, coverage);
        fa_gaussian(g6, &plan->ga);
        fa_seed(&plan->arng, (uint32_t)seed);
        /* as their wrapper: the overlap threshold first, then the coverage, each only when not given (float32) */
        float t = tau < 0 ? (float)((double)fa_uniform(&plan->arng) * 4.0) : (float)tau;
        float c = coverage < 0 ? (float)(0.1 + (double)fa_uniform(&plan->arng) * 1.9) : (float)coverage;
        plan->tau = t, plan->coverage = c;
        fa_allocate(plan->ga.s1, plan->ga.s2, num_tokens, sizes, k, c, plan->counts);
        return 0;
    }
    fv_rng_seed(&plan->rng, seed);
    plan->tau = tau < 0 ? fv_uniform(&plan->rng) * 4.0 : tau;
    plan->coverage = coverage < 0 ? 0.1 + fv_uniform(&plan->rng) * 1.9 : coverage;
    return fv_allocate(plan->g.s1, plan->g.s2, num_tokens, sizes, k, plan->coverage, im->W, im->H, plan->counts, err);
}

int fv_run(const fv_image *im, fv_plan *plan, const int *sizes, int k, uint8_t **patches, float **coords, int *got,
           char *err) {
    if (plan->compat == FV_COMPAT_AUTHORS)
        return fa_run(im, &plan->ga, &plan->arng, sizes, k, plan->counts, (float)plan->tau, patches, coords, got, err);
    gauss_src src = {&plan->rng, &plan->g};
    int pmax = 1;
    for (int i = 0; i < k; i++)
        if (plan->counts[i] > 0 && sizes[i] > pmax) pmax = sizes[i];
    double r = 4.0 * fmax(plan->g.s1, plan->g.s2) + pmax; /* 4σ holds all but ~3e-4 of the candidates */
    double region[4] = {plan->g.mx - r, plan->g.my - r, plan->g.mx + r, plan->g.my + r};
    return fv_place(im, sizes, k, plan->counts, plan->tau, gauss_next, &src, region, patches, coords, NULL, got, err);
}

/* ------------------------------------------------------------------ token count (§3.4) */
int fv_num_tokens(fv_rng *r, int min_tokens, int max_tokens, double mean_tokens, int *out, char *err) {
    if (!(min_tokens >= 0 && max_tokens > min_tokens && max_tokens <= FV_MAX_TOKENS))
        return fv_fail(err, "need 0 <= min_tokens < max_tokens <= %d, got %d, %d", FV_MAX_TOKENS, min_tokens, max_tokens);
    if (!(mean_tokens > min_tokens && mean_tokens < max_tokens))
        return fv_fail(err, "need min_tokens < mean_tokens < max_tokens, got %g", mean_tokens);
    double m = (mean_tokens - min_tokens) / (double)(max_tokens - min_tokens);
    double alpha = 2.0, beta = (1.0 / m - 1.0) * 2.0;
    double x = fv_gamma(r, alpha), y = fv_gamma(r, beta);
    double z = x / (x + y);
    long n = min_tokens + lround(z * (max_tokens - min_tokens));
    if (n < min_tokens) n = min_tokens;
    if (n > max_tokens) n = max_tokens;
    *out = (int)n;
    return 0;
}

/* ------------------------------------------------------------------ augmentation (§6.2) */
int fv_augment(fv_rng *r, const double in[6], double out[6], char *err) {
    for (int i = 0; i < 6; i++)
        if (!isfinite(in[i])) return fv_fail(err, "position contains NaN or inf");
    double mx = in[0], my = in[1], s1 = in[2], s2 = in[3], a = in[4], b = in[5];
    if (!(s1 > 0) || !(s2 > 0)) return fv_fail(err, "position stds must be > 0, got s1=%g s2=%g", s1, s2);
    /* bounded inputs keep every intermediate finite (products stay below ~1e14) */
    for (int i = 0; i < 6; i++)
        if (fabs(in[i]) > FV_AUGMENT_LIMIT)
            return fv_fail(err, "position value %d = %g out of range: |values| must be <= %g", i, in[i], FV_AUGMENT_LIMIT);
    if (!(a * a + b * b > 1e-24)) return fv_fail(err, "position direction (a, b) is zero");
    /* 1. shift 10 % of σ along the (unflipped) axes */
    double u = fv_normal(r) * 0.1 * s1, v = fv_normal(r) * 0.1 * s2;
    mx += a * u - b * v;
    my += b * u + a * v;
    /* 2-3. small rotation, at most 20°·minor/major */
    double f = (2.0 / 36.0) * fmin(s1, s2) / fmax(fmax(s1, s2), 1e-8);
    if (f > 2.0 / 36.0) f = 2.0 / 36.0;
    double th = (2.0 * fv_uniform(r) - 1.0) * 2.0 * FV_PI * f;
    double ct = cos(th), st = sin(th);
    double a2 = a * ct - b * st, b2 = a * st + b * ct;
    /* 4. scale noise, clipped at ±30 % */
    double e1 = fv_normal(r) * 0.1 * s1, e2 = fv_normal(r) * 0.1 * s2;
    e1 = fmin(fmax(e1, -0.3 * s1), 0.3 * s1);
    e2 = fmin(fmax(e2, -0.3 * s2), 0.3 * s2);
    s1 += e1;
    s2 += e2;
    /* 5. isotropic blend */
    double al = 1.0 - exp(-fabs(f)), siso = sqrt(s1 * s1 + s2 * s2);
    s1 = (1 - al) * s1 + al * siso;
    s2 = (1 - al) * s2 + al * siso;
    out[0] = mx, out[1] = my, out[2] = s1, out[3] = s2, out[4] = a2, out[5] = b2;
    for (int i = 0; i < 6; i++)
        if (!isfinite(out[i])) return fv_fail(err, "augmentation produced a non-finite value (internal)");
    return 0;
}

/* ------------------------------------------------------------------ mask pixels (§6.4) */
void fv_boundary_distance(const uint8_t *crop, int w, int h, ptrdiff_t stride, int32_t *dist) {
    for (int y = 0; y < h; y++) {
        const uint8_t *row = crop + y * stride;
        for (int x = 0; x < w; x++) {
            int v = row[x] != 0, bnd = 0;
            if (x > 0 && (row[x - 1] != 0) != v) bnd = 1;
            else if (x + 1 < w && (row[x + 1] != 0) != v) bnd = 1;
            else if (y > 0 && (row[x - stride] != 0) != v) bnd = 1;
            else if (y + 1 < h && (row[x + stride] != 0) != v) bnd = 1;
            dist[(size_t)y * w + x] = bnd ? 0 : FV_INF_DIST;
        }
    }
    /* exact L1 (4-connected BFS) distance by two raster passes */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int32_t *d = dist + (size_t)y * w + x;
            if (x > 0 && d[-1] + 1 < *d) *d = d[-1] + 1;
            if (y > 0 && d[-w] + 1 < *d) *d = d[-w] + 1;
        }
    for (int y = h - 1; y >= 0; y--)
        for (int x = w - 1; x >= 0; x--) {
            int32_t *d = dist + (size_t)y * w + x;
            if (x + 1 < w && d[1] + 1 < *d) *d = d[1] + 1;
            if (y + 1 < h && d[w] + 1 < *d) *d = d[w] + 1;
        }
}

static const int32_t group_thr[FV_NUM_GROUPS - 1] = {2, 4, 8, 16, 32, 64};

static inline int group_bin(int32_t d) {
    for (int g = 0; g < FV_NUM_GROUPS - 1; g++)
        if (d <= group_thr[g]) return g;
    return FV_NUM_GROUPS - 1;
}

int fv_mask_sample(const uint8_t *mask, int W, int H, const double g6[6], const int n[FV_NUM_GROUPS], fv_rng *r,
                   uint8_t *labels, float *coords, char *err) {
    if (W < 1 || H < 1) return fv_fail(err, "mask is empty (%dx%d)", W, H);
    if ((double)W * H > 2e9) return fv_fail(err, "mask too large (%dx%d)", W, H);
    for (int i = 0; i < 6; i++)
        if (!isfinite(g6[i])) return fv_fail(err, "Gaussian contains NaN or inf");
    if (!(g6[2] > 0) || !(g6[3] > 0)) return fv_fail(err, "Gaussian stds must be > 0, got s1=%g s2=%g", g6[2], g6[3]);
    for (int g = 0; g < FV_NUM_GROUPS; g++)
        if (n[g] < 0 || n[g] > FV_MAX_TOKENS) return fv_fail(err, "group count %d out of range [0, %d]", n[g], FV_MAX_TOKENS);
    /* 1. crop to the 5σ box (σ = max std, no widening) */
    double s = fmax(g6[2], g6[3]);
    double fx0 = fmax(floor(g6[0] - 5 * s), 0), fx1 = fmin(ceil(g6[0] + 5 * s), W - 1);
    double fy0 = fmax(floor(g6[1] - 5 * s), 0), fy1 = fmin(ceil(g6[1] + 5 * s), H - 1);
    if (fx0 > fx1 || fy0 > fy1)
        return fv_fail(err, "the 5-sigma box around (%g, %g) does not intersect the %dx%d mask", g6[0], g6[1], W, H);
    int x0 = (int)fx0, x1 = (int)fx1, y0 = (int)fy0, y1 = (int)fy1;
    if (x1 - x0 + 1 > 0.9 * W && y1 - y0 + 1 > 0.9 * H) x0 = 0, x1 = W - 1, y0 = 0, y1 = H - 1;
    int cw = x1 - x0 + 1, ch = y1 - y0 + 1;
    size_t np = (size_t)cw * ch;
    int32_t *dist = malloc(sizeof(int32_t) * np);
    int32_t *order = malloc(sizeof(int32_t) * np);
    if (!dist || !order) {
        free(dist);
        free(order);
        return fv_fail(err, "out of memory for a %dx%d crop", cw, ch);
    }
    const uint8_t *crop = mask + (size_t)y0 * W + x0;
    fv_boundary_distance(crop, cw, ch, W, dist);
    /* 2-3. bin pixels by side and distance band; group g of a side = prefix of bands 0..g (nested groups) */
    size_t cnt[2][FV_NUM_GROUPS] = {{0}};
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++) cnt[crop[(size_t)y * W + x] != 0][group_bin(dist[(size_t)y * cw + x])]++;
    size_t start[2][FV_NUM_GROUPS], fill[2][FV_NUM_GROUPS], glen[2][FV_NUM_GROUPS], off = 0;
    for (int side = 1; side >= 0; side--) { /* inside (1) block first, then outside */
        size_t acc = 0;
        for (int g = 0; g < FV_NUM_GROUPS; g++) {
            start[side][g] = off;
            fill[side][g] = off;
            off += cnt[side][g];
            acc += cnt[side][g];
            glen[side][g] = acc;
        }
    }
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < cw; x++) {
            int side = crop[(size_t)y * W + x] != 0, g = group_bin(dist[(size_t)y * cw + x]);
            order[fill[side][g]++] = y * cw + x;
        }
    /* 4-6. draw */
    size_t m = 0;
    int rc = 0;
    for (int g = 0; g < FV_NUM_GROUPS && !rc; g++) {
        int want[2] = {n[g] / 2, n[g] - n[g] / 2}; /* inside, outside */
        for (int k = 0; k < 2 && !rc; k++) {
            int side = k == 0 ? 1 : 0;
            if (want[k] == 0) continue;
            int use = -1;
            for (int step = 0; step < 2 * FV_NUM_GROUPS && use < 0; step++) { /* g, g−1, g+1, g−2, … */
                int cand = step == 0 ? g : (step % 2 ? g - (step + 1) / 2 : g + step / 2);
                if (cand >= 0 && cand < FV_NUM_GROUPS && glen[side][cand] > 0) use = cand;
            }
            if (use < 0) {
                rc = fv_fail(err, "no %s pixels in the 5-sigma crop (%dx%d at %d,%d): cannot sample group %d",
                             side ? "inside" : "outside", cw, ch, x0, y0, g);
                break;
            }
            const int32_t *list = order + start[side][0];
            size_t len = glen[side][use];
            for (int j = 0; j < want[k]; j++, m++) {
                int32_t pix = list[fv_below(r, len)];
                double px = x0 + pix % cw + (fv_uniform(r) - 0.5);
                double py = y0 + pix / cw + (fv_uniform(r) - 0.5);
                labels[m] = (uint8_t)side;
                coords[2 * m] = (float)(px / 128.0 - W / 256.0);
                coords[2 * m + 1] = (float)(py / 128.0 - H / 256.0);
            }
        }
    }
    free(dist);
    free(order);
    return rc;
}
