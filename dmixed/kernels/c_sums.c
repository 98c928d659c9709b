/*
 * The per-group sums of dmixed.kernels.dense2 (two random-effect coordinates) and of
 * dmixed.kernels.dense1 (one) in one loop over the groups per call, the per-group term sums of
 * dmixed.kernels.rows.plain_statistics in one pass over the rows, the check of
 * dmixed.kernels.rows.constant_within (one pass that stops at the first row differing
 * from its group's first), and the small-matrix
 * arithmetic of dmixed.fit.lean's Newton steps for r = 2 (lean_evaluate: an evaluation
 * on those sums; profiled_hessian: the profiled Hessian from the Hessian moments;
 * block_terms: a step's chain rule), and the Hessian moments with the BLUPs at r = 2
 * of dmixed.kernels.compiled.hessian_random_effects (moments_r2: each group's values with
 * the operations of dmixed.kernels.jit, the same bits), the numpy formulas there being
 * the reference: the
 * same operations on each number, the small products in their own order (BLAS's differs:
 * they agree to rounding).
 *
 * The arrays are those of the numpy reference (dmixed/kernels/dense2.py), entry-major:
 * an entry's values over the G groups of a chunk lie together (C order, float64).  They
 * come through the buffer protocol, with their sizes as integers; each function checks
 * that every buffer is C-contiguous float64 of the size the integers give (the rows'
 * columns of term_sums and constant_within: 1-d float64 of any stride), and fills the output buffers the
 * caller made.  No numpy C API: the module builds against the Python headers alone, and
 * dmixed.kernels.native says whether it loaded.
 *
 * Each group's values are made with the reference's operations on each entry, with no
 * contraction to fused multiply-adds (setup.py compiles with -ffp-contract=off); the
 * sums over groups are added in another order than BLAS adds them, so they agree with
 * the reference to rounding.  term_sums adds each group's terms in row order, as
 * np.bincount does: the same sums bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* A C-contiguous buffer of any length, float64 (int64 where int64 is set), writable where
   asked; or a TypeError naming it, the buffer let go. */
static int
take_any(PyObject *obj, Py_buffer *view, int writable, int int64, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        return -1;
    }
    const char *fmt = view->format;
    if (fmt != NULL && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) {
        fmt++;
    }
    int ok = view->itemsize == 8 && fmt != NULL &&
             (int64 ? (strcmp(fmt, "q") == 0 || strcmp(fmt, "l") == 0) : strcmp(fmt, "d") == 0);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: a%s buffer is needed, got format %s", name,
                     int64 ? "n int64" : " float64", view->format == NULL ? "B" : view->format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* A float64 C-contiguous buffer of exactly n numbers, or an exception naming it. */
static int
take(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n, const char *name)
{
    if (take_any(obj, view, writable, 0, name) != 0) {
        return -1;
    }
    if (view->len != n * 8) {
        PyErr_Format(PyExc_ValueError, "%s: %zd numbers needed, got %zd", name, n,
                     view->len / 8);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void
release(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++) {
        PyBuffer_Release(&views[i]);
    }
}

/* k in [1, 64] and g >= 0, and the bytes of the largest buffer of g groups (the
   2 k + 3 rows of dense2_residual) within Py_ssize_t: take()'s n * 8 of a size that
   wrapped would let an empty buffer pass for one of 2^62 groups. */
static int
check_sizes(Py_ssize_t k, Py_ssize_t g)
{
    if (k < 1 || g < 0 || k > 64) {
        PyErr_Format(PyExc_ValueError, "k must be in [1, 64] and g >= 0, got k=%zd, g=%zd",
                     k, g);
        return -1;
    }
    if (g > PY_SSIZE_T_MAX / (8 * (2 * k + 3))) {
        PyErr_Format(PyExc_ValueError, "g: %zd groups of k=%zd is more than a buffer can hold",
                     g, k);
        return -1;
    }
    return 0;
}

/* The sums over groups run in LANES partial sums a result (two vectors of four), each
   the sum of every LANES-th term, folded pairwise at the end with the terms past the
   last whole vector's; each lane's order is fixed, and several results a pass keep
   enough independent additions in flight to hide their latency.  The order differs
   from BLAS's: the sums agree with numpy's to rounding.  The vectors are GCC's and
   clang's vector extensions (a compiler without them does not build the extension,
   and dmixed runs its numpy kernels). */
#if !defined(__GNUC__)
#error "the vector extensions of GCC or clang are needed"
#endif
typedef double vec __attribute__((vector_size(32)));
#define LANES 8
/* results of one pass of dots4 (a row against up to this many) */
#define WIDTH 4

/* Where the compiler and loader can pick a function's version at load time (GNU ifunc),
   the sums also come in an AVX2 version (a vector an instruction against SSE2's two;
   no fused multiply-add, as -ffp-contract=off asks), chosen on CPUs that have it. */
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx2", "default")))
#else
#define WIDE
#endif

/* four numbers from p, aligned or not (a macro: a function returning a vector would
   have an ABI of its own without AVX) */
#define load(p)                                                                          \
    __extension__({                                                                      \
        vec v_;                                                                          \
        memcpy(&v_, (p), sizeof v_);                                                     \
        v_;                                                                              \
    })

/* The sum of a result's two vectors of lanes and its tail (the terms past them). */
static inline __attribute__((always_inline)) double
fold(vec lo, vec hi, double tail)
{
    vec both = lo + hi;
    return ((both[0] + both[2]) + (both[1] + both[3])) + tail;
}

/* out[j] = Σ_i (a_i s_i) b_j,i for j < WIDTH (s NULL: Σ_i a_i b_j,i), the product a_i s_i
   made first (as numpy's rows v S are). */
WIDE static void
dots4(const double *a, const double *s, const double *const *b, Py_ssize_t n, double *out)
{
    vec lo[WIDTH], hi[WIDTH];
    double tail[WIDTH];
    for (int j = 0; j < WIDTH; j++) {
        lo[j] = (vec){0.0, 0.0, 0.0, 0.0};
        hi[j] = lo[j];
        tail[j] = 0.0;
    }
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        vec w0 = load(a + i), w1 = load(a + i + 4);
        if (s != NULL) {
            w0 *= load(s + i);
            w1 *= load(s + i + 4);
        }
        for (int j = 0; j < WIDTH; j++) {
            lo[j] += w0 * load(b[j] + i);
            hi[j] += w1 * load(b[j] + i + 4);
        }
    }
    for (; i < n; i++) {
        double w = s == NULL ? a[i] : a[i] * s[i];
        for (int j = 0; j < WIDTH; j++) {
            tail[j] += w * b[j][i];
        }
    }
    for (int j = 0; j < WIDTH; j++) {
        out[j] = fold(lo[j], hi[j], tail[j]);
    }
}

/* The products of the rows 0..n_rows-1 of rows (each g numbers, ld apart), weighted
   by s (NULL: none): into out (n_rows × n_rows, ldo a row) out[a][b] = Σ_i rows_a,i s_i
   rows_b,i for b ≤ a, mirrored. */
static void
row_products(const double *rows, Py_ssize_t n_rows, Py_ssize_t ld, const double *s,
             Py_ssize_t g, double *out, Py_ssize_t ldo)
{
    for (Py_ssize_t a = 0; a < n_rows; a++) {
        for (Py_ssize_t b = 0; b <= a; b += WIDTH) {
            const double *bs[WIDTH];
            double sums[WIDTH];
            for (int j = 0; j < WIDTH; j++) {
                /* past a: row a again, its sum not kept */
                bs[j] = rows + (b + j <= a ? b + j : a) * ld;
            }
            dots4(rows + a * ld, s, bs, g, sums);
            for (Py_ssize_t j = 0; j < WIDTH && b + j <= a; j++) {
                out[a * ldo + b + j] = sums[j];
                out[(b + j) * ldo + a] = sums[j];
            }
        }
    }
}

/* Σ_i r_i [T0, T1, T2, T3]_i of the pair (x, y): T0 = F0x F0y, T1 = F0x F1y + F1x F0y,
   T2 = F1x F1y and T3 = u11 T0 - u01 T1 + u00 T2 (F'adj(U)F), made per group as
   _Dense2Chunk makes them, into out[0..3]. */
WIDE static void
t_sums(const double *f0x, const double *f0y, const double *f1x, const double *f1y,
       const double *u00, const double *u01, const double *u11, const double *r, Py_ssize_t n,
       double *out)
{
    vec acc[4][2];
    double tail[4] = {0.0, 0.0, 0.0, 0.0};
    for (int j = 0; j < 4; j++) {
        acc[j][0] = (vec){0.0, 0.0, 0.0, 0.0};
        acc[j][1] = acc[j][0];
    }
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int h = 0; h < 2; h++) {
            Py_ssize_t at = i + 4 * h;
            vec a0 = load(f0x + at), b0 = load(f0y + at), a1 = load(f1x + at);
            vec b1 = load(f1y + at), rr = load(r + at);
            vec t0 = a0 * b0, t1 = a0 * b1 + a1 * b0, t2 = a1 * b1;
            vec t3 = load(u11 + at) * t0 - load(u01 + at) * t1 + load(u00 + at) * t2;
            acc[0][h] += t0 * rr;
            acc[1][h] += t1 * rr;
            acc[2][h] += t2 * rr;
            acc[3][h] += t3 * rr;
        }
    }
    for (; i < n; i++) {
        double t0 = f0x[i] * f0y[i];
        double t1 = f0x[i] * f1y[i] + f1x[i] * f0y[i];
        double t2 = f1x[i] * f1y[i];
        double t3 = u11[i] * t0 - u01[i] * t1 + u00[i] * t2;
        tail[0] += t0 * r[i];
        tail[1] += t1 * r[i];
        tail[2] += t2 * r[i];
        tail[3] += t3 * r[i];
    }
    for (int j = 0; j < 4; j++) {
        out[j] = fold(acc[j][0], acc[j][1], tail[j]);
    }
}

/* The buffers of a call: obj[i] taken as names[i] of sizes[i] numbers (writable where
   writes[i]); on failure those taken are released and -1 returned. */
static int
take_all(PyObject **obj, Py_buffer *views, int n, const char **names, const Py_ssize_t *sizes,
         const int *writes)
{
    for (int i = 0; i < n; i++) {
        if (take(obj[i], &views[i], writes[i], sizes[i], names[i]) != 0) {
            release(views, i);
            return -1;
        }
    }
    return 0;
}

/* det(U) of each group as _Dense2Chunk makes it: u00 u11 - u01 u01, clipped at 0 (as
   np.maximum(det, 0): a nan stays). */
static inline double
det_u(double u00, double u01, double u11)
{
    double det = u00 * u11 - u01 * u01;
    return det < 0.0 ? 0.0 : det;
}

/* dense2_first's sums (its docstring) of the g groups of zz and zxy at d's coefficients
   c into inv_d and sums; returns the sum of log d_i. */
static double
first_pass(const double *zz, const double *zxy, Py_ssize_t k, Py_ssize_t g, const double *c,
           double *inv_d, double *sums)
{
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    const double *f0 = zxy, *f1 = zxy + k * g;
    double logdet = 0.0;
    Py_ssize_t t = k * (k + 1) / 2;
    /* Σ log d_i as the log of their product, its binary exponent taken apart whenever
       it leaves [2^-500, 2^500] (each d_i ≥ 1 in exact arithmetic: K_i's eigenvalues
       are ≥ 1): one log where there were g, to rounding the same sum (g roundings of
       a product, each ε of it, against g of the logs); a d_i out of [2^-400, 2^400]
       (nan, 0, inf among them) takes its own log */
    double product = 1.0, acc[5][LANES] = {{0.0}};
    long exponent = 0;
    for (Py_ssize_t i = 0; i < g; i++) {
        double det = det_u(u00[i], u01[i], u11[i]);
        double d = c[0] + c[1] * u00[i] + c[2] * u01[i] + c[3] * u11[i] + c[4] * det;
        double r = 1.0 / d;
        inv_d[i] = r;
        if (d >= 0x1p-400 && d <= 0x1p400) {
            product *= d;
            if (product > 0x1p500 || product < 0x1p-500) {
                int e;
                product = frexp(product, &e);
                exponent += e;
            }
        }
        else {
            logdet += log(d);
        }
        int j = (int)(i % LANES);
        acc[0][j] += r;
        acc[1][j] += u00[i] * r;
        acc[2][j] += u01[i] * r;
        acc[3][j] += u11[i] * r;
        acc[4][j] += det * r;
    }
    logdet += log(product) + (double)exponent * 0.69314718055994530942;
    for (int j = 0; j < 5; j++) {
        /* the lanes pairwise, as fold adds a vector's */
        double *l = acc[j];
        sums[j] = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t x = 0; x < k; x++) {
        for (Py_ssize_t y = x; y < k; y++, at++) {
            double four[4];
            t_sums(f0 + x * g, f0 + y * g, f1 + x * g, f1 + y * g, u00, u01, u11, inv_d, g, four);
            for (int j = 0; j < 4; j++) {
                sums[5 + j * t + at] = four[j];
            }
        }
    }
    return logdet;
}

