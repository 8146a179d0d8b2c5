/* Fovea sampler core (docs/flip.md §3, §6.2, §6.4): plain C, no Python, no global state.
 * Every function that draws random numbers takes an fv_rng owned by the caller, so the same seed gives the
 * same output in every thread. Errors are returned as a non-zero code with a one-line message in `err`. */
#ifndef FLIP_FOVEA_H
#define FLIP_FOVEA_H

#include <stddef.h>
#include <stdint.h>

#define FV_ERRLEN 256
#define FV_MAX_SIZES 16
#define FV_MAX_PATCH 1024
#define FV_MAX_TOKENS 1000000
#define FV_NUM_GROUPS 7
#define FV_AUGMENT_LIMIT 1e6 /* |rot6| bound of augment_position */
#define FV_FAR_SIGMAS 5.0 /* a Gaussian whose mean lies more than 5 widened σ outside the image is an error */

/* ---- RNG: xoshiro256++ seeded through splitmix64; polar-method normals ---- */
typedef struct {
    uint64_t s[4];
    int has_spare;
    double spare;
} fv_rng;

void fv_rng_seed(fv_rng *r, uint64_t seed);
uint64_t fv_next(fv_rng *r);
double fv_uniform(fv_rng *r);            /* [0, 1), 53 bits */
double fv_normal(fv_rng *r);             /* N(0, 1) */
double fv_gamma(fv_rng *r, double shape); /* Marsaglia–Tsang, shape > 0 */
uint64_t fv_below(fv_rng *r, uint64_t n); /* uniform integer in [0, n), n > 0 */

/* Gaussian as the sampler uses it for placement: pixels, stds already √2-widened, (a, b) flipped and normalised. */
typedef struct {
    double mx, my, s1, s2, a, b;
} fv_gauss;

/* g6 = (μx, μy, s1, s2, a, b) in pixels, authors' rot convention, no widening (docs/sampler.md).
 * Checks finiteness, positive stds, non-zero direction, and that the mean is not far outside the W×H image. */
int fv_sampling_gaussian(const double g6[6], int W, int H, fv_gauss *out, char *err);

/* docs/flip.md §3.2. s1w, s2w: widened stds. Sizes that cannot fit a W×H image (p ≥ min(W, H) − 1) get 0 and take no
 * budget (W = H = 0 disables that rule). counts[i] follows sizes[i] (any order; allocation runs coarse to fine). */
int fv_allocate(double s1w, double s2w, int num_tokens, const int *sizes, int k, double coverage, int W, int H,
                int *counts, char *err);

/* Candidate source for placement: returns 1 and a centre for level `level`, or 0 when exhausted. */
typedef int (*fv_candidate_fn)(void *ctx, int level, double *x, double *y);

typedef struct {
    const uint8_t *pixels; /* H×W×3, C-contiguous */
    int W, H;
} fv_image;

/* docs/flip.md §3.3 + §3.5 (intended semantics). Levels are placed from the smallest patch size to the largest; level i
 * consumes at most 10·counts[i] candidates. Outputs per level i (capacity counts[i]): patches (n, p, p, 3) uint8,
 * coords (n, 2) float32 model units, centres (n, 2) float64 pixels (may be NULL). got[i] = accepted count.
 * region (x0, y0, x1, y1) or NULL: where most boxes will land, only sizes the overlap grid (results never depend on it). */
int fv_place(const fv_image *im, const int *sizes, int k, const int *counts, double tau, fv_candidate_fn next,
             void *ctx, const double *region, uint8_t **patches, float **coords, double **centres, int *got, char *err);

/* ---- compat = "authors" (fovea_authors.c): the authors' sampler, bit for bit ---- */
typedef struct {
    uint32_t jsr, jcong, w, z; /* KISS state */
} fa_rng;

typedef struct {
    float mx, my, s1, s2, a, b; /* sampling Gaussian: pixels, widened, a flipped, (a, b) normalised */
} fa_gauss;

void fa_init_tables(void); /* builds the ziggurat tables; call once before any other fa_ function */
int fa_tables_ready(void);
void fa_seed(fa_rng *r, uint32_t seed); /* = the authors' initialize_ziggurat(seed) */
uint32_t fa_kiss(fa_rng *r);
float fa_normal(fa_rng *r);  /* r4_nor_value */
float fa_uniform(fa_rng *r); /* r4_uni_value */
int fa_gaussian(const double g6[6], fa_gauss *out);
/* rho (5, float32) → the authors' float32 norm-frame rot (6) and the pixel Gaussian g6 their wrapper derives from it
 * for a W×H image (float64, un-widened): the C twin of flip.sampler.authors_rot_from_rho + authors_gaussian_px */
void fa_position_from_rho(const float rho[5], int width, int height, float rot[6], double g6[6]);
void fa_allocate(float s1w, float s2w, int num_tokens, const int *sizes, int k, float coverage, int *counts);
int fa_extract(const fv_image *im, float cx, float cy, int p, uint8_t *out, char *err); /* one patch (tests) */
int fa_run(const fv_image *im, const fa_gauss *g, fa_rng *r, const int *sizes, int k, const int *counts, float tau,
           uint8_t **patches, float **coords, int *got, char *err);

/* Whole pipeline for one object: validation, widening, allocation, Gaussian candidates, placement.
 * tau < 0 or coverage < 0: drawn from the RNG as in training (τ ~ U[0,4), c ~ U[0.1, 2)).
 * compat: FV_COMPAT_EXACT (docs/flip.md §3.5 rule, xoshiro stream) or FV_COMPAT_AUTHORS (the authors' sampler; seed < 2³²).
 * The caller allocates outputs with capacity counts[i] from fv_prepare. */
#define FV_COMPAT_EXACT 0
#define FV_COMPAT_AUTHORS 1
typedef struct {
    int compat;
    fv_gauss g;
    double tau, coverage;
    int counts[FV_MAX_SIZES];
    fv_rng rng;
    fa_gauss ga; /* authors mode */
    fa_rng arng;
} fv_plan;

int fv_prepare(const fv_image *im, const double g6[6], int num_tokens, const int *sizes, int k, double tau,
               double coverage, uint64_t seed, int compat, fv_plan *plan, char *err);
int fv_run(const fv_image *im, fv_plan *plan, const int *sizes, int k, uint8_t **patches, float **coords, int *got,
           char *err);

/* docs/flip.md §3.4: Beta(2, 2(1/m − 1)) on [min, max], m = (mean − min)/(max − min). */
int fv_num_tokens(fv_rng *r, int min_tokens, int max_tokens, double mean_tokens, int *out, char *err);

/* docs/flip.md §6.2: rot6 in the norm frame → augmented rot6. */
int fv_augment(fv_rng *r, const double in[6], double out[6], char *err);

/* docs/flip.md §6.4. mask H×W uint8 (non-zero = inside). g6 in pixels (no widening, a unflipped: only μ, s1, s2 used).
 * labels (M,) 0/1 and coords (M, 2) model units, M = Σ n[g]; order [g0 inside, g0 outside, g1 inside, …]. */
int fv_mask_sample(const uint8_t *mask, int W, int H, const double g6[6], const int n[FV_NUM_GROUPS], fv_rng *r,
                   uint8_t *labels, float *coords, char *err);

/* Boundary distance map of a w×h binary crop (row stride `stride`): L1 distance to the nearest pixel that has a
 * 4-neighbour of the other value; INT32_MAX/2 where the crop has no boundary. */
void fv_boundary_distance(const uint8_t *crop, int w, int h, ptrdiff_t stride, int32_t *dist);

#endif
