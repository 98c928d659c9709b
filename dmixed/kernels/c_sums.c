/*
 * The per-group sums of dmixed.kernels.dense2 (two random-effect coordinates) in one
 * loop over the groups per call, and the per-group term sums of
 * dmixed.kernels.rows.plain_statistics in one pass over the rows.
 *
 * The arrays are those of the numpy reference (dmixed/kernels/dense2.py), entry-major:
 * an entry's values over the G groups of a chunk lie together (C order, float64).  They
 * come through the buffer protocol, with their sizes as integers; each function checks
 * that every buffer is C-contiguous float64 of the size the integers give (the rows'
 * columns of term_sums: 1-d float64 of any stride), and fills the output buffers the
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
#include <math.h>
#include <stdint.h>
#include <string.h>

/* A float64 C-contiguous buffer of exactly n numbers, or an exception naming it. */
static int
take(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t n, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        return -1;
    }
    const char *fmt = view->format;
    if (fmt != NULL && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@')) {
        fmt++;
    }
    if (view->itemsize != 8 || fmt == NULL || fmt[0] != 'd' || fmt[1] != '\0') {
        PyErr_Format(PyExc_TypeError, "%s: a float64 buffer is needed, got format %s", name,
                     view->format == NULL ? "B" : view->format);
        PyBuffer_Release(view);
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
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    const double *f0 = zxy, *f1 = zxy + k * g;
    double logdet = 0.0;
    Py_BEGIN_ALLOW_THREADS
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
    if (PyObject_GetBuffer(codes_obj, &codes_view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        codes_view.obj = NULL;
        goto done;
    }
    {
        const char *f = codes_view.format;
        if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) {
            f++;
        }
        if (codes_view.itemsize != 8 || f == NULL || (strcmp(f, "q") != 0 && strcmp(f, "l") != 0)) {
            PyErr_SetString(PyExc_TypeError, "codes: an int64 buffer is needed");
            goto done;
        }
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
    for (; taken < n_cols; taken++) {
        Py_buffer *c = &cols[taken];
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(columns, taken), c,
                               PyBUF_STRIDES | PyBUF_FORMAT) != 0) {
            goto done;
        }
        const char *f = c->format;
        if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) {
            f++;
        }
        if (c->ndim != 1 || c->shape[0] != n || c->itemsize != 8 || f == NULL ||
            strcmp(f, "d") != 0) {
            PyErr_Format(PyExc_ValueError,
                         "columns[%zd]: a 1-d float64 buffer of %zd numbers is needed", taken,
                         n);
            taken++;
            goto done;
        }
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

static PyMethodDef methods[] = {
    {"dense2_first", dense2_first, METH_VARARGS, dense2_first_doc},
    {"dense2_residual", dense2_residual, METH_VARARGS, dense2_residual_doc},
    {"dense2_gram", dense2_gram, METH_VARARGS, dense2_gram_doc},
    {"dense2_moment_c", dense2_moment_c, METH_VARARGS, dense2_moment_c_doc},
    {"term_sums", term_sums, METH_VARARGS, term_sums_doc},
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
#define C_SUMS_VERSION 1

PyMODINIT_FUNC
PyInit_c_sums(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "VERSION", C_SUMS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