PyDoc_STRVAR(dense2_first_doc,
"dense2_first(zz, zxy, k, g, c0, c1, c2, c3, c4, inv_d, sums) -> float\n\n"
"For zz (2, 2, g) and zxy (2, k, g): d_i = c0 + c1 u00 + c2 u01 + c3 u11 + c4 det(U)\n"
"into inv_d (g) as 1/d_i, and into sums (5 + 2 k (k + 1)) the sums over the groups of\n"
"the fixed rows [1, u00, u01, u11, det(U)] and the upper triangles of T0..T3 of\n"
"dmixed.kernels.dense2 (made per group as _Dense2Chunk makes them) over d_i; returns\n"
"the sum of log d_i.");

static PyObject *
dense2_first(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t k, g;
    double c[5];
    if (!PyArg_ParseTuple(args, "OOnndddddOO", &o[0], &o[1], &k, &g, &c[0], &c[1], &c[2],
                          &c[3], &c[4], &o[2], &o[3])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t t = k * (k + 1) / 2;
    Py_buffer v[4];
    const char *names[4] = {"zz", "zxy", "inv_d", "sums"};
    Py_ssize_t sizes[4] = {4 * g, 2 * k * g, g, 5 + 4 * t};
    int writes[4] = {0, 0, 1, 1};
    if (take_all(o, v, 4, names, sizes, writes) != 0) {
        return NULL;
    }
    const double *zz = v[0].buf, *zxy = v[1].buf;
    double *inv_d = v[2].buf, *sums = v[3].buf;
    double logdet;
    Py_BEGIN_ALLOW_THREADS
    logdet = first_pass(zz, zxy, k, g, c, inv_d, sums);
    Py_END_ALLOW_THREADS
    release(v, 4);
    return PyFloat_FromDouble(logdet);
}

/* The rows H[a, x] = (F + adj(B) adj(U) F)[a, x] / d of the groups lo..hi-1 into out's
   columns 0..hi-lo-1 (rows a k + x, stride ld), as _Dense2Chunk.residual_rows makes them:
   adj(U)F = [u11 F0 - u01 F1; u00 F1 - u01 F0], then F + [b11, -b01; -b01, b00] adj(U)F. */
static void
h_rows(const double *zz, const double *zxy, const double *inv_d, Py_ssize_t k, Py_ssize_t g,
       double b00, double b01, double b11, Py_ssize_t lo, Py_ssize_t hi, double *out,
       Py_ssize_t ld)
{
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    for (Py_ssize_t x = 0; x < k; x++) {
        const double *a0 = zxy + x * g, *a1 = zxy + (k + x) * g;
        double *h0 = out + x * ld - lo, *h1 = out + (k + x) * ld - lo;
        for (Py_ssize_t i = lo; i < hi; i++) {
            double a2 = u11[i] * a0[i] - u01[i] * a1[i];
            double a3 = u00[i] * a1[i] - u01[i] * a0[i];
            h0[i] = (a0[i] + b11 * a2 - b01 * a3) * inv_d[i];
            h1[i] = (a1[i] - b01 * a2 + b00 * a3) * inv_d[i];
        }
    }
}

/* dense2_residual's rows and their products (its docstring) of the g groups at B's
   entries and w into out and va. */
static void
residual_pass(const double *zz, const double *zxy, const double *inv_d, Py_ssize_t k,
              Py_ssize_t g, double b00, double b01, double b11, const double *w, double *out,
              double *va)
{
    Py_ssize_t n = 2 * k + 3;
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    double *s00 = out + 2 * k * g, *s01 = s00 + g, *s11 = s01 + g;
    for (Py_ssize_t i = 0; i < g; i++) {
        double det = det_u(u00[i], u01[i], u11[i]);
        s00[i] = (u00[i] + b11 * det) * inv_d[i];
        s01[i] = (u01[i] - b01 * det) * inv_d[i];
        s11[i] = (u11[i] + b00 * det) * inv_d[i];
    }
    h_rows(zz, zxy, inv_d, k, g, b00, b01, b11, 0, g, out, g);
    /* u_a = sum_x w_x H[a, x] in place of y's column (whose w is 1) */
    double *u0 = out + (k - 1) * g, *u1 = out + (2 * k - 1) * g;
    for (Py_ssize_t i = 0; i < g; i++) {
        double p0 = 0.0, p1 = 0.0;
        for (Py_ssize_t x = 0; x < k; x++) {
            p0 += w[x] * out[x * g + i];
            p1 += w[x] * out[(k + x) * g + i];
        }
        u0[i] = p0;
        u1[i] = p1;
    }
    row_products(out, n, g, NULL, g, va, n);
}

PyDoc_STRVAR(dense2_residual_doc,
"dense2_residual(zz, zxy, inv_d, k, g, b00, b01, b11, w, out, va)\n\n"
"The rows [v; S pairs] (2 k + 3, g) of Dense2Step.rows into out, at B's entries and\n"
"w = [-beta; 1] (k): H = (F + adj(B) adj(U) F)/d, S's pairs (U + det(U) adj(B))/d,\n"
"u = H w in place of y's column; and into va (2 k + 3, 2 k + 3) the products of out's\n"
"rows.");

static PyObject *
dense2_residual(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t k, g;
    double b00, b01, b11;
    if (!PyArg_ParseTuple(args, "OOOnndddOOO", &o[0], &o[1], &o[2], &k, &g, &b00, &b01, &b11,
                          &o[3], &o[4], &o[5])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t n = 2 * k + 3;
    Py_buffer v[6];
    const char *names[6] = {"zz", "zxy", "inv_d", "w", "out", "va"};
    Py_ssize_t sizes[6] = {4 * g, 2 * k * g, g, k, n * g, n * n};
    int writes[6] = {0, 0, 0, 0, 1, 1};
    if (take_all(o, v, 6, names, sizes, writes) != 0) {
        return NULL;
    }
    const double *zz = v[0].buf, *zxy = v[1].buf, *inv_d = v[2].buf, *w = v[3].buf;
    double *out = v[4].buf, *va = v[5].buf;
    Py_BEGIN_ALLOW_THREADS
    residual_pass(zz, zxy, inv_d, k, g, b00, b01, b11, w, out, va);
    Py_END_ALLOW_THREADS
    release(v, 6);
    Py_RETURN_NONE;
}

/* groups a block of the Gram of H's rows takes at a time (its rows stay in cache) */
#define BLOCK 256

PyDoc_STRVAR(dense2_gram_doc,
"dense2_gram(zz, zxy, inv_d, k, g, b00, b01, b11, gram)\n\n"
"Into gram (2 k, 2 k) the products over the groups of the rows H[a, x] (at a k + x)\n"
"of dense2_residual (y's own column, not u): Dense2Step.gram.");

static PyObject *
dense2_gram(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t k, g;
    double b00, b01, b11;
    if (!PyArg_ParseTuple(args, "OOOnndddO", &o[0], &o[1], &o[2], &k, &g, &b00, &b01, &b11,
                          &o[3])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t n = 2 * k;
    Py_buffer v[4];
    const char *names[4] = {"zz", "zxy", "inv_d", "gram"};
    Py_ssize_t sizes[4] = {4 * g, 2 * k * g, g, n * n};
    int writes[4] = {0, 0, 0, 1};
    if (take_all(o, v, 4, names, sizes, writes) != 0) {
        return NULL;
    }
    double *block = PyMem_Malloc(sizeof(double) * (n * BLOCK + n * n));
    if (block == NULL) {
        release(v, 4);
        return PyErr_NoMemory();
    }
    const double *zz = v[0].buf, *zxy = v[1].buf, *inv_d = v[2].buf;
    double *gram = v[3].buf, *part = block + n * BLOCK;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < n * n; j++) {
        gram[j] = 0.0;
    }
    for (Py_ssize_t lo = 0; lo < g; lo += BLOCK) {
        Py_ssize_t hi = lo + BLOCK < g ? lo + BLOCK : g;
        h_rows(zz, zxy, inv_d, k, g, b00, b01, b11, lo, hi, block, BLOCK);
        row_products(block, n, BLOCK, NULL, hi - lo, part, n);
        for (Py_ssize_t j = 0; j < n * n; j++) {
            gram[j] += part[j];
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(block);
    release(v, 4);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dense2_moment_c_doc,
"dense2_moment_c(rows, k, g, c)\n\n"
"The Hessian moments' C (3 * 2k, 2k) of the rows [v; S pairs] (2 k + 3, g):\n"
"c[3 ax + bc, dy] = sum_i v_ax,i S_bc,i v_dy,i.");

static PyObject *
dense2_moment_c(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    Py_ssize_t k, g;
    if (!PyArg_ParseTuple(args, "OnnO", &o[0], &k, &g, &o[1])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t rk = 2 * k;
    Py_buffer v[2];
    if (take(o[0], &v[0], 0, (rk + 3) * g, "rows") != 0) {
        return NULL;
    }
    if (take(o[1], &v[1], 1, 3 * rk * rk, "c") != 0) {
        release(v, 1);
        return NULL;
    }
    const double *rows = v[0].buf;
    double *c = v[1].buf;
    Py_BEGIN_ALLOW_THREADS
    /* c[3 ax + bc, dy] for one bc: the rows v weighted by S_bc, in c's rows 3 ax + bc */
    for (Py_ssize_t bc = 0; bc < 3; bc++) {
        row_products(rows, rk, g, rows + (rk + bc) * g, g, c + bc * rk, 3 * rk);
    }
    Py_END_ALLOW_THREADS
    release(v, 2);
    Py_RETURN_NONE;
}

/* the most terms term_sums sums in one pass (their running sums stay on the stack) */
#define MAX_TERMS 64

/* terms summed in one pass over the rows, their running sums in registers */
#define PASS 8

/* One pass of term_sums over the rows for the terms at[0..PASS-1]: each group's running
   sums held while its rows follow one another, read from and written back to the table
   around each run, so that every entry is 0 + its rows' values in row order, as
   np.bincount adds them.  Returns 1 on a code outside [0, n_groups), else 0. */
static int
pass_terms(const int64_t *codes, Py_ssize_t n, Py_ssize_t n_groups, const char **xb,
           const Py_ssize_t *xs, const char **yb, const Py_ssize_t *ys, const Py_ssize_t *at,
           double *table)
{
    const char *x[PASS], *y[PASS];
    Py_ssize_t sx[PASS], sy[PASS];
    double *row[PASS];
    double acc[PASS];
    for (int j = 0; j < PASS; j++) {
        x[j] = xb[at[j]];
        y[j] = yb[at[j]];
        sx[j] = xs[at[j]];
        sy[j] = ys[at[j]];
        row[j] = table + at[j] * n_groups;
        acc[j] = 0.0;
    }
    /* the first row's group taken before the loop: a running code of -1 would let
       leading rows of code -1 pass unchecked (and unsummed) */
    int64_t cur = -1;
    if (n > 0) {
        cur = codes[0];
        if (cur < 0 || cur >= n_groups) {
            return 1;
        }
        for (int j = 0; j < PASS; j++) {
            acc[j] = row[j][cur];
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t g = codes[i];
        if (g != cur) {
            if (g < 0 || g >= n_groups) {
                return 1;
            }
            for (int j = 0; j < PASS; j++) {
                row[j][cur] = acc[j];
            }
            for (int j = 0; j < PASS; j++) {
                acc[j] = row[j][g];
            }
            cur = g;
        }
        for (int j = 0; j < PASS; j++) {
            acc[j] += *(const double *)(x[j] + i * sx[j]) * *(const double *)(y[j] + i * sy[j]);
        }
    }
    if (cur >= 0) {
        for (int j = 0; j < PASS; j++) {
            row[j][cur] = acc[j];
        }
    }
    return 0;
}

/* ``obj`` as a C-contiguous int64 buffer of group codes (format q or l): 0, or -1 with
   an exception set (``view->obj`` NULL where nothing was taken, else the view to
   release) */
static int
take_codes(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        view->obj = NULL;
        return -1;
    }
    const char *f = view->format;
    if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) {
        f++;
    }
    if (view->itemsize != 8 || f == NULL || (strcmp(f, "q") != 0 && strcmp(f, "l") != 0)) {
        PyErr_SetString(PyExc_TypeError, "codes: an int64 buffer is needed");
        return -1;
    }
    return 0;
}

/* The buffers of the first ``n_cols`` items of the fast sequence ``columns`` into
   ``cols``, each a 1-d float64 buffer of ``n`` numbers (any stride): 0, or -1 with an
   exception set; ``*taken`` counts the buffers taken, which the caller releases (the
   one refused among them) */
static int
take_columns(PyObject *columns, Py_buffer *cols, Py_ssize_t n_cols, Py_ssize_t n,
             Py_ssize_t *taken)
{
    for (; *taken < n_cols; (*taken)++) {
        Py_buffer *c = &cols[*taken];
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(columns, *taken), c,
                               PyBUF_STRIDES | PyBUF_FORMAT) != 0) {
            return -1;
        }
        const char *f = c->format;
        if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) {
            f++;
        }
        if (c->ndim != 1 || c->shape[0] != n || c->itemsize != 8 || f == NULL ||
            strcmp(f, "d") != 0) {
            PyErr_Format(PyExc_ValueError,
                         "columns[%zd]: a 1-d float64 buffer of %zd numbers is needed", *taken,
                         n);
            (*taken)++;
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(term_sums_doc,
"term_sums(codes, columns, terms, n_groups, table)\n\n"
"The per-group sums of plain_statistics' terms in one pass over the rows: codes (n,)\n"
"int64 in [0, n_groups), columns a sequence of (n,) float64 buffers (any stride),\n"
"terms a sequence of (u, v) column positions (v = -1: column u itself; else the\n"
"product col_u * col_v); table (len(terms), n_groups) float64 is filled with\n"
"table[t, g] = sum over the rows of group g of term t, added in row order (each\n"
"entry the same sum as np.bincount's, bit for bit).");

static PyObject *
term_sums(PyObject *self, PyObject *args)
{
    PyObject *codes_obj, *columns_obj, *terms_obj, *table_obj;
    Py_ssize_t n_groups;
    if (!PyArg_ParseTuple(args, "OOOnO", &codes_obj, &columns_obj, &terms_obj, &n_groups,
                          &table_obj)) {
        return NULL;
    }
    PyObject *columns = PySequence_Fast(columns_obj, "columns: a sequence is needed");
    if (columns == NULL) {
        return NULL;
    }
    PyObject *terms = PySequence_Fast(terms_obj, "terms: a sequence is needed");
    if (terms == NULL) {
        Py_DECREF(columns);
        return NULL;
    }
    Py_ssize_t n_cols = PySequence_Fast_GET_SIZE(columns);
    Py_ssize_t n_terms = PySequence_Fast_GET_SIZE(terms);
    Py_buffer codes_view, table_view;
    Py_buffer *cols = NULL;
    Py_ssize_t taken = 0, n = 0;
    int ok = 0;
    int u[MAX_TERMS], v[MAX_TERMS];
    codes_view.obj = NULL;
    table_view.obj = NULL;
    if (n_terms > MAX_TERMS || n_groups < 0) {
        PyErr_Format(PyExc_ValueError, "terms: at most %d, and n_groups >= 0", MAX_TERMS);
        goto done;
    }
    /* the table's bytes within Py_ssize_t (a size that wrapped would pass take()) */
    if (n_groups > PY_SSIZE_T_MAX / (8 * MAX_TERMS)) {
        PyErr_Format(PyExc_ValueError, "n_groups: %zd is more than a buffer can hold",
                     n_groups);
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_terms; t++) {
        /* "(ii)": any sequence of two (a list too: "ii" of PyArg_ParseTuple raised
           SystemError on anything but a tuple) */
        if (!PyArg_Parse(PySequence_Fast_GET_ITEM(terms, t),
                         "(ii);terms: pairs (u, v) of column positions are needed", &u[t],
                         &v[t])) {
            goto done;
        }
        if (u[t] < 0 || u[t] >= n_cols || v[t] < -1 || v[t] >= n_cols) {
            PyErr_Format(PyExc_ValueError, "terms[%zd]: a column position out of range", t);
            goto done;
        }
    }
    if (take_codes(codes_obj, &codes_view) != 0) {
        goto done;
    }
    n = codes_view.len / 8;
    if (take(table_obj, &table_view, 1, n_terms * n_groups, "table") != 0) {
        table_view.obj = NULL;
        goto done;
    }
    cols = PyMem_Calloc(n_cols > 0 ? n_cols : 1, sizeof(Py_buffer));
    if (cols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (take_columns(columns, cols, n_cols, n, &taken) != 0) {
        goto done;
    }
    {
        const int64_t *codes = codes_view.buf;
        double *table = table_view.buf;
        const char *xb[MAX_TERMS], *yb[MAX_TERMS];
        Py_ssize_t xs[MAX_TERMS], ys[MAX_TERMS];
        static const double one = 1.0;
        for (Py_ssize_t t = 0; t < n_terms; t++) {
            xb[t] = cols[u[t]].buf;
            xs[t] = cols[u[t]].strides[0];
            /* a column alone: its product with ones (exact: the same sums) */
            yb[t] = v[t] < 0 ? (const char *)&one : cols[v[t]].buf;
            ys[t] = v[t] < 0 ? 0 : cols[v[t]].strides[0];
        }
        int bad = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t j = 0; j < n_terms * n_groups; j++) {
            table[j] = 0.0;
        }
        for (Py_ssize_t t0 = 0; t0 < n_terms && !bad; t0 += PASS) {
            /* PASS terms a pass, the last one repeated where fewer are left (it then
               writes the same sums twice) */
            Py_ssize_t at[PASS];
            for (int j = 0; j < PASS; j++) {
                at[j] = t0 + j < n_terms ? t0 + j : n_terms - 1;
            }
            bad = pass_terms(codes, n, n_groups, xb, xs, yb, ys, at, table);
        }
        Py_END_ALLOW_THREADS
        if (bad) {
            PyErr_Format(PyExc_ValueError, "codes: a code outside [0, %zd)", n_groups);
            goto done;
        }
    }
    ok = 1;
done:
    for (Py_ssize_t j = 0; j < taken && cols != NULL; j++) {
        if (cols[j].obj != NULL) {
            PyBuffer_Release(&cols[j]);
        }
    }
    PyMem_Free(cols);
    if (table_view.obj != NULL) {
        PyBuffer_Release(&table_view);
    }
    if (codes_view.obj != NULL) {
        PyBuffer_Release(&codes_view);
    }
    Py_DECREF(columns);
    Py_DECREF(terms);
    if (!ok) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The most columns constant_within checks in one pass (their values of a group's first
   row held side by side in one row of the scratch table). */
#define MAX_CONSTANT_COLUMNS 64
/* constant_within's first rows (dmixed.kernels.rows.CONSTANT_CHECK_FIRST) */
#define CONSTANT_FIRST 256

PyDoc_STRVAR(constant_within_doc,
"constant_within(codes, columns, n_groups) -> bool\n\n"
"Whether every column is constant within each group: codes (n,) int64 in\n"
"[0, n_groups), columns a sequence of at most 64 (n,) float64 buffers (any stride).\n"
"Each row's value is compared (==) with its group's value at one of its rows, over\n"
"the first 256 rows, then 16 times as many, and so on (all of them once that would\n"
"be more than half): False at the first of these prefixes where a row differs or a\n"
"value is NaN (no NaN equals anything), else True (also for no rows).  A ValueError\n"
"for a code outside [0, n_groups) in a prefix checked.");

static PyObject *
constant_within(PyObject *self, PyObject *args)
{
    PyObject *codes_obj, *columns_obj;
    Py_ssize_t n_groups;
    if (!PyArg_ParseTuple(args, "OOn", &codes_obj, &columns_obj, &n_groups)) {
        return NULL;
    }
    PyObject *columns = PySequence_Fast(columns_obj, "columns: a sequence is needed");
    if (columns == NULL) {
        return NULL;
    }
    Py_ssize_t n_cols = PySequence_Fast_GET_SIZE(columns);
    Py_buffer codes_view;
    Py_buffer cols[MAX_CONSTANT_COLUMNS];
    Py_ssize_t taken = 0, n = 0;
    PyObject *result = NULL;
    codes_view.obj = NULL;
    if (n_cols > MAX_CONSTANT_COLUMNS || n_groups < 0 ||
        n_groups > PY_SSIZE_T_MAX / (8 * MAX_CONSTANT_COLUMNS)) {
        PyErr_Format(PyExc_ValueError, "columns: at most %d, and n_groups in [0, %zd]",
                     MAX_CONSTANT_COLUMNS, PY_SSIZE_T_MAX / (8 * MAX_CONSTANT_COLUMNS));
        goto done;
    }
    if (take_codes(codes_obj, &codes_view) != 0) {
        goto done;
    }
    n = codes_view.len / 8;
    if (take_columns(columns, cols, n_cols, n, &taken) != 0) {
        goto done;
    }
    {
        const int64_t *codes = codes_view.buf;
        const char *base[MAX_CONSTANT_COLUMNS];
        Py_ssize_t stride[MAX_CONSTANT_COLUMNS];
        for (Py_ssize_t j = 0; j < n_cols; j++) {
            base[j] = cols[j].buf;
            stride[j] = cols[j].strides[0];
        }
        /* 0: constant, 1: a row differs (or a NaN), 2: a code out of range, 3: no memory.
           Over the first CONSTANT_FIRST rows, then 16 times as many, and so on up to
           all (as the doc says): each group's value at one of the rows scattered into a table of the
           groups, then every row's compared with it (no branch on whether a group was
           seen: the misses of the table overlap).  A column that varies fails on the
           first rows, having touched a few pages of the table, not all of it. */
        int status = 0;
        Py_BEGIN_ALLOW_THREADS
        double *first = n_cols && n ? PyMem_RawMalloc(8 * (n_groups ? n_groups : 1) * n_cols)
                                    : NULL;
        if (n_cols && n && first == NULL) {
            status = 3;
        }
        Py_ssize_t end = CONSTANT_FIRST;
        while (n_cols && n && !status) {
            if (end > n) {
                end = n;
            }
            /* the codes checked first, so that the scatter and the comparison run
               without a branch (their misses of the table overlap) */
            uint64_t top = 0;
            for (Py_ssize_t i = 0; i < end; i++) {
                uint64_t g = (uint64_t)codes[i];
                top = g > top ? g : top;
            }
            if (top >= (uint64_t)n_groups) {
                status = 2;
                break;
            }
            for (Py_ssize_t j = 0; j < n_cols && !status; j++) {
                const char *col = base[j];
                Py_ssize_t step = stride[j];
                double *table = first + j * n_groups;
                for (Py_ssize_t i = 0; i < end; i++) {
                    table[codes[i]] = *(const double *)(col + i * step);
                }
                int differs = 0;
                for (Py_ssize_t i = 0; i < end; i++) {
                    /* false of a NaN: no NaN equals anything, itself included */
                    differs |= !(*(const double *)(col + i * step) == table[codes[i]]);
                }
                status = differs;
            }
            if (end == n) {
                break;
            }
            /* all the rows where the next prefix would hold more than half of them: a
               column constant within groups is not read nearly twice over */
            end = end > n / 32 ? n : 16 * end;
        }
        PyMem_RawFree(first);
        Py_END_ALLOW_THREADS
        if (status == 2) {
            PyErr_Format(PyExc_ValueError, "codes: a code outside [0, %zd)", n_groups);
            goto done;
        }
        if (status == 3) {
            PyErr_NoMemory();
            goto done;
        }
        result = PyBool_FromLong(status == 0);
    }
done:
    for (Py_ssize_t j = 0; j < taken; j++) {
        if (cols[j].obj != NULL) {
            PyBuffer_Release(&cols[j]);
        }
    }
    if (codes_view.obj != NULL) {
        PyBuffer_Release(&codes_view);
    }
    Py_DECREF(columns);
    return result;
}

/* The sum of n numbers at x[0], x[stride], ... as numpy's add.reduce adds a row of a
   contiguous array (its pairwise summation: fewer than 8 one after another, else eight
   running sums folded as a tree, the rest one after another, halves past 128), so that
   each of profiled_hessian's gathered sums is full_sums' to the bit. */
static double
pairwise(const double *x, Py_ssize_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) {
            res += x[i];
        }
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) {
            r[j] = x[j];
        }
        Py_ssize_t i = 8;
        for (; i < n - (n % 8); i += 8) {
            for (int j = 0; j < 8; j++) {
                r[j] += x[i + j];
            }
        }
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            res += x[i];
        }
        return res;
    }
    Py_ssize_t half = n / 2;
    half -= half % 8;
    return pairwise(x, half) + pairwise(x + half, n - half);
}

/* Into sums[r] the pairwise sum (pairwise()) of row r of index (n_rows x width) of
   positions into va (n_va), then c (n_c), then a (pp), then one zero, gathered in row
   (width numbers); 1 where a position is outside [0, n_va + n_c + pp + zero), else 0. */
static int
gather_sums(const int64_t *index, Py_ssize_t n_rows, Py_ssize_t width, const double *va,
            Py_ssize_t n_va, const double *c, Py_ssize_t n_c, const double *a, Py_ssize_t pp,
            int zero, double *row, double *sums)
{
    Py_ssize_t total = n_va + n_c + pp + zero;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        const int64_t *at = index + r * width;
        for (Py_ssize_t w = 0; w < width; w++) {
            int64_t pos = at[w];
            if (pos < 0 || pos >= total) {
                return 1;
            }
            row[w] = pos < n_va                ? va[pos]
                     : pos < n_va + n_c        ? c[pos - n_va]
                     : pos < n_va + n_c + pp   ? a[pos - n_va - n_c]
                                               : 0.0;
        }
        sums[r] = pairwise(row, width);
    }
    return 0;
}

