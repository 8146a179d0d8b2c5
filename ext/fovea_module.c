/* Python binding `flip._fovea`: validates every argument itself (never trusts the Python wrapper), releases the
 * GIL around the sampling work, raises flip._fovea.SamplerError (a ValueError) on bad input. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PY_ARRAY_UNIQUE_SYMBOL FLIP_FOVEA_ARRAY_API
#include <numpy/arrayobject.h>

#include "fovea.h"

static PyObject *SamplerError;

static int fail(const char *msg) {
    PyErr_SetString(SamplerError, msg);
    return -1;
}

/* ---------------------------------------------------------------- argument helpers */
static int parse_seed(PyObject *o, uint64_t *seed) {
    if (!PyLong_Check(o) && !PyIndex_Check(o)) return fail("seed must be an int in [0, 2**64)");
    PyObject *i = PyNumber_Index(o);
    if (!i) return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(i);
    Py_DECREF(i);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return fail("seed must be an int in [0, 2**64)");
    }
    *seed = (uint64_t)v;
    return 0;
}

static int parse_doubles(PyObject *o, double *out, int n, const char *what) {
    PyObject *seq = PySequence_Fast(o, "");
    if (!seq) {
        PyErr_Clear();
        PyErr_Format(SamplerError, "%s must be a sequence of %d numbers", what, n);
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(seq) != n) {
        PyErr_Format(SamplerError, "%s must have %d numbers, got %zd", what, n, PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        out[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (out[i] == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(SamplerError, "%s[%d] is not a number", what, i);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static int parse_ints(PyObject *o, int *out, int maxn, int *n, const char *what) {
    PyObject *seq = PySequence_Fast(o, "");
    if (!seq) {
        PyErr_Clear();
        PyErr_Format(SamplerError, "%s must be a sequence of ints", what);
        return -1;
    }
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (len < 1 || len > maxn) {
        PyErr_Format(SamplerError, "%s must have 1..%d entries, got %zd", what, maxn, len);
        Py_DECREF(seq);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        long v;
        if (PyFloat_Check(it)) {
            double d = PyFloat_AsDouble(it);
            if (!(d == floor(d)) || fabs(d) > 2e9) {
                PyErr_Format(SamplerError, "%s[%zd] = %g is not an integer", what, i, d);
                Py_DECREF(seq);
                return -1;
            }
            v = (long)d;
        } else {
            v = PyLong_AsLong(it);
            if (v == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                PyErr_Format(SamplerError, "%s[%zd] is not an integer", what, i);
                Py_DECREF(seq);
                return -1;
            }
        }
        if (v < INT32_MIN / 2 || v > INT32_MAX / 2) {
            PyErr_Format(SamplerError, "%s[%zd] = %ld out of range", what, i, v);
            Py_DECREF(seq);
            return -1;
        }
        out[i] = (int)v;
    }
    *n = (int)len;
    Py_DECREF(seq);
    return 0;
}

static int parse_compat(PyObject *o, int *compat) {
    if (o == NULL) return fail("compat must be given: 'exact' or 'authors'");
    if (!PyUnicode_Check(o)) return fail("compat must be a string: 'exact' or 'authors'");
    if (PyUnicode_CompareWithASCIIString(o, "exact") == 0) *compat = FV_COMPAT_EXACT;
    else if (PyUnicode_CompareWithASCIIString(o, "authors") == 0) *compat = FV_COMPAT_AUTHORS;
    else return fail("unknown compat mode: choose 'exact' or 'authors'");
    return 0;
}

static int parse_image(PyObject *o, fv_image *im, PyArrayObject **arr) {
    if (!PyArray_Check(o)) return fail("image must be a numpy uint8 array of shape (H, W, 3)");
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != NPY_UINT8) return fail("image must have dtype uint8 (RGB, HWC)");
    if (PyArray_NDIM(a) != 3 || PyArray_DIM(a, 2) != 3)
        return fail("image must have shape (H, W, 3) (RGB); expand grayscale images to 3 channels first");
    if (!PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISALIGNED(a))
        return fail("image must be C-contiguous (use numpy.ascontiguousarray)");
    if (PyArray_DIM(a, 0) < 3 || PyArray_DIM(a, 1) < 3 || PyArray_DIM(a, 0) > (1 << 20) || PyArray_DIM(a, 1) > (1 << 20)) {
        PyErr_Format(SamplerError, "image is %zdx%zd; the sampler needs at least 3x3 pixels", (Py_ssize_t)PyArray_DIM(a, 1),
                     (Py_ssize_t)PyArray_DIM(a, 0));
        return -1;
    }
    im->pixels = PyArray_DATA(a);
    im->H = (int)PyArray_DIM(a, 0);
    im->W = (int)PyArray_DIM(a, 1);
    *arr = a;
    return 0;
}

static int parse_common(PyObject *sizes_o, int *sizes, int *k, int num_tokens) {
    if (parse_ints(sizes_o, sizes, FV_MAX_SIZES, k, "patch_sizes")) return -1;
    if (num_tokens < 0 || num_tokens > FV_MAX_TOKENS) {
        PyErr_Format(SamplerError, "num_tokens must be in [0, %d], got %d", FV_MAX_TOKENS, num_tokens);
        return -1;
    }
    return 0;
}

/* Output arrays sized by the allocation; shrunk to the accepted counts afterwards. */
typedef struct {
    PyArrayObject *patches[FV_MAX_SIZES], *coords[FV_MAX_SIZES];
    uint8_t *pp[FV_MAX_SIZES];
    float *cp[FV_MAX_SIZES];
    int got[FV_MAX_SIZES];
} outputs;

static void outputs_clear(outputs *o, int k) {
    for (int i = 0; i < k; i++) {
        Py_CLEAR(o->patches[i]);
        Py_CLEAR(o->coords[i]);
    }
}

static int outputs_alloc(outputs *o, const int *sizes, const int *counts, int k) {
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < k; i++) {
        npy_intp pd[4] = {counts[i], sizes[i], sizes[i], 3}, cd[2] = {counts[i], 2};
        o->patches[i] = (PyArrayObject *)PyArray_SimpleNew(4, pd, NPY_UINT8);
        o->coords[i] = (PyArrayObject *)PyArray_SimpleNew(2, cd, NPY_FLOAT32);
        if (!o->patches[i] || !o->coords[i]) {
            outputs_clear(o, k);
            return -1;
        }
        o->pp[i] = PyArray_DATA(o->patches[i]);
        o->cp[i] = PyArray_DATA(o->coords[i]);
    }
    return 0;
}

/* (counts tuple, patches list, coords list, tau, coverage); steals the arrays */
static PyObject *outputs_finish(outputs *o, const int *sizes, const int *alloc, int k, double tau, double coverage) {
    PyObject *counts = PyTuple_New(k), *pl = PyList_New(k), *cl = PyList_New(k);
    if (!counts || !pl || !cl) goto bad;
    for (int i = 0; i < k; i++) {
        if (o->got[i] < alloc[i]) { /* shrink in place (fresh arrays, no other references) */
            npy_intp pd[4] = {o->got[i], sizes[i], sizes[i], 3}, cd[2] = {o->got[i], 2};
            PyArray_Dims pdim = {pd, 4}, cdim = {cd, 2};
            PyObject *r1 = PyArray_Resize(o->patches[i], &pdim, 0, NPY_CORDER);
            PyObject *r2 = PyArray_Resize(o->coords[i], &cdim, 0, NPY_CORDER);
            Py_XDECREF(r1);
            Py_XDECREF(r2);
            if (!r1 || !r2) goto bad;
        }
        PyTuple_SET_ITEM(counts, i, PyLong_FromLong(o->got[i]));
        PyList_SET_ITEM(pl, i, (PyObject *)o->patches[i]);
        PyList_SET_ITEM(cl, i, (PyObject *)o->coords[i]);
        o->patches[i] = NULL;
        o->coords[i] = NULL;
    }
    return Py_BuildValue("(NNNdd)", counts, pl, cl, tau, coverage);
bad:
    Py_XDECREF(counts);
    Py_XDECREF(pl);
    Py_XDECREF(cl);
    outputs_clear(o, k);
    return NULL;
}

/* ---------------------------------------------------------------- sample_patches */
static PyObject *py_sample_patches(PyObject *self, PyObject *args) {
    PyObject *img_o, *g_o, *sizes_o, *seed_o, *compat_o = NULL;
    int num_tokens, compat;
    double tau, coverage;
    if (!PyArg_ParseTuple(args, "OOiOddO|O", &img_o, &g_o, &num_tokens, &sizes_o, &tau, &coverage, &seed_o, &compat_o))
        return NULL;
    fv_image im;
    PyArrayObject *arr;
    double g6[6];
    int sizes[FV_MAX_SIZES], k;
    uint64_t seed;
    char err[FV_ERRLEN] = "";
    if (parse_image(img_o, &im, &arr) || parse_doubles(g_o, g6, 6, "gaussian") ||
        parse_common(sizes_o, sizes, &k, num_tokens) || parse_seed(seed_o, &seed) ||
        parse_compat(compat_o, &compat))
        return NULL;
    fv_plan plan;
    if (fv_prepare(&im, g6, num_tokens, sizes, k, tau, coverage, seed, compat, &plan, err)) return fail(err), NULL;
    outputs o;
    if (outputs_alloc(&o, sizes, plan.counts, k)) return NULL;
    int rc;
    Py_INCREF(arr); /* keep the pixels alive while the GIL is released */
    Py_BEGIN_ALLOW_THREADS rc = fv_run(&im, &plan, sizes, k, o.pp, o.cp, o.got, err);
    Py_END_ALLOW_THREADS Py_DECREF(arr);
    if (rc) {
        outputs_clear(&o, k);
        return fail(err), NULL;
    }
    return outputs_finish(&o, sizes, plan.counts, k, plan.tau, plan.coverage);
}

/* sample_patches_many(image, gaussians (K, 6) float64, num_tokens, sizes, tau, coverage, seeds (K,) uint64)
 * → list of per-object tuples, or a SamplerError instance for objects whose Gaussian is invalid. */
static PyObject *py_sample_patches_many(PyObject *self, PyObject *args) {
    PyObject *img_o, *g_o, *sizes_o, *seeds_o, *compat_o = NULL;
    int num_tokens, compat;
    double tau, coverage;
    if (!PyArg_ParseTuple(args, "OOiOddO|O", &img_o, &g_o, &num_tokens, &sizes_o, &tau, &coverage, &seeds_o, &compat_o))
        return NULL;
    fv_image im;
    PyArrayObject *arr;
    int sizes[FV_MAX_SIZES], k;
    if (parse_image(img_o, &im, &arr) || parse_common(sizes_o, sizes, &k, num_tokens) || parse_compat(compat_o, &compat))
        return NULL;
    PyArrayObject *G = (PyArrayObject *)PyArray_FROMANY(g_o, NPY_FLOAT64, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!G) {
        PyErr_Clear();
        return fail("gaussians must be a (K, 6) float array"), NULL;
    }
    PyArrayObject *S = (PyArrayObject *)PyArray_FROMANY(seeds_o, NPY_UINT64, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (!S) {
        PyErr_Clear();
        Py_DECREF(G);
        return fail("seeds must be a 1-D array of non-negative ints"), NULL;
    }
    npy_intp K = PyArray_DIM(G, 0);
    PyObject *result = NULL;
    fv_plan *plans = NULL;
    outputs *outs = NULL;
    char (*errs)[FV_ERRLEN] = NULL;
    int *ok = NULL;
    if (PyArray_DIM(G, 1) != 6 || PyArray_DIM(S, 0) != K) {
        fail("gaussians must be (K, 6) and seeds (K,)");
        goto done;
    }
    plans = calloc(K ? K : 1, sizeof(fv_plan));
    outs = calloc(K ? K : 1, sizeof(outputs));
    errs = calloc(K ? K : 1, FV_ERRLEN);
    ok = calloc(K ? K : 1, sizeof(int));
    if (!plans || !outs || !errs || !ok) {
        PyErr_NoMemory();
        goto done;
    }
    const double *gd = PyArray_DATA(G);
    const uint64_t *sd = PyArray_DATA(S);
    for (npy_intp j = 0; j < K; j++) {
        ok[j] = fv_prepare(&im, gd + 6 * j, num_tokens, sizes, k, tau, coverage, sd[j], compat, &plans[j], errs[j]) == 0;
        if (ok[j] && outputs_alloc(&outs[j], sizes, plans[j].counts, k)) goto done;
    }
    Py_INCREF(arr);
    Py_BEGIN_ALLOW_THREADS for (npy_intp j = 0; j < K; j++) if (ok[j]) ok[j] =
        fv_run(&im, &plans[j], sizes, k, outs[j].pp, outs[j].cp, outs[j].got, errs[j]) == 0;
    Py_END_ALLOW_THREADS Py_DECREF(arr);
    result = PyList_New(K);
    if (!result) goto done;
    for (npy_intp j = 0; j < K; j++) {
        PyObject *item;
        if (ok[j]) item = outputs_finish(&outs[j], sizes, plans[j].counts, k, plans[j].tau, plans[j].coverage);
        else item = PyObject_CallFunction(SamplerError, "s", errs[j]);
        if (!item) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, j, item);
    }
done:
    if (outs)
        for (npy_intp j = 0; j < K; j++) outputs_clear(&outs[j], k);
    free(plans);
    free(outs);
    free(errs);
    free(ok);
    Py_DECREF(G);
    Py_DECREF(S);
    return result;
}

/* ---------------------------------------------------------------- place_patches (given candidates; for tests) */
typedef struct {
    const double *c[FV_MAX_SIZES];
    npy_intp n[FV_MAX_SIZES], pos[FV_MAX_SIZES];
} array_src;

static int array_next(void *ctx, int level, double *x, double *y) {
    array_src *s = ctx;
    if (s->pos[level] >= s->n[level]) return 0;
    const double *c = s->c[level] + 2 * s->pos[level]++;
    *x = c[0];
    *y = c[1];
    return 1;
}

static PyObject *py_place_patches(PyObject *self, PyObject *args) {
    PyObject *img_o, *sizes_o, *counts_o, *cand_o;
    double tau;
    if (!PyArg_ParseTuple(args, "OOOOd", &img_o, &sizes_o, &counts_o, &cand_o, &tau)) return NULL;
    fv_image im;
    PyArrayObject *arr;
    int sizes[FV_MAX_SIZES], counts[FV_MAX_SIZES], k, kc;
    char err[FV_ERRLEN] = "";
    if (parse_image(img_o, &im, &arr) || parse_ints(sizes_o, sizes, FV_MAX_SIZES, &k, "patch_sizes") ||
        parse_ints(counts_o, counts, FV_MAX_SIZES, &kc, "counts"))
        return NULL;
    for (int i = 0; i < kc; i++)
        if (counts[i] < 0 || counts[i] > FV_MAX_TOKENS) return fail("counts out of range"), NULL;
    if (kc != k || !PySequence_Check(cand_o) || PySequence_Size(cand_o) != k)
        return fail("patch_sizes, counts and candidates must have the same length"), NULL;
    array_src src;
    PyArrayObject *keep[FV_MAX_SIZES] = {0};
    PyObject *result = NULL;
    PyArrayObject *cen[FV_MAX_SIZES] = {0};
    double *cenp[FV_MAX_SIZES];
    outputs o;
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < k; i++) {
        PyObject *it = PySequence_GetItem(cand_o, i);
        if (!it) goto done;
        keep[i] = (PyArrayObject *)PyArray_FROMANY(it, NPY_FLOAT64, 2, 2, NPY_ARRAY_IN_ARRAY);
        Py_DECREF(it);
        if (!keep[i] || PyArray_DIM(keep[i], 1) != 2) {
            PyErr_Clear();
            fail("each candidate array must be (n, 2) float");
            goto done;
        }
        src.c[i] = PyArray_DATA(keep[i]);
        src.n[i] = PyArray_DIM(keep[i], 0);
        src.pos[i] = 0;
    }
    if (outputs_alloc(&o, sizes, counts, k)) goto done;
    for (int i = 0; i < k; i++) {
        npy_intp cd[2] = {counts[i], 2};
        cen[i] = (PyArrayObject *)PyArray_ZEROS(2, cd, NPY_FLOAT64, 0);
        if (!cen[i]) goto done;
        cenp[i] = PyArray_DATA(cen[i]);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = fv_place(&im, sizes, k, counts, tau, array_next, &src, NULL, o.pp, o.cp, cenp, o.got, err);
    Py_END_ALLOW_THREADS if (rc) {
        fail(err);
        goto done;
    }
    PyObject *cl = PyList_New(k);
    if (!cl) goto done;
    for (int i = 0; i < k; i++) {
        PyObject *s = PySequence_GetSlice((PyObject *)cen[i], 0, o.got[i]);
        if (!s) {
            Py_DECREF(cl);
            goto done;
        }
        PyList_SET_ITEM(cl, i, s);
    }
    PyObject *base = outputs_finish(&o, sizes, counts, k, tau, 0.0);
    if (!base) {
        Py_DECREF(cl);
        goto done;
    }
    result = Py_BuildValue("(NN)", base, cl);
done:
    outputs_clear(&o, k);
    for (int i = 0; i < k; i++) {
        Py_XDECREF(keep[i]);
        Py_XDECREF(cen[i]);
    }
    return result;
}

/* ---------------------------------------------------------------- small entry points */
static PyObject *py_allocate_counts(PyObject *self, PyObject *args) {
    double s1, s2, c;
    int n, W = 0, H = 0, sizes[FV_MAX_SIZES], counts[FV_MAX_SIZES], k;
    PyObject *sizes_o;
    char err[FV_ERRLEN];
    if (!PyArg_ParseTuple(args, "ddiOd|ii", &s1, &s2, &n, &sizes_o, &c, &W, &H)) return NULL;
    if (parse_ints(sizes_o, sizes, FV_MAX_SIZES, &k, "patch_sizes")) return NULL;
    if (fv_allocate(s1, s2, n, sizes, k, c, W, H, counts, err)) return fail(err), NULL;
    PyObject *t = PyTuple_New(k);
    for (int i = 0; t && i < k; i++) PyTuple_SET_ITEM(t, i, PyLong_FromLong(counts[i]));
    return t;
}

static PyObject *py_sample_num_tokens(PyObject *self, PyObject *args) {
    PyObject *seed_o;
    int mn, mx;
    double mean;
    if (!PyArg_ParseTuple(args, "Oiid", &seed_o, &mn, &mx, &mean)) return NULL;
    uint64_t seed;
    if (parse_seed(seed_o, &seed)) return NULL;
    fv_rng r;
    fv_rng_seed(&r, seed);
    int out;
    char err[FV_ERRLEN];
    if (fv_num_tokens(&r, mn, mx, mean, &out, err)) return fail(err), NULL;
    return PyLong_FromLong(out);
}

static PyObject *py_augment_position(PyObject *self, PyObject *args) {
    PyObject *p_o, *seed_o;
    if (!PyArg_ParseTuple(args, "OO", &p_o, &seed_o)) return NULL;
    double in[6], out[6];
    uint64_t seed;
    char err[FV_ERRLEN];
    if (parse_doubles(p_o, in, 6, "position") || parse_seed(seed_o, &seed)) return NULL;
    fv_rng r;
    fv_rng_seed(&r, seed);
    if (fv_augment(&r, in, out, err)) return fail(err), NULL;
    return Py_BuildValue("(dddddd)", out[0], out[1], out[2], out[3], out[4], out[5]);
}

/* authors_position(rho5, width, height) → (rot6, g6): the authors' float32 rot of rho and the pixel Gaussian their
 * wrapper derives from it (one call instead of ~40 NumPy scalar ops per object; flip.sampler.authors_position) */
static PyObject *py_authors_position(PyObject *self, PyObject *args) {
    PyObject *r_o;
    int w, h;
    if (!PyArg_ParseTuple(args, "Oii", &r_o, &w, &h)) return NULL;
    double in[5];
    if (parse_doubles(r_o, in, 5, "rho")) return NULL;
    if (w < 1 || h < 1) return fail("image size must be positive"), NULL;
    float rho[5], rot[6];
    double g6[6];
    for (int i = 0; i < 5; i++) rho[i] = (float)in[i];
    fa_position_from_rho(rho, w, h, rot, g6);
    return Py_BuildValue("((dddddd)(dddddd))", (double)rot[0], (double)rot[1], (double)rot[2], (double)rot[3],
                         (double)rot[4], (double)rot[5], g6[0], g6[1], g6[2], g6[3], g6[4], g6[5]);
}

/* draw_gaussian(g6, n, seed) → (n, 2) float64 candidate centres of the sampling Gaussian (tests only) */
static PyObject *py_draw_gaussian(PyObject *self, PyObject *args) {
    PyObject *g_o, *seed_o;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OnO", &g_o, &n, &seed_o)) return NULL;
    double g6[6];
    uint64_t seed;
    char err[FV_ERRLEN];
    if (parse_doubles(g_o, g6, 6, "gaussian") || parse_seed(seed_o, &seed)) return NULL;
    if (n < 0 || n > 100000000) return fail("n out of range"), NULL;
    fv_gauss g;
    if (fv_sampling_gaussian(g6, 0, 0, &g, err)) return fail(err), NULL;
    npy_intp d[2] = {n, 2};
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(2, d, NPY_FLOAT64);
    if (!a) return NULL;
    double *p = PyArray_DATA(a);
    fv_rng r;
    fv_rng_seed(&r, seed);
    for (Py_ssize_t i = 0; i < n; i++) {
        double u = fv_normal(&r) * g.s1, v = fv_normal(&r) * g.s2;
        p[2 * i] = g.a * u - g.b * v + g.mx;
        p[2 * i + 1] = g.b * u + g.a * v + g.my;
    }
    return (PyObject *)a;
}

/* authors_rng(seed, n, kind) → float32 (n,) from the authors' stream seeded as initialize_ziggurat(seed):
 * kind 'normal' (r4_nor_value) or 'uniform' (r4_uni_value); uint32 (n,) for 'kiss' (tests only) */
static PyObject *py_authors_rng(PyObject *self, PyObject *args) {
    PyObject *seed_o;
    Py_ssize_t n;
    const char *kind;
    if (!PyArg_ParseTuple(args, "Ons", &seed_o, &n, &kind)) return NULL;
    uint64_t seed;
    if (parse_seed(seed_o, &seed)) return NULL;
    if (seed > 0xFFFFFFFFULL) return fail("seed must be in [0, 2**32)"), NULL;
    if (n < 0 || n > 100000000) return fail("n out of range [0, 1e8]"), NULL;
    int k = strcmp(kind, "normal") == 0 ? 0 : strcmp(kind, "uniform") == 0 ? 1 : strcmp(kind, "kiss") == 0 ? 2 : -1;
    if (k < 0) return fail("kind must be 'normal', 'uniform' or 'kiss'"), NULL;
    npy_intp d[1] = {n};
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(1, d, k == 2 ? NPY_UINT32 : NPY_FLOAT32);
    if (!a) return NULL;
    fa_rng r;
    fa_seed(&r, (uint32_t)seed);
    if (k == 2) {
        uint32_t *p = PyArray_DATA(a);
        for (Py_ssize_t i = 0; i < n; i++) p[i] = fa_kiss(&r);
    } else {
        float *p = PyArray_DATA(a);
        for (Py_ssize_t i = 0; i < n; i++) p[i] = k == 0 ? fa_normal(&r) : fa_uniform(&r);
    }
    return (PyObject *)a;
}

/* authors_extract(image, centres float32 (n, 2), p) → uint8 (n, p, p, 3): compat="authors" extraction (tests) */
static PyObject *py_authors_extract(PyObject *self, PyObject *args) {
    PyObject *img_o, *c_o;
    int p;
    if (!PyArg_ParseTuple(args, "OOi", &img_o, &c_o, &p)) return NULL;
    fv_image im;
    PyArrayObject *arr;
    if (parse_image(img_o, &im, &arr)) return NULL;
    if (p < 1 || p > FV_MAX_PATCH) return fail("patch size out of range [1, 1024]"), NULL;
    PyArrayObject *C = (PyArrayObject *)PyArray_FROMANY(c_o, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!C || PyArray_DIM(C, 1) != 2) {
        PyErr_Clear();
        Py_XDECREF(C);
        return fail("centres must be an (n, 2) float32 array"), NULL;
    }
    npy_intp n = PyArray_DIM(C, 0), d[4] = {n, p, p, 3};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(4, d, NPY_UINT8);
    if (!out) {
        Py_DECREF(C);
        return NULL;
    }
    const float *c = PyArray_DATA(C);
    char err[FV_ERRLEN];
    for (npy_intp i = 0; i < n; i++)
        if (fa_extract(&im, c[2 * i], c[2 * i + 1], p, (uint8_t *)PyArray_DATA(out) + (size_t)i * p * p * 3, err)) {
            Py_DECREF(C);
            Py_DECREF(out);
            return fail(err), NULL;
        }
    Py_DECREF(C);
    return (PyObject *)out;
}

static PyObject *py_sample_mask_pixels(PyObject *self, PyObject *args) {
    PyObject *m_o, *g_o, *n_o, *seed_o;
    if (!PyArg_ParseTuple(args, "OOOO", &m_o, &g_o, &n_o, &seed_o)) return NULL;
    if (!PyArray_Check(m_o)) return fail("mask must be a numpy uint8 or bool array of shape (H, W)"), NULL;
    PyArrayObject *m = (PyArrayObject *)m_o;
    if (PyArray_TYPE(m) != NPY_UINT8 && PyArray_TYPE(m) != NPY_BOOL) return fail("mask must have dtype uint8 or bool"), NULL;
    if (PyArray_NDIM(m) != 2) return fail("mask must be 2-D (H, W)"), NULL;
    if (!PyArray_IS_C_CONTIGUOUS(m)) return fail("mask must be C-contiguous (use numpy.ascontiguousarray)"), NULL;
    if (PyArray_DIM(m, 0) < 1 || PyArray_DIM(m, 1) < 1 || PyArray_DIM(m, 0) > (1 << 20) || PyArray_DIM(m, 1) > (1 << 20))
        return fail("mask has an empty or oversized side"), NULL;
    double g6[6];
    int n[FV_NUM_GROUPS], k;
    uint64_t seed;
    char err[FV_ERRLEN] = "";
    if (parse_doubles(g_o, g6, 6, "gaussian") || parse_seed(seed_o, &seed)) return NULL;
    /* the length is checked before anything is written into the 7-entry array */
    Py_ssize_t len = PySequence_Check(n_o) ? PySequence_Size(n_o) : -1;
    if (len < 0) {
        PyErr_Clear();
        return fail("group_counts must be a sequence of 7 ints"), NULL;
    }
    if (len != FV_NUM_GROUPS) {
        PyErr_Format(SamplerError, "group_counts must have exactly %d entries, got %zd", FV_NUM_GROUPS, len);
        return NULL;
    }
    if (parse_ints(n_o, n, FV_NUM_GROUPS, &k, "group_counts")) return NULL;
    if (k != FV_NUM_GROUPS) return fail("group_counts changed length while being read"), NULL;
    npy_intp M = 0;
    for (int g = 0; g < FV_NUM_GROUPS; g++) {
        if (n[g] < 0 || n[g] > FV_MAX_TOKENS) return fail("group counts must be in [0, 1000000]"), NULL;
        M += n[g];
    }
    npy_intp ld[1] = {M}, cd[2] = {M, 2};
    PyArrayObject *lab = (PyArrayObject *)PyArray_SimpleNew(1, ld, NPY_UINT8);
    PyArrayObject *crd = (PyArrayObject *)PyArray_SimpleNew(2, cd, NPY_FLOAT32);
    if (!lab || !crd) {
        Py_XDECREF(lab);
        Py_XDECREF(crd);
        return NULL;
    }
    int rc;
    int W = (int)PyArray_DIM(m, 1), H = (int)PyArray_DIM(m, 0);
    const uint8_t *md = PyArray_DATA(m);
    uint8_t *lp = PyArray_DATA(lab);
    float *cp = PyArray_DATA(crd);
    Py_INCREF(m);
    Py_BEGIN_ALLOW_THREADS fv_rng r;
    fv_rng_seed(&r, seed);
    rc = fv_mask_sample(md, W, H, g6, n, &r, lp, cp, err);
    Py_END_ALLOW_THREADS Py_DECREF(m);
    if (rc) {
        Py_DECREF(lab);
        Py_DECREF(crd);
        return fail(err), NULL;
    }
    return Py_BuildValue("(NN)", lab, crd);
}

/* boundary_distance(crop uint8 (h, w)) → int32 (h, w); -1 where the crop has no boundary (tests only) */
static PyObject *py_boundary_distance(PyObject *self, PyObject *args) {
    PyObject *m_o;
    if (!PyArg_ParseTuple(args, "O", &m_o)) return NULL;
    PyArrayObject *m = (PyArrayObject *)PyArray_FROMANY(m_o, NPY_UINT8, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!m) {
        PyErr_Clear();
        return fail("crop must be a 2-D uint8 array"), NULL;
    }
    npy_intp h = PyArray_DIM(m, 0), w = PyArray_DIM(m, 1);
    if (h > (1 << 20) || w > (1 << 20) || (double)h * w > 2e9) {
        Py_DECREF(m);
        return fail("crop too large (sides <= 2**20, <= 2e9 pixels)"), NULL;
    }
    npy_intp d[2] = {h, w};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, d, NPY_INT32);
    if (!out) {
        Py_DECREF(m);
        return NULL;
    }
    int32_t *o = PyArray_DATA(out);
    if (h > 0 && w > 0) fv_boundary_distance(PyArray_DATA(m), (int)w, (int)h, w, o);
    for (npy_intp i = 0; i < h * w; i++)
        if (o[i] >= INT32_MAX / 2) o[i] = -1;
    Py_DECREF(m);
    return (PyObject *)out;
}

static PyMethodDef methods[] = {
    {"sample_patches", py_sample_patches, METH_VARARGS,
     "sample_patches(image, g6, num_tokens, sizes, tau, coverage, seed, compat) -> (counts, patches, coords, tau, coverage);"
     " compat is 'exact' or 'authors' and must be given"},
    {"sample_patches_many", py_sample_patches_many, METH_VARARGS,
     "sample_patches_many(image, gaussians (K,6), num_tokens, sizes, tau, coverage, seeds (K,), compat) -> list"},
    {"place_patches", py_place_patches, METH_VARARGS,
     "place_patches(image, sizes, counts, candidates, tau) -> ((counts, patches, coords, tau, 0), centres)"},
    {"allocate_counts", py_allocate_counts, METH_VARARGS,
     "allocate_counts(s1w, s2w, num_tokens, sizes, coverage[, W, H]) -> counts (widened stds)"},
    {"sample_num_tokens", py_sample_num_tokens, METH_VARARGS, "sample_num_tokens(seed, min, max, mean) -> int"},
    {"augment_position", py_augment_position, METH_VARARGS, "augment_position(rot6_norm, seed) -> rot6"},
    {"authors_position", py_authors_position, METH_VARARGS,
     "authors_position(rho5, width, height) -> (rot6, g6): the authors' float32 rot of rho and their pixel Gaussian"},
    {"draw_gaussian", py_draw_gaussian, METH_VARARGS, "draw_gaussian(g6, n, seed) -> (n, 2) candidate centres"},
    {"sample_mask_pixels", py_sample_mask_pixels, METH_VARARGS,
     "sample_mask_pixels(mask, g6, group_counts, seed) -> (labels, coords)"},
    {"authors_extract", py_authors_extract, METH_VARARGS, "authors_extract(image, centres (n,2) float32, p) -> patches (tests)"},
    {"authors_rng", py_authors_rng, METH_VARARGS, "authors_rng(seed, n, kind) -> the authors' KISS/ziggurat stream (tests)"},
    {"boundary_distance", py_boundary_distance, METH_VARARGS, "boundary_distance(crop) -> int32 distance map"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "flip._fovea", "FLIP fovea sampler (C).", -1, methods};

PyMODINIT_FUNC PyInit__fovea(void) {
    import_array();
    fa_init_tables(); /* constant once built: read-only afterwards, safe with the GIL released */
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    SamplerError = PyErr_NewException("flip._fovea.SamplerError", PyExc_ValueError, NULL);
    if (!SamplerError || PyModule_AddObject(m, "SamplerError", SamplerError) < 0) {
        Py_XDECREF(SamplerError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(SamplerError);
    PyModule_AddIntConstant(m, "MAX_TOKENS", FV_MAX_TOKENS);
    PyModule_AddIntConstant(m, "MAX_PATCH", FV_MAX_PATCH);
    PyModule_AddObject(m, "FAR_SIGMAS", PyFloat_FromDouble(FV_FAR_SIGMAS));
    return m;
}