/* The float64 numbers of an array of ndim (1 or 2) dimensions of the given shape and any
   strides, copied in C order into out; or an exception naming it. */
static int
take_copy(PyObject *obj, int ndim, Py_ssize_t rows, Py_ssize_t cols, double *out,
          const char *name)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_STRIDES | PyBUF_FORMAT) != 0) {
        return -1;
    }
    const char *fmt = view.format;
    if (fmt != NULL && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) {
        fmt++;
    }
    if (view.itemsize != 8 || fmt == NULL || fmt[0] != 'd' || fmt[1] != '\0') {
        PyErr_Format(PyExc_TypeError, "%s: a float64 buffer is needed, got format %s", name,
                     view.format == NULL ? "B" : view.format);
        PyBuffer_Release(&view);
        return -1;
    }
    if (view.ndim != ndim || view.shape[0] != rows || (ndim == 2 && view.shape[1] != cols)) {
        if (ndim == 2) {
            PyErr_Format(PyExc_ValueError, "%s: shape (%zd, %zd) needed", name, rows, cols);
        }
        else {
            PyErr_Format(PyExc_ValueError, "%s: shape (%zd,) needed", name, rows);
        }
        PyBuffer_Release(&view);
        return -1;
    }
    const char *base = view.buf;
    Py_ssize_t s0 = view.strides[0], s1 = ndim == 2 ? view.strides[1] : 0;
    for (Py_ssize_t i = 0; i < rows; i++) {
        for (Py_ssize_t j = 0; j < (ndim == 2 ? cols : 1); j++) {
            *out++ = *(const double *)(base + i * s0 + j * s1);
        }
    }
    PyBuffer_Release(&view);
    return 0;
}

/* the largest p and m profiled_hessian takes (native.MAX_K - 1 and m's bound) */
#define MAX_P 63
#define MAX_M 64

/* out (rows × cols, C order) = x (rows × inner) @ y (inner × cols), each entry a sum over
   the inner index in order (BLAS adds in its own order: the products agree to rounding) */
static void
product(const double *x, const double *y, Py_ssize_t rows, Py_ssize_t inner, Py_ssize_t cols,
        double *out)
{
    for (Py_ssize_t i = 0; i < rows; i++) {
        for (Py_ssize_t j = 0; j < cols; j++) {
            double acc = 0.0;
            for (Py_ssize_t l = 0; l < inner; l++) {
                acc += x[i * inner + l] * y[l * cols + j];
            }
            out[i * cols + j] = acc;
        }
    }
}

/* The arithmetic of profiled_hessian once the buffers are read: sums (the gathered
   entries, laid out as full_sums returns them) into hess, prof and tr_ss; returns
   whether hess is finite.  work holds n p + m m numbers. */
static int
hessian_arith(const double *sums, const double *a, const double *b, const double *a_inv,
              const double *beta, Py_ssize_t p, Py_ssize_t m, double q0, double fac, int reml,
              double *hess, double *prof, double *tr_ss, double *work)
{
    Py_ssize_t n = p + m;
    const double *half_q = sums, *u_e_u = sums + n * n, *ss = u_e_u + m;
    const double *a_j = ss + m * m, *a_jk = a_j + m * p * p;
    /* quadratic_form at beta about 0: Q(0) - 2 beta'b + beta'A beta, each sum in order
       from 0 as Python's sum of the products */
    double beta_b = 0.0, beta_a_beta = 0.0;
    for (Py_ssize_t i = 0; i < p; i++) {
        beta_b += beta[i] * b[i];
    }
    for (Py_ssize_t i = 0; i < p; i++) {
        double row = 0.0;
        for (Py_ssize_t j = 0; j < p; j++) {
            row += a[i * p + j] * beta[j];
        }
        beta_a_beta += beta[i] * row;
    }
    double qf = q0 - 2.0 * beta_b;
    qf += beta_a_beta;
    double c1 = -fac / qf;
    for (Py_ssize_t i = 0; i < n * n; i++) {
        hess[i] = half_q[i] * c1;
    }
    double scale = 0.5 * fac / (qf * qf);
    for (Py_ssize_t j = 0; j < m; j++) {
        double *h = hess + (p + j) * n + p;
        for (Py_ssize_t l = 0; l < m; l++) {
            h[l] += 0.5 * ss[j * m + l];
        }
        for (Py_ssize_t l = 0; l < m; l++) {
            h[l] += u_e_u[j] * (scale * u_e_u[l]);
        }
    }
    if (reml && p) {
        /* tr(A^-1 A_j A^-1 A_l) - sum A_jl[x, y] A^-1[x, y], with ql_j = A^-1 A_j (in
           work, m p p numbers) */
        double *ql = work;
        for (Py_ssize_t j = 0; j < m; j++) {
            product(a_inv, a_j + j * p * p, p, p, p, ql + j * p * p);
        }
        for (Py_ssize_t j = 0; j < m; j++) {
            double *h = hess + (p + j) * n + p;
            for (Py_ssize_t l = 0; l < m; l++) {
                const double *qj = ql + j * p * p, *qlm = ql + l * p * p;
                const double *ajl = a_jk + (j * m + l) * p * p;
                double tr = 0.0, contracted = 0.0;
                for (Py_ssize_t x = 0; x < p; x++) {
                    for (Py_ssize_t y = 0; y < p; y++) {
                        tr += qj[x * p + y] * qlm[y * p + x];
                        contracted += ajl[x * p + y] * a_inv[x * p + y];
                    }
                }
                h[l] += 0.5 * (tr - contracted);
            }
        }
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        double *hj = hess + (p + j) * n + p;
        for (Py_ssize_t l = j; l < m; l++) {
            double *hl = hess + (p + l) * n + p;
            double both = 0.5 * (hj[l] + hl[j]);
            hj[l] = both;
            hl[j] = both;
        }
    }
    int finite = 1;
    for (Py_ssize_t i = 0; i < n * n; i++) {
        finite &= isfinite(hess[i]) ? 1 : 0;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        tr_ss[j] = ss[j * m + j];
    }
    if (!finite) {
        return 0;
    }
    /* the beta block eliminated: H_tt - c1 G A^-1 G' (G = half_q's theta-beta block, its
       product with A^-1 in work), symmetrized */
    double *ga = work;
    for (Py_ssize_t j = 0; j < m; j++) {
        product(half_q + (p + j) * n, a_inv, 1, p, p, ga + j * p);
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        for (Py_ssize_t l = 0; l < m; l++) {
            double x = 0.0;
            for (Py_ssize_t y = 0; y < p; y++) {
                x += ga[j * p + y] * half_q[(p + l) * n + y];
            }
            prof[j * m + l] = p ? hess[(p + j) * n + p + l] - c1 * x : hess[(p + j) * n + p + l];
        }
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        for (Py_ssize_t l = j; l < m; l++) {
            double both = 0.5 * (prof[j * m + l] + prof[l * m + j]);
            prof[j * m + l] = both;
            prof[l * m + j] = both;
        }
    }
    return 1;
}

PyDoc_STRVAR(profiled_hessian_doc,
"profiled_hessian(va, c, a, b, a_inv, beta, index, width, p, m, q0, fac, reml, hess, prof,\n"
"                 tr_ss) -> bool\n\n"
"The Hessian of the profiled log-likelihood from full_sums' inputs, as\n"
"dmixed.fit.lean.LeanSteps.profiled_hessian_2 makes it: each row of index (int64,\n"
"C-contiguous, (n n + m + m m + m p p + m m p p) x width, n = p + m) the positions in\n"
"[va, c, A, 0] (va and c float64 C-contiguous, any size) whose sum is an entry of\n"
"full_sums (summed as numpy sums a row); a (p, p), b (p,), a_inv (p, p) and beta (p,)\n"
"of the profile (float64, any strides); q0 = Q(0) and fac as the profile's; reml true\n"
"for REML.  Into hess (n n) the full Hessian, into prof (m m) the profiled one and into\n"
"tr_ss (m) the diagonal of tr(S E_j S E_j); returns whether hess is finite (prof not\n"
"made where it is not).");

static PyObject *
profiled_hessian(PyObject *self, PyObject *args)
{
    PyObject *o[10];
    Py_ssize_t width, p, m;
    double q0, fac;
    int reml;
    if (!PyArg_ParseTuple(args, "OOOOOOOnnnddpOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &width, &p, &m, &q0, &fac, &reml, &o[7], &o[8], &o[9])) {
        return NULL;
    }
    if (p < 0 || p > MAX_P || m < 1 || m > MAX_M || width < 1 || width > 4096) {
        PyErr_Format(PyExc_ValueError,
                     "p must be in [0, %d], m in [1, %d] and width in [1, 4096], got p=%zd,"
                     " m=%zd, width=%zd",
                     MAX_P, MAX_M, p, m, width);
        return NULL;
    }
    Py_ssize_t n = p + m, pp = p * p;
    Py_ssize_t n_rows = n * n + m + m * m + m * pp + m * m * pp;
    /* the profile's arrays, then the sums, then the arithmetic's work */
    double *store = PyMem_Malloc(sizeof(double) * (2 * pp + 2 * p + n_rows + m * pp + m * p));
    if (store == NULL) {
        return PyErr_NoMemory();
    }
    double *a = store, *b = a + pp, *a_inv = b + p, *beta = a_inv + pp, *sums = beta + p;
    double *work = sums + n_rows;
    PyObject *result = NULL;
    Py_buffer v[6];
    int taken = 0;
    if (take_copy(o[2], 2, p, p, a, "a") != 0 || take_copy(o[3], 1, p, 0, b, "b") != 0 ||
        take_copy(o[4], 2, p, p, a_inv, "a_inv") != 0 ||
        take_copy(o[5], 1, p, 0, beta, "beta") != 0) {
        goto done;
    }
    {
        const char *names[3] = {"va", "c", "index"};
        for (int i = 0; i < 3; i++, taken++) {
            if (take_any(o[i == 2 ? 6 : i], &v[i], 0, i == 2, names[i]) != 0) {
                goto done;
            }
        }
    }
    if (v[2].len != n_rows * width * 8) {
        PyErr_Format(PyExc_ValueError, "index: %zd x %zd positions needed, got %zd", n_rows,
                     width, v[2].len / 8);
        goto done;
    }
    {
        const char *names[3] = {"hess", "prof", "tr_ss"};
        Py_ssize_t sizes[3] = {n * n, m * m, m};
        for (int i = 0; i < 3; i++, taken++) {
            if (take(o[7 + i], &v[3 + i], 1, sizes[i], names[i]) != 0) {
                goto done;
            }
        }
    }
    {
        const double *va = v[0].buf, *c = v[1].buf;
        const int64_t *index = v[2].buf;
        Py_ssize_t n_va = v[0].len / 8, n_c = v[1].len / 8;
        Py_ssize_t total = n_va + n_c + pp + 1;
        double *row = work; /* width numbers at a time: work holds at least m p + m p p */
        double *own = NULL;
        if (width > m * pp + m * p) {
            own = PyMem_Malloc(sizeof(double) * width);
            if (own == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            row = own;
        }
        int finite = 0;
        /* a long loop (the widest p) without the GIL */
        PyThreadState *state = p > 8 ? PyEval_SaveThread() : NULL;
        int bad = gather_sums(index, n_rows, width, va, n_va, c, n_c, a, pp, 1, row, sums);
        if (!bad) {
            finite = hessian_arith(sums, a, b, a_inv, beta, p, m, q0, fac, reml, v[3].buf,
                                   v[4].buf, v[5].buf, work);
        }
        if (state != NULL) {
            PyEval_RestoreThread(state);
        }
        PyMem_Free(own);
        if (bad) {
            PyErr_Format(PyExc_ValueError, "index: a position outside [0, %zd)", total);
            goto done;
        }
        result = PyBool_FromLong(finite);
    }
done:
    release(v, taken);
    PyMem_Free(store);
    return result;
}

/* The profile of t = [X y]'V*^-1[X y] (k x k, 2 <= k <= 4) about beta0 = 0 as
   dmixed.kernels.small_linalg.spd_inverse_3 and LeanSteps.profile make it in floats
   (the same operations on each number): A^-1 (p x p) into a_inv, beta = A^-1 b into
   beta, log|A| and Q into *logdet_a and *q; 0 where A has no Cholesky factor or Q is not
   positive, else 1. */
static int
profile_3(const double *t, Py_ssize_t k, double *a_inv, double *beta, double *logdet_a,
          double *q)
{
    Py_ssize_t p = k - 1;
    double a00 = t[0], a10 = 0.0, a11 = 1.0, a20 = 0.0, a21 = 0.0, a22 = 1.0;
    if (p >= 2) {
        a10 = t[k];
        a11 = t[k + 1];
    }
    if (p == 3) {
        a20 = t[2 * k];
        a21 = t[2 * k + 1];
        a22 = t[2 * k + 2];
    }
    if (!(a00 > 0.0)) {
        return 0;
    }
    double c00 = sqrt(a00);
    double c10 = a10 / c00, c20 = a20 / c00;
    double pivot = a11 - c10 * c10;
    if (!(pivot > 0.0)) {
        return 0;
    }
    double c11 = sqrt(pivot);
    double c21 = (a21 - c20 * c10) / c11;
    pivot = a22 - (c20 * c20 + c21 * c21);
    if (!(pivot > 0.0)) {
        return 0;
    }
    double c22 = sqrt(pivot);
    *logdet_a = 2.0 * ((log(c00) + log(c11)) + log(c22));
    double i00 = 1.0 / c00, i11 = 1.0 / c11, i22 = 1.0 / c22;
    double i10 = -(c10 * i00) * i11;
    double i21 = -(c21 * i11) * i22;
    double i20 = -(c20 * i00 + c21 * i10) * i22;
    double full[3][3];
    full[0][0] = (i00 * i00 + i10 * i10) + i20 * i20;
    full[1][0] = full[0][1] = i10 * i11 + i20 * i21;
    full[2][0] = full[0][2] = i20 * i22;
    full[1][1] = i11 * i11 + i21 * i21;
    full[2][1] = full[1][2] = i21 * i22;
    full[2][2] = i22 * i22;
    for (Py_ssize_t i = 0; i < p; i++) {
        for (Py_ssize_t j = 0; j < p; j++) {
            a_inv[i * p + j] = full[i][j];
        }
    }
    double b_beta = 0.0;
    for (Py_ssize_t i = 0; i < p; i++) {
        double acc = 0.0;
        for (Py_ssize_t j = 0; j < p; j++) {
            acc += a_inv[i * p + j] * t[j * k + p];
        }
        beta[i] = acc;
    }
    for (Py_ssize_t i = 0; i < p; i++) {
        b_beta += t[i * k + p] * beta[i];
    }
    *q = t[p * k + p] - b_beta;
    return *q > 0.0;
}

/* the numbers lean_evaluate returns in scalars */
#define LEAN_SCALARS 17

PyDoc_STRVAR(lean_evaluate_doc,
"lean_evaluate(zz, zxy, k, g, l00, l10, l11, xyxy, abs_xyxy, max_xyxy, score_at, fac,\n"
"              const, limit, pivot_limit, reml, inv_d, rows, va, m, t, a_inv, beta,\n"
"              scalars) -> int\n\n"
"One evaluation of dmixed.fit.lean.LeanSteps.evaluate for r = 2 and 2 <= k <= 4 at the\n"
"square-root packing (l00, l10, l11) of Lambda: the sums of dense2_first at\n"
"B = Lambda Lambda' (1/d into inv_d (g)), m = sum ZXy'P ZXy (k, k) and\n"
"t = xyxy - m (k, k), the profile of t as small_linalg.spd_inverse_3 makes it (A^-1\n"
"into a_inv (p, p), beta into beta (p)), l, the rows and their products of\n"
"dense2_residual at w = [-beta; 1] (rows (2 k + 3, g), va (2 k + 3, 2 k + 3)), the\n"
"score's entries of va at score_at (int64, 3 x (1 + p p)) weighted by\n"
"[fac / 2Q, A^-1 / 2 for REML, else 0], and the resolution test of\n"
"LeanSteps.verdict: Q's, then with the factor's share of objective.factor_resolution\n"
"and objective.pivot_resolution (abs_xyxy = |xyxy| as the objective holds it,\n"
"max_xyxy its largest entry, limit and pivot_limit the test's bounds).  Into scalars\n"
"(17): l, sum log d, log|A|, Q, D00, D01, D11, the packed score (3), b00, b01, b11,\n"
"det(B), S00, S01, S11.  Returns 0 where l is not defined or it or the score is not\n"
"finite, 1 where Q is not resolved, 3 where Q is but A's factor is not (scalars and\n"
"the arrays made in full: a start's), else 2.");

static PyObject *
lean_evaluate(PyObject *self, PyObject *args)
{
    PyObject *o[13];
    Py_ssize_t k, g;
    double l00, l10, l11, max_xyxy, fac, cons, limit, pivot_limit;
    int reml;
    if (!PyArg_ParseTuple(args, "OOnndddOOdOddddpOOOOOOOO", &o[0], &o[1], &k, &g, &l00, &l10,
                          &l11, &o[2], &o[3], &max_xyxy, &o[4], &fac, &cons, &limit,
                          &pivot_limit, &reml,
                          &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    if (k < 2 || k > 4) {
        PyErr_Format(PyExc_ValueError, "k must be in [2, 4], got k=%zd", k);
        return NULL;
    }
    Py_ssize_t p = k - 1, n = 2 * k + 3, width = 1 + p * p;
    Py_buffer v[13];
    /* score_at (o[4]) is read apart: int64 */
    PyObject *floats[12] = {o[0], o[1], o[2], o[3], o[5], o[6], o[7], o[8], o[9], o[10], o[11],
                            o[12]};
    const char *names[12] = {"zz", "zxy", "xyxy", "abs_xyxy", "inv_d", "rows",
                             "va", "m",   "t",    "a_inv",    "beta",  "scalars"};
    Py_ssize_t sizes[12] = {4 * g, 2 * k * g, k * k, k * k, g, n * g,
                            n * n, k * k,     k * k, p * p, p, LEAN_SCALARS};
    int writes[12] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    if (take_all(floats, v, 12, names, sizes, writes) != 0) {
        return NULL;
    }
    Py_buffer *at_view = &v[12];
    if (PyObject_GetBuffer(o[4], at_view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        release(v, 12);
        return NULL;
    }
    const char *fmt = at_view->format;
    if (fmt != NULL && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) {
        fmt++;
    }
    if (at_view->itemsize != 8 || fmt == NULL || (strcmp(fmt, "q") != 0 && strcmp(fmt, "l") != 0)) {
        PyErr_SetString(PyExc_TypeError, "score_at: an int64 buffer is needed");
        release(v, 13);
        return NULL;
    }
    if (at_view->len != 3 * width * 8) {
        PyErr_Format(PyExc_ValueError, "score_at: %zd positions needed, got %zd", 3 * width,
                     at_view->len / 8);
        release(v, 13);
        return NULL;
    }
    const int64_t *score_at = at_view->buf;
    for (Py_ssize_t i = 0; i < 3 * width; i++) {
        if (score_at[i] < 0 || score_at[i] >= n * n) {
            PyErr_Format(PyExc_ValueError, "score_at: a position outside [0, %zd)", n * n);
            release(v, 13);
            return NULL;
        }
    }
    const double *zz = v[0].buf, *zxy = v[1].buf, *xyxy = v[2].buf, *abs_xyxy = v[3].buf;
    double *inv_d = v[4].buf, *rows = v[5].buf, *va = v[6].buf, *m = v[7].buf, *t = v[8].buf;
    double *a_inv = v[9].buf, *beta = v[10].buf, *out = v[11].buf;
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    /* Dense2Statistics.step: B = Lambda Lambda' of the lower-triangular Lambda, in its
       operations (l01 = 0 kept in them) */
    double l01 = 0.0;
    double b00 = l00 * l00 + l01 * l01;
    double b01 = l00 * l10 + l01 * l11;
    double b11 = l10 * l10 + l11 * l11;
    double det_l = l00 * l11 - l01 * l10;
    double det_b = det_l * det_l;
    double coef[5] = {1.0, b00, 2.0 * b01, b11, det_b};
    Py_ssize_t tri = k * (k + 1) / 2;
    double sums[5 + 4 * 10];
    double logdet = first_pass(zz, zxy, k, g, coef, inv_d, sums);
    double s00 = sums[1] + b11 * sums[4];
    double s01 = sums[2] - b01 * sums[4];
    double s11 = sums[3] + b00 * sums[4];
    Py_ssize_t at = 0;
    for (Py_ssize_t x = 0; x < k; x++) {
        for (Py_ssize_t y = x; y < k; y++, at++) {
            const double *four = sums + 5 + at;
            double value = ((b00 * four[0] + b01 * four[tri]) + b11 * four[2 * tri]) +
                           det_b * four[3 * tri];
            m[x * k + y] = value;
            m[y * k + x] = value;
        }
    }
    for (Py_ssize_t i = 0; i < k * k; i++) {
        t[i] = xyxy[i] - m[i];
    }
    double logdet_a = 0.0, q = 0.0, llf = 0.0, d00 = 0.0, d01 = 0.0, d11 = 0.0;
    double score[3] = {0.0, 0.0, 0.0};
    if (profile_3(t, k, a_inv, beta, &logdet_a, &q)) {
        llf = (-0.5 * logdet - 0.5 * fac * log(q)) + cons;
        if (reml) {
            llf -= 0.5 * logdet_a;
        }
        double w[4];
        for (Py_ssize_t i = 0; i < p; i++) {
            w[i] = -beta[i];
        }
        w[p] = 1.0;
        residual_pass(zz, zxy, inv_d, k, g, b00, b01, b11, w, rows, va);
        /* dl/dPsi* = -S/2 + (fac/2Q) u u' (+ A^-1 G G'/2 for REML) at (0,0), (1,0), (1,1) */
        double weights[10];
        weights[0] = fac / (2.0 * q);
        for (Py_ssize_t i = 0; i < p * p; i++) {
            weights[1 + i] = reml ? a_inv[i] * 0.5 : 0.0;
        }
        double r[3];
        for (int j = 0; j < 3; j++) {
            double acc = 0.0;
            for (Py_ssize_t i = 0; i < width; i++) {
                acc += va[score_at[j * width + i]] * weights[i];
            }
            r[j] = acc;
        }
        d00 = r[0] - 0.5 * s00;
        d01 = r[1] - 0.5 * s01;
        d11 = r[2] - 0.5 * s11;
        score[0] = 2.0 * (d00 * l00 + d01 * l10);
        score[1] = 2.0 * (d01 * l00 + d11 * l10);
        score[2] = 2.0 * (d11 * l11);
        if (isfinite(llf) && isfinite(score[0]) && isfinite(score[1]) && isfinite(score[2])) {
            status = 2;
            /* LeanSteps.unresolved: a bound first, the sum where the bound does not pass
               (max as Python's: a NaN after the first entry is passed over) */
            double w_sum = 0.0;
            for (Py_ssize_t i = 0; i < p; i++) {
                w_sum += fabs(beta[i]);
            }
            w_sum = 1.0 + w_sum;
            double max_m = fabs(m[0]);
            for (Py_ssize_t i = 1; i < k * k; i++) {
                if (fabs(m[i]) > max_m) {
                    max_m = fabs(m[i]);
                }
            }
            /* the factor's share (objective.factor_resolution): |b'beta| = |T_pp - Q|,
               Q / fac for REML's log|A|, and the bound of LeanSteps.unresolved */
            double made = fabs(t[p * k + p] - q);
            double log_share = reml ? q / fac : 0.0;
            double a_sum = 0.0;
            for (Py_ssize_t i = 0; i < p * p; i++) {
                a_sum += fabs(a_inv[i]);
            }
            double top = max_xyxy + max_m;
            double bound = (w_sum * w_sum * (1.0 + DBL_EPSILON * top * a_sum) +
                            a_sum * (made + log_share)) * top;
            bound *= 1.0 + 1e-9;
            double pivot_bound = DBL_EPSILON * a_sum * top * (1.0 + 1e-9);
            if (DBL_EPSILON * bound / q > limit || pivot_bound > pivot_limit) {
                double size = 0.0, r[3] = {0.0, 0.0, 0.0};
                for (Py_ssize_t j = 0; j < k; j++) {
                    double col = 0.0;
                    for (Py_ssize_t i = 0; i < k; i++) {
                        col += fabs(w[i]) * (abs_xyxy[i * k + j] + fabs(m[i * k + j]));
                    }
                    size += col * fabs(w[j]);
                }
                for (Py_ssize_t i = 0; i < p; i++) {
                    double acc = 0.0;
                    for (Py_ssize_t j = 0; j < k; j++) {
                        acc += (abs_xyxy[i * k + j] + fabs(m[i * k + j])) * fabs(w[j]);
                    }
                    r[i] = DBL_EPSILON * acc;
                }
                /* sum |A^-1_xy| sqrt(A_xx A_yy), r'|A^-1|r, sum |A^-1| o S over the X block */
                double scaled = 0.0, second = 0.0, cond = 0.0;
                for (Py_ssize_t i = 0; i < p; i++) {
                    for (Py_ssize_t j = 0; j < p; j++) {
                        double inv = fabs(a_inv[i * p + j]);
                        scaled += sqrt(fabs(t[i * k + i])) * inv * sqrt(fabs(t[j * k + j]));
                        second += r[i] * inv * r[j];
                        cond += inv * (abs_xyxy[i * k + j] + fabs(m[i * k + j]));
                    }
                }
                double pivot_k = DBL_EPSILON * cond;
                double share = DBL_EPSILON * size;
                if (share / q > limit) {
                    status = 1;
                } else {
                    share += DBL_EPSILON * scaled * made;
                    share += second;
                    share += pivot_k * log_share;
                    if (pivot_k > pivot_limit || share / q > limit) {
                        status = 3;
                    }
                }
            }
        }
    }
    double numbers[LEAN_SCALARS] = {llf, logdet, logdet_a, q, d00, d01, d11,
                                    score[0], score[1], score[2], b00, b01, b11, det_b,
                                    s00, s01, s11};
    memcpy(out, numbers, sizeof numbers);
    Py_END_ALLOW_THREADS
    release(v, 13);
    return PyLong_FromLong(status);
}

PyDoc_STRVAR(block_terms_doc,
"block_terms(hess, g0, g1, g2, x0, big_l, d0, x1, g_v, h_v)\n\n"
"The chain rule of dmixed.fit.lean.block_step from theta = vech_lt(Psi*) (2 x 2) to its\n"
"modified Cholesky coordinates v: with J = [[x0, 0, 0], [x0 L, d0, 0],\n"
"[x0 L L, d0 (L + L), x1]] (L = big_l) and the gradient g = (g0, g1, g2) in theta,\n"
"g_v = J'g into g_v (3) and h_v = J' hess J + sum_k g_k d2 theta_k / dv2, symmetrized,\n"
"into h_v (3, 3) (hess (3, 3) float64, C-contiguous).");

static PyObject *
block_terms(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    double g0, g1, g2, x0, big_l, d0, x1;
    if (!PyArg_ParseTuple(args, "OdddddddOO", &o[0], &g0, &g1, &g2, &x0, &big_l, &d0, &x1,
                          &o[1], &o[2])) {
        return NULL;
    }
    Py_buffer v[3];
    const char *names[3] = {"hess", "g_v", "h_v"};
    Py_ssize_t sizes[3] = {9, 3, 9};
    int writes[3] = {0, 1, 1};
    if (take_all(o, v, 3, names, sizes, writes) != 0) {
        return NULL;
    }
    const double *hess = v[0].buf;
    double *g_v = v[1].buf, *h_v = v[2].buf;
    /* block_step's J and second derivatives, in its operations */
    double half = 0.5 * g1;
    double jac[3][3] = {{x0, 0.0, 0.0},
                        {x0 * big_l, d0, 0.0},
                        {x0 * (big_l * big_l), d0 * (big_l + big_l), x1}};
    double ratio = x0 / d0;
    double s00 = ((g0 * x0 + half * (x0 * big_l)) + half * (x0 * big_l)) +
                 g2 * (x0 * (big_l * big_l));
    double s01 = (half * (d0 * ratio) + half * (d0 * ratio)) +
                 g2 * ((d0 * (big_l + big_l)) * ratio);
    double second[3][3] = {{s00, s01, 0.0}, {s01, g2 * (d0 * 2.0), 0.0}, {0.0, 0.0, g2 * x1}};
    double grad[3] = {g0, g1, g2}, left[3][3], full[3][3];
    for (int a = 0; a < 3; a++) {
        double acc = 0.0;
        for (int i = 0; i < 3; i++) {
            acc += jac[i][a] * grad[i];
        }
        g_v[a] = acc;
        /* (J' hess)[a][b], then its product with J, as numpy's (jac.T @ hess) @ jac */
        for (int b = 0; b < 3; b++) {
            double sum = 0.0;
            for (int i = 0; i < 3; i++) {
                sum += jac[i][a] * hess[i * 3 + b];
            }
            left[a][b] = sum;
        }
    }
    for (int a = 0; a < 3; a++) {
        for (int c = 0; c < 3; c++) {
            double sum = 0.0;
            for (int b = 0; b < 3; b++) {
                sum += left[a][b] * jac[b][c];
            }
            full[a][c] = sum + second[a][c];
        }
    }
    for (int a = 0; a < 3; a++) {
        for (int c = 0; c < 3; c++) {
            h_v[a * 3 + c] = 0.5 * (full[a][c] + full[c][a]);
        }
    }
    release(v, 3);
    Py_RETURN_NONE;
}

/* groups a run of moments_r2 takes at a time: its 2 k + 3 rows stay in the first-level
   or second-level cache while their products are summed */
#define RUN2 256

/* Where the row l of moments_r2's run buffer lies among the rows v = [G, u] of
   dmixed.kernels.hessian_moments (a k + x): the run holds G's rows first (a p + x,
   x < p), then u's (a = l - 2p), so that C's products of G rows and of u rows are each
   one block of row_products. */
static inline Py_ssize_t
v_row(Py_ssize_t l, Py_ssize_t k)
{
    Py_ssize_t p = k - 1;
    return l < 2 * p ? (l / p) * k + l % p : (l - 2 * p) * k + p;
}

/* For the rows a and b[0], b[1] of a run (n a multiple of 4, the rows' padding zeros):
   out[4 j] = Σ_i a_i b_j,i and out[4 j + 1 + t] = Σ_i (a_i b_j,i) s_t,i for the three
   rows s_t (S's pairs), in four lanes a sum folded at the end as fold adds a vector: V's
   and C's products of a pair of rows with one load of each row per group. */
WIDE static void
pair_sums(const double *a, const double *const *b, const double *s, Py_ssize_t n, double *out)
{
    vec acc[2][4];
    for (int j = 0; j < 2; j++) {
        for (int t = 0; t < 4; t++) {
            acc[j][t] = (vec){0.0, 0.0, 0.0, 0.0};
        }
    }
    for (Py_ssize_t i = 0; i < n; i += 4) {
        vec x = load(a + i), s0 = load(s + i), s1 = load(s + RUN2 + i);
        vec s2 = load(s + 2 * RUN2 + i);
        for (int j = 0; j < 2; j++) {
            vec ab = x * load(b[j] + i);
            acc[j][0] += ab;
            acc[j][1] += ab * s0;
            acc[j][2] += ab * s1;
            acc[j][3] += ab * s2;
        }
    }
    for (int j = 0; j < 2; j++) {
        for (int t = 0; t < 4; t++) {
            vec v = acc[j][t];
            out[4 * j + t] = (v[0] + v[2]) + (v[1] + v[3]);
        }
    }
}

/* The run's per-group values for moments_r2, with the operations of
   dmixed.kernels.jit._conditional_r2, _residual_side and _random_effects_run in their
   order (the same bits): S's pairs into sp (3 rows), G's rows then u's into rows (the
   layout of v_row), the BLUPs and P_i where blup is not NULL.  Every loop runs over the
   n groups (from u00 etc., g apart between the columns of zxy), so that it vectorizes;
   d_i, 1/d_i and adj(B) adj(U) wait in the tail of sp. */
WIDE static void
run_values(const double *u00, const double *u01, const double *u11, const double *f0,
           const double *f1, Py_ssize_t k, Py_ssize_t g, Py_ssize_t n, const double *b,
           double det_b, const double *w, double *rows, double *sp, double *blup, double *cov,
           Py_ssize_t cov_width, int more)
{
    Py_ssize_t p = k - 1;
    double b00 = b[0], b01 = b[1], b10 = b[2], b11 = b[3];
    double *s00 = sp, *s01 = sp + RUN2, *s11 = sp + 2 * RUN2, *inv = sp + 3 * RUN2;
    double *m00 = inv + RUN2, *m01 = m00 + RUN2, *m10 = m01 + RUN2, *m11 = m10 + RUN2;
    double *ua = rows + 2 * p * RUN2, *ub = ua + RUN2;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x00 = u00[i], x01 = u01[i], x11 = u11[i];
        double du = x00 * x11 - x01 * x01;
        du = du < 0.0 ? 0.0 : du;
        double d = 1.0 + b00 * x00 + 2.0 * b01 * x01 + b11 * x11 + det_b * du;
        double r = 1.0 / d;
        inv[i] = r;
        s00[i] = (x00 + du * b11) * r;
        s01[i] = (x01 - du * b01) * r;
        s11[i] = (x11 + du * b00) * r;
        m00[i] = b11 * x11 + b01 * x01;
        m01[i] = -(b11 * x01 + b01 * x00);
        m10[i] = -(b01 * x11 + b00 * x01);
        m11[i] = b01 * x01 + b00 * x00;
        ua[i] = 0.0;
        ub[i] = 0.0;
    }
    /* C = M Z'[X y] / d_i column by column, u = C w: four groups a vector with the
       columns inner, so that M, 1/d_i and u stay in registers across the k columns (a
       loop per column over the groups read and wrote them once a column); each group's
       operations and their order are the scalar loop's below (the same bits).  y's
       column (x = p) is kept for u alone: into the tail of sp. */
    double *hy0 = m11 + RUN2, *hy1 = m11 + 2 * RUN2;
    Py_ssize_t whole = n / 4 * 4;
    for (Py_ssize_t i = 0; i < whole; i += 4) {
        vec v00 = load(m00 + i), v01 = load(m01 + i), v10 = load(m10 + i);
        vec v11 = load(m11 + i), vinv = load(inv + i);
        vec va = {0.0, 0.0, 0.0, 0.0}, vb = {0.0, 0.0, 0.0, 0.0};
        for (Py_ssize_t x = 0; x < k; x++) {
            vec a0 = load(f0 + x * g + i), a1 = load(f1 + x * g + i);
            /* the next run's columns asked for now: they arrive while this run's
               products are summed (thirteen streams a run, more than the hardware
               prefetcher follows ahead of time) */
            if (more) {
                __builtin_prefetch(f0 + x * g + i + RUN2);
                __builtin_prefetch(f1 + x * g + i + RUN2);
            }
            vec c0 = (v00 * a0 + v01 * a1 + a0) * vinv;
            vec c1 = (v10 * a0 + v11 * a1 + a1) * vinv;
            double *h0 = x < p ? rows + x * RUN2 : hy0;
            double *h1 = x < p ? rows + (p + x) * RUN2 : hy1;
            memcpy(h0 + i, &c0, sizeof c0);
            memcpy(h1 + i, &c1, sizeof c1);
            va = va + c0 * w[x];
            vb = vb + c1 * w[x];
        }
        memcpy(ua + i, &va, sizeof va);
        memcpy(ub + i, &vb, sizeof vb);
    }
    for (Py_ssize_t x = 0; x < k; x++) {
        const double *a0 = f0 + x * g, *a1 = f1 + x * g;
        double *h0 = x < p ? rows + x * RUN2 : hy0;
        double *h1 = x < p ? rows + (p + x) * RUN2 : hy1;
        double wx = w[x];
        for (Py_ssize_t i = whole; i < n; i++) {
            double c0 = (m00[i] * a0[i] + m01[i] * a1[i] + a0[i]) * inv[i];
            double c1 = (m10[i] * a0[i] + m11[i] * a1[i] + a1[i]) * inv[i];
            h0[i] = c0;
            h1[i] = c1;
            ua[i] += c0 * wx;
            ub[i] += c1 * wx;
        }
    }
    if (blup == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double r = inv[i];
        double p00 = (b00 + det_b * u11[i]) * r;
        double p11 = (b11 + det_b * u00[i]) * r;
        double p01 = (b01 - det_b * u01[i]) * r;
        blup[2 * i] = 0.0 + b00 * ua[i] + b01 * ub[i];
        blup[2 * i + 1] = 0.0 + b10 * ua[i] + b11 * ub[i];
        double *c_at = cov + cov_width * i;
        c_at[0] = p00;
        c_at[1] = p01;
        if (cov_width == 3) {
            c_at[2] = p11;
        }
        else {
            c_at[2] = p01;
            c_at[3] = p11;
        }
    }
}

/* moments_r2's pass (its docstring) over the g groups; work holds
   (2k + 10) RUN2 + 4 (2k)^2 + 18 numbers. */
static void
moments_pass(const double *zz, const double *zxy, Py_ssize_t k, Py_ssize_t g, const double *b,
             double det_b, const double *w, double *out_a, double *out_v, double *out_c,
             double *blup, double *cov, Py_ssize_t cov_width, double *work)
{
    Py_ssize_t p = k - 1, rk = 2 * k, gp = 2 * p;
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    const double *f0 = zxy, *f1 = zxy + k * g;
    double *rows = work, *sp = rows + rk * RUN2;
    double *tv = rows + (rk + 10) * RUN2, *tc = tv + rk * rk, *ta = tc + 3 * rk * rk;
    double *part = ta + 9;
    for (Py_ssize_t j = 0; j < 4 * rk * rk + 9; j++) {
        tv[j] = 0.0;
    }
    for (Py_ssize_t lo = 0; lo < g; lo += RUN2) {
        Py_ssize_t n = lo + RUN2 < g ? RUN2 : g - lo;
        run_values(u00 + lo, u01 + lo, u11 + lo, f0 + lo, f1 + lo, k, g, n, b, det_b, w, rows,
                   sp, blup == NULL ? NULL : blup + 2 * lo,
                   cov == NULL ? NULL : cov + cov_width * lo, cov_width, lo + 2 * RUN2 <= g);
        /* zeros past the run's last group, to a whole vector: they add nothing */
        Py_ssize_t n4 = (n + 3) / 4 * 4;
        for (Py_ssize_t row = 0; row < rk + 3; row++) {
            for (Py_ssize_t i = n; i < n4; i++) {
                rows[row * RUN2 + i] = 0.0;
            }
        }
        /* V and C of the pairs of G rows and of u rows (the contraction reads no
           product of a G row with a u row in C), two b rows a call (past the block's
           end: the last again, its sums not kept) */
        for (Py_ssize_t l1 = 0; l1 < rk; l1++) {
            Py_ssize_t end = l1 < gp ? gp : rk;
            for (Py_ssize_t l2 = l1; l2 < end; l2 += 2) {
                const double *bs[2] = {rows + l2 * RUN2,
                                       rows + (l2 + 1 < end ? l2 + 1 : l2) * RUN2};
                double eight[8];
                pair_sums(rows + l1 * RUN2, bs, sp, n4, eight);
                for (Py_ssize_t j = 0; j < 2 && l2 + j < end; j++) {
                    Py_ssize_t at = l1 * rk + l2 + j;
                    tv[at] += eight[4 * j];
                    for (Py_ssize_t t = 0; t < 3; t++) {
                        tc[t * rk * rk + at] += eight[4 * j + 1 + t];
                    }
                }
            }
        }
        /* V of the G rows against the u rows */
        for (Py_ssize_t a = 0; a < 2; a++) {
            for (Py_ssize_t l2 = 0; l2 < gp; l2 += WIDTH) {
                const double *bs[WIDTH];
                double four[WIDTH];
                for (Py_ssize_t j = 0; j < WIDTH; j++) {
                    bs[j] = rows + (l2 + j < gp ? l2 + j : l2) * RUN2;
                }
                dots4(rows + (gp + a) * RUN2, NULL, bs, n4, four);
                for (Py_ssize_t j = 0; j < WIDTH && l2 + j < gp; j++) {
                    tv[(l2 + j) * rk + gp + a] += four[j];
                }
            }
        }
        row_products(sp, 3, RUN2, NULL, n4, part, 3);
        for (Py_ssize_t j = 0; j < 9; j++) {
            ta[j] += part[j];
        }
    }
    /* into the stored sums' upper triangles, where dmixed.kernels.jit adds them (V and
       C symmetric under a x <-> d y: a pair of rows whose order v_row turns is added
       where the other order lies) */
    for (Py_ssize_t t = 0; t < 3; t++) {
        for (Py_ssize_t t2 = t; t2 < 3; t2++) {
            out_a[t * 3 + t2] += ta[t * 3 + t2];
        }
    }
    for (Py_ssize_t l1 = 0; l1 < rk; l1++) {
        for (Py_ssize_t l2 = l1; l2 < rk; l2++) {
            Py_ssize_t i = v_row(l1, k), j = v_row(l2, k);
            if (i > j) {
                Py_ssize_t swap = i;
                i = j;
                j = swap;
            }
            Py_ssize_t at = l1 * rk + l2;
            out_v[i * rk + j] += tv[at];
            if ((l1 < gp) == (l2 < gp)) {
                for (Py_ssize_t t = 0; t < 3; t++) {
                    out_c[(i * 3 + t) * rk + j] += tc[t * rk * rk + at];
                }
            }
        }
    }
}

PyDoc_STRVAR(moments_r2_doc,
"moments_r2(zz, zxy, k, g, b, det_b, w, a, v, c, blup, cov, cov_width)\n\n"
"Add the Hessian moments A (3, 3), V (2k, 2k) and C (2k * 3, 2k) of\n"
"dmixed.kernels.hessian_moments over the g groups of zz (2, 2, g) and zxy (2, k, g),\n"
"at B = Lambda Lambda' (b, 4 numbers) with det(B) = det_b and w = [-beta; 1] (k), into\n"
"a, v and c: the entries dmixed.kernels.jit.hessian_moments adds (the upper\n"
"triangles of A and V; of C those with a x <= d y, x and y both p or both below it).\n"
"Unless blup is None (then cov too), also each group's BLUP B u_i into blup (g, 2) and\n"
"P_i into cov (g, cov_width): its upper triangle (cov_width 3) or all of it (4).");

static PyObject *
moments_r2(PyObject *self, PyObject *args)
{
    PyObject *o[9], *ob, *oc;
    Py_ssize_t k, g, cov_width;
    double det_b;
    if (!PyArg_ParseTuple(args, "OOnnOdOOOOOOn", &o[0], &o[1], &k, &g, &o[2], &det_b, &o[3],
                          &o[4], &o[5], &o[6], &ob, &oc, &cov_width)) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    int with_blups = ob != Py_None;
    if (with_blups != (oc != Py_None) || (with_blups && cov_width != 3 && cov_width != 4)) {
        PyErr_Format(PyExc_ValueError,
                     "blup and cov: both None or both buffers with cov_width 3 or 4, got"
                     " cov_width=%zd",
                     cov_width);
        return NULL;
    }
    Py_ssize_t rk = 2 * k;
    int n = 7;
    if (with_blups) {
        o[7] = ob;
        o[8] = oc;
        n = 9;
    }
    Py_buffer v[9];
    const char *names[9] = {"zz", "zxy", "b", "w", "a", "v", "c", "blup", "cov"};
    Py_ssize_t sizes[9] = {4 * g, 2 * k * g, 4, k, 9, rk * rk, 3 * rk * rk, 2 * g,
                           cov_width * g};
    int writes[9] = {0, 0, 0, 0, 1, 1, 1, 1, 1};
    if (take_all(o, v, n, names, sizes, writes) != 0) {
        return NULL;
    }
    double *work = PyMem_Malloc(sizeof(double) *
                                ((rk + 10) * RUN2 + 4 * rk * rk + 18));
    if (work == NULL) {
        release(v, n);
        return PyErr_NoMemory();
    }
    const double *zz = v[0].buf, *zxy = v[1].buf, *b = v[2].buf, *w = v[3].buf;
    double *out_a = v[4].buf, *out_v = v[5].buf, *out_c = v[6].buf;
    double *blup = with_blups ? v[7].buf : NULL, *cov = with_blups ? v[8].buf : NULL;
    Py_BEGIN_ALLOW_THREADS
    moments_pass(zz, zxy, k, g, b, det_b, w, out_a, out_v, out_c, blup, cov, cov_width, work);
    Py_END_ALLOW_THREADS
    PyMem_Free(work);
    release(v, n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(gathered_sums_doc,
"gathered_sums(flat, index, width, sums) -> None\n\n"
"Into sums (float64, n_rows) the sum of each row of flat's entries at index (int64,\n"
"C-contiguous, n_rows x width), added as numpy adds a row of flat.take(index) (its\n"
"pairwise summation): dmixed.kernels.hessian_moments.full_sums' gather without the\n"
"n_rows x width array.  flat float64 C-contiguous; a position outside it is refused.");

/* the widest rows gathered_sums takes (the module's MAX_GATHER_WIDTH) */
#define MAX_GATHER_WIDTH 4096

static PyObject *
gathered_sums(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OOnO", &o[0], &o[1], &width, &o[2])) {
        return NULL;
    }
    if (width < 1 || width > MAX_GATHER_WIDTH) {
        PyErr_Format(PyExc_ValueError, "width must be in [1, %d], got %zd", MAX_GATHER_WIDTH,
                     width);
        return NULL;
    }
    Py_buffer v[3];
    int taken = 0;
    PyObject *result = NULL;
    const char *names[3] = {"flat", "index", "sums"};
    for (int i = 0; i < 3; i++, taken++) {
        if (take_any(o[i], &v[i], i == 2, i == 1, names[i]) != 0) {
            goto done;
        }
    }
    {
        Py_ssize_t total = v[0].len / 8, n_rows = v[2].len / 8;
        if (v[1].len != n_rows * width * 8) {
            PyErr_Format(PyExc_ValueError, "index: %zd x %zd positions needed, got %zd",
                         n_rows, width, v[1].len / 8);
            goto done;
        }
        double *row = PyMem_Malloc(sizeof(double) * width);
        if (row == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        const double *flat = v[0].buf;
        const int64_t *index = v[1].buf;
        double *sums = v[2].buf;
        int bad;
        Py_BEGIN_ALLOW_THREADS
        bad = gather_sums(index, n_rows, width, flat, total, NULL, 0, NULL, 0, 0, row, sums);
        Py_END_ALLOW_THREADS
        PyMem_Free(row);
        if (bad) {
            PyErr_Format(PyExc_ValueError, "index: a position outside [0, %zd)", total);
            goto done;
        }
        result = Py_None;
        Py_INCREF(result);
    }
done:
    release(v, taken);
    return result;
}

/* dense1_step's sums (its docstring) of the g groups of u and f at b into h, s_i and
   sums; returns the sum of log d_i.  Each group's values with _chunk_step's operations
   (d = b u + 1, 1/d, b/d, (1/u)/d, u/d, F/d); the sums over the groups in group order,
   the upper triangles made and mirrored. */
static double
dense1_pass(const double *u, const double *f, const double *inv_u, Py_ssize_t k, Py_ssize_t g,
            double b, double *h, double *s_i, double *sums, double *acc)
{
    Py_ssize_t t = k * (k + 1) / 2;
    double *am = acc, *ab = acc + t, *ag = acc + 2 * t;
    for (Py_ssize_t j = 0; j < 3 * t; j++) {
        acc[j] = 0.0;
    }
    double logdet = 0.0, s = 0.0, product = 1.0;
    long exponent = 0;
    double fx[64];
    for (Py_ssize_t i = 0; i < g; i++) {
        double d = b * u[i];
        d += 1.0;
        double r = 1.0 / d;
        double p = b * r, q = inv_u[i] * r, si = u[i] * r;
        s_i[i] = si;
        s += si;
        /* as first_pass: the log of the product, its exponent taken apart */
        if (d >= 0x1p-400 && d <= 0x1p400) {
            product *= d;
            if (product > 0x1p500 || product < 0x1p-500) {
                int e;
                product = frexp(product, &e);
                exponent += e;
            }
        }
        else {
            logdet += log(d);
        }
        for (Py_ssize_t x = 0; x < k; x++) {
            fx[x] = f[x * g + i];
            h[x * g + i] = fx[x] * r;
        }
        Py_ssize_t at = 0;
        for (Py_ssize_t x = 0; x < k; x++) {
            double px = p * fx[x], qx = q * fx[x], hx = fx[x] * r;
            for (Py_ssize_t y = x; y < k; y++, at++) {
                am[at] += fx[y] * px;
                ab[at] += fx[y] * qx;
                ag[at] += hx * (fx[y] * r);
            }
        }
    }
    logdet += log(product) + (double)exponent * 0.69314718055994530942;
    sums[0] = s;
    Py_ssize_t at = 0;
    for (Py_ssize_t x = 0; x < k; x++) {
        for (Py_ssize_t y = x; y < k; y++, at++) {
            for (int j = 0; j < 3; j++) {
                double v = acc[j * t + at];
                sums[1 + j * k * k + x * k + y] = v;
                sums[1 + j * k * k + y * k + x] = v;
            }
        }
    }
    return logdet;
}

PyDoc_STRVAR(dense1_step_doc,
"dense1_step(u, f, inv_u, k, g, b, h, s_i, sums) -> float\n\n"
"For u (g), f (k, g) and inv_u (g) of dmixed.kernels.dense1 at b = lambda^2:\n"
"d_i = b u_i + 1, into h (k, g) the rows F_i / d_i, into s_i (g) u_i / d_i, and into\n"
"sums (1 + 3 k k) the sum of s_i, then the k x k sums of (b/d_i) F_i F_i',\n"
"(inv_u_i/d_i) F_i F_i' and h_i h_i' (each exactly symmetric); returns the sum of\n"
"log d_i.");

static PyObject *
dense1_step(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t k, g;
    double b;
    if (!PyArg_ParseTuple(args, "OOOnndOOO", &o[0], &o[1], &o[2], &k, &g, &b, &o[3], &o[4],
                          &o[5])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_buffer v[6];
    const char *names[6] = {"u", "f", "inv_u", "h", "s_i", "sums"};
    Py_ssize_t sizes[6] = {g, k * g, g, k * g, g, 1 + 3 * k * k};
    int writes[6] = {0, 0, 0, 1, 1, 1};
    if (take_all(o, v, 6, names, sizes, writes) != 0) {
        return NULL;
    }
    double acc[3 * 64 * 65 / 2];
    double logdet;
    Py_BEGIN_ALLOW_THREADS
    logdet = dense1_pass(v[0].buf, v[1].buf, v[2].buf, k, g, b, v[3].buf, v[4].buf, v[5].buf,
                         acc);
    Py_END_ALLOW_THREADS
    release(v, 6);
    return PyFloat_FromDouble(logdet);
}

/* within_sums' pass (its docstring): the products of the rows' residuals about their
   group's centre, accumulated over the upper triangle in row order with each addition's
   rounding error carried (Neumaier): where y is nearly linear within the groups these
   sums are all of Q, and a plain running sum (n roundings in one chain) resolves them
   worse than BLAS's blocked product; the compensated sum is within about one rounding
   of the exact sum of the rounded products; 1 on a code outside [0, n_groups), else 0. */
static int
within_pass(const int64_t *codes, Py_ssize_t n, Py_ssize_t n_groups, const Py_buffer *cols,
            Py_ssize_t k, const double *centres, double *out)
{
    double acc[64 * 65 / 2] = {0.0}, comp[64 * 65 / 2] = {0.0};
    double r[64];
    const char *x[64];
    Py_ssize_t sx[64];
    for (Py_ssize_t j = 0; j < k; j++) {
        x[j] = cols[j].buf;
        sx[j] = cols[j].strides[0];
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t g = codes[i];
        if (g < 0 || g >= n_groups) {
            return 1;
        }
        for (Py_ssize_t j = 0; j < k; j++) {
            r[j] = *(const double *)(x[j] + i * sx[j]) - centres[j * n_groups + g];
        }
        Py_ssize_t at = 0;
        for (Py_ssize_t a = 0; a < k; a++) {
            for (Py_ssize_t b = a; b < k; b++, at++) {
                /* Neumaier's compensated sum: the error of each addition kept */
                double term = r[a] * r[b], sum = acc[at] + term;
                comp[at] += fabs(acc[at]) >= fabs(term) ? (acc[at] - sum) + term
                                                        : (term - sum) + acc[at];
                acc[at] = sum;
            }
        }
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t a = 0; a < k; a++) {
        for (Py_ssize_t b = a; b < k; b++, at++) {
            out[a * k + b] = acc[at] + comp[at];
            out[b * k + a] = acc[at] + comp[at];
        }
    }
    return 0;
}

PyDoc_STRVAR(within_sums_doc,
"within_sums(codes, columns, centres, n_groups, out)\n\n"
"The within-group cross-products of unweighted rows in one pass: codes (n,) int64 in\n"
"[0, n_groups), columns a sequence of k <= 64 (n,) float64 buffers (any stride),\n"
"centres (k, n_groups) float64 each group's mean in the rows' units; into out (k, k)\n"
"the sums over the rows of r_a r_b, r_j = columns[j] - centres[j, code] (the\n"
"residuals of rows._Within.within, the same subtraction), added in row order with\n"
"compensation (Neumaier) and mirrored (exactly symmetric).");

static PyObject *
within_sums(PyObject *self, PyObject *args)
{
    PyObject *codes_obj, *columns_obj, *centres_obj, *out_obj;
    Py_ssize_t n_groups;
    if (!PyArg_ParseTuple(args, "OOOnO", &codes_obj, &columns_obj, &centres_obj, &n_groups,
                          &out_obj)) {
        return NULL;
    }
    PyObject *columns = PySequence_Fast(columns_obj, "columns: a sequence is needed");
    if (columns == NULL) {
        return NULL;
    }
    Py_ssize_t k = PySequence_Fast_GET_SIZE(columns);
    if (k < 1 || k > 64) {
        PyErr_Format(PyExc_ValueError, "columns: 1 to 64 are needed; got %zd", k);
        Py_DECREF(columns);
        return NULL;
    }
    if (n_groups < 0 || n_groups > PY_SSIZE_T_MAX / (8 * 64)) {
        PyErr_Format(PyExc_ValueError, "n_groups: 0 to %zd are allowed; got %zd",
                     PY_SSIZE_T_MAX / (8 * 64), n_groups);
        Py_DECREF(columns);
        return NULL;
    }
    Py_buffer codes_view, cols[64], views[2];
    Py_ssize_t taken = 0, n = 0;
    int ok = 0, bad = 0;
    if (take_codes(codes_obj, &codes_view) != 0) {
        goto done;
    }
    n = codes_view.len / 8;
    if (take_columns(columns, cols, k, n, &taken) != 0) {
        goto done;
    }
    {
        PyObject *o[2] = {centres_obj, out_obj};
        const char *names[2] = {"centres", "out"};
        Py_ssize_t sizes[2] = {k * n_groups, k * k};
        int writes[2] = {0, 1};
        if (take_all(o, views, 2, names, sizes, writes) != 0) {
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    bad = within_pass(codes_view.buf, n, n_groups, cols, k, views[0].buf, views[1].buf);
    Py_END_ALLOW_THREADS
    release(views, 2);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "codes: a code outside [0, n_groups)");
    }
    else {
        ok = 1;
    }
done:
    for (Py_ssize_t j = 0; j < taken; j++) {
        PyBuffer_Release(&cols[j]);
    }
    if (codes_view.obj != NULL) {
        PyBuffer_Release(&codes_view);
    }
    Py_DECREF(columns);
    if (!ok) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"within_sums", within_sums, METH_VARARGS, within_sums_doc},
    {"dense1_step", dense1_step, METH_VARARGS, dense1_step_doc},
    {"dense2_first", dense2_first, METH_VARARGS, dense2_first_doc},
    {"dense2_residual", dense2_residual, METH_VARARGS, dense2_residual_doc},
    {"dense2_gram", dense2_gram, METH_VARARGS, dense2_gram_doc},
    {"dense2_moment_c", dense2_moment_c, METH_VARARGS, dense2_moment_c_doc},
    {"term_sums", term_sums, METH_VARARGS, term_sums_doc},
    {"constant_within", constant_within, METH_VARARGS, constant_within_doc},
    {"profiled_hessian", profiled_hessian, METH_VARARGS, profiled_hessian_doc},
    {"gathered_sums", gathered_sums, METH_VARARGS, gathered_sums_doc},
    {"lean_evaluate", lean_evaluate, METH_VARARGS, lean_evaluate_doc},
    {"block_terms", block_terms, METH_VARARGS, block_terms_doc},
    {"moments_r2", moments_r2, METH_VARARGS, moments_r2_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "dmixed.kernels.c_sums",
    "The per-group sums of dmixed.kernels.dense2 in C (dmixed.kernels.native loads it).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* the entry points' arguments as this file defines them: dmixed.kernels.native.VERSION
   must say the same, or the module is not used (an editable install keeps the library it
   built from an older file until it is rebuilt) */
#define C_SUMS_VERSION 11

PyMODINIT_FUNC
PyInit_c_sums(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "VERSION", C_SUMS_VERSION) < 0 ||
                      PyModule_AddIntConstant(m, "MAX_GATHER_WIDTH", MAX_GATHER_WIDTH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
