/*
 * The per-group sums of dmixed.kernels.dense2 (two random-effect coordinates) in one
 * loop over the groups per call.
 *
 * The arrays are those of the numpy reference (dmixed/kernels/dense2.py), entry-major:
 * an entry's values over the G groups of a chunk lie together (C order, float64).  They
 * come through the buffer protocol, with their sizes as integers; each function checks
 * that every buffer is C-contiguous float64 of the size the integers give, and fills
 * the output buffers the caller made.  No numpy C API: the module builds against the
 * Python headers alone, and dmixed.kernels.native says whether it loaded.
 *
 * The construction's rows are the reference's bit for bit (the same operations on each
 * entry, with no contraction to fused multiply-adds: setup.py compiles with
 * -ffp-contract=off); the sums over groups are added in another order than BLAS adds
 * them, so they agree with the reference to rounding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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

static int
check_sizes(Py_ssize_t k, Py_ssize_t g)
{
    if (k < 1 || g < 0 || k > 64) {
        PyErr_Format(PyExc_ValueError, "k must be in [1, 64] and g >= 0, got k=%zd, g=%zd",
                     k, g);
        return -1;
    }
    return 0;
}

/* The lanes of the sums over groups: LANES partial sums, each the sum of every LANES-th
   term, added pairwise at the end.  Each lane's order is fixed (no reassociation), so a
   compiler vectorizes the lanes with the baseline instruction set, and enough of them
   hide the adds' latency. */
#define LANES 16

/* Where the compiler and loader can pick a function's version at load time (GNU ifunc),
   the sums over groups also come in an AVX2 version (4 lanes an instruction against
   SSE2's 2; no fused multiply-add, as -ffp-contract=off asks), chosen on CPUs that
   have it. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define WIDE __attribute__((target_clones("avx2", "default")))
#else
#define WIDE
#endif

static double
fold(double *acc)
{
    for (int width = LANES / 2; width > 0; width /= 2) {
        for (int j = 0; j < width; j++) {
            acc[j] += acc[j + width];
        }
    }
    return acc[0];
}

/* Σ_i a_i b_i over n terms. */
WIDE static double
dot(const double *a, const double *b, Py_ssize_t n)
{
    double acc[LANES] = {0.0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int j = 0; j < LANES; j++) {
            acc[j] += a[i + j] * b[i + j];
        }
    }
    for (; i < n; i++) {
        acc[0] += a[i] * b[i];
    }
    return fold(acc);
}

/* Σ_i a_i s_i b_i, the product a_i s_i made first (as numpy's rows v S are). */
WIDE static double
dot3(const double *a, const double *s, const double *b, Py_ssize_t n)
{
    double acc[LANES] = {0.0};
    Py_ssize_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int j = 0; j < LANES; j++) {
            acc[j] += (a[i + j] * s[i + j]) * b[i + j];
        }
    }
    for (; i < n; i++) {
        acc[0] += (a[i] * s[i]) * b[i];
    }
    return fold(acc);
}

PyDoc_STRVAR(dense2_fill_doc,
"dense2_fill(zz, zxy, k, g, rows, fa)\n\n"
"The fixed rows of _Dense2Chunk: rows (5 + 4 k(k+1)/2, g) = [1, u00, u01, u11, det(U)]\n"
"over the upper triangles of T0..T3, fa (4, k, g) = [F0; F1; adj(U)F], from zz (2, 2, g)\n"
"and zxy (2, k, g).");

static PyObject *
dense2_fill(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t k, g;
    if (!PyArg_ParseTuple(args, "OOnnOO", &o[0], &o[1], &k, &g, &o[2], &o[3])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t t = k * (k + 1) / 2;
    Py_buffer v[4];
    if (take(o[0], &v[0], 0, 4 * g, "zz") != 0) {
        return NULL;
    }
    if (take(o[1], &v[1], 0, 2 * k * g, "zxy") != 0) {
        release(v, 1);
        return NULL;
    }
    if (take(o[2], &v[2], 1, (5 + 4 * t) * g, "rows") != 0) {
        release(v, 2);
        return NULL;
    }
    if (take(o[3], &v[3], 1, 4 * k * g, "fa") != 0) {
        release(v, 3);
        return NULL;
    }
    const double *zz = v[0].buf, *zxy = v[1].buf;
    double *rows = v[2].buf, *fa = v[3].buf;
    const double *u00 = zz, *u01 = zz + g, *u11 = zz + 3 * g;
    const double *f0 = zxy, *f1 = zxy + k * g;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < g; i++) {
        double det = u00[i] * u11[i] - u01[i] * u01[i];
        rows[i] = 1.0;
        rows[g + i] = u00[i];
        rows[2 * g + i] = u01[i];
        rows[3 * g + i] = u11[i];
        rows[4 * g + i] = det < 0.0 ? 0.0 : det; /* as np.maximum(det, 0): nan stays */
    }
    for (Py_ssize_t x = 0; x < k; x++) {
        const double *a0 = f0 + x * g, *a1 = f1 + x * g;
        double *h0 = fa + x * g, *h1 = fa + (k + x) * g;
        double *h2 = fa + (2 * k + x) * g, *h3 = fa + (3 * k + x) * g;
        for (Py_ssize_t i = 0; i < g; i++) {
            h0[i] = a0[i];
            h1[i] = a1[i];
            h2[i] = u11[i] * a0[i] - u01[i] * a1[i];
            h3[i] = u00[i] * a1[i] - u01[i] * a0[i];
        }
    }
    double *t0 = rows + 5 * g, *t1 = t0 + t * g, *t2 = t1 + t * g, *t3 = t2 + t * g;
    Py_ssize_t at = 0;
    for (Py_ssize_t x = 0; x < k; x++) {
        for (Py_ssize_t y = x; y < k; y++, at++) {
            const double *r0 = f0 + x * g, *r1 = f1 + x * g;
            const double *c0 = f0 + y * g, *c1 = f1 + y * g;
            double *o0 = t0 + at * g, *o1 = t1 + at * g, *o2 = t2 + at * g, *o3 = t3 + at * g;
            for (Py_ssize_t i = 0; i < g; i++) {
                double a = r0[i] * c0[i];
                double b = r0[i] * c1[i] + r1[i] * c0[i];
                double c = r1[i] * c1[i];
                o0[i] = a;
                o1[i] = b;
                o2[i] = c;
                o3[i] = u11[i] * a - u01[i] * b + u00[i] * c;
            }
        }
    }
    Py_END_ALLOW_THREADS
    release(v, 4);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dense2_first_doc,
"dense2_first(rows, k, g, c0, c1, c2, c3, c4, inv_d, sums) -> float\n\n"
"d_i = c0 + c1 u00 + c2 u01 + c3 u11 + c4 det(U) over the rows (5 + 4 k(k+1)/2, g) of\n"
"dense2_fill: fills inv_d (g) with 1/d_i and sums (5 + 4 k(k+1)/2) with the rows' sums\n"
"weighted by 1/d_i; returns the sum of log d_i.");

static PyObject *
dense2_first(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    Py_ssize_t k, g;
    double c[5];
    if (!PyArg_ParseTuple(args, "OnndddddOO", &o[0], &k, &g, &c[0], &c[1], &c[2], &c[3],
                          &c[4], &o[1], &o[2])) {
        return NULL;
    }
    if (check_sizes(k, g) != 0) {
        return NULL;
    }
    Py_ssize_t n = 5 + 2 * k * (k + 1);
    Py_buffer v[3];
    if (take(o[0], &v[0], 0, n * g, "rows") != 0) {
        return NULL;
    }
    if (take(o[1], &v[1], 1, g, "inv_d") != 0) {
        release(v, 1);
        return NULL;
    }
    if (take(o[2], &v[2], 1, n, "sums") != 0) {
        release(v, 2);
        return NULL;
    }
    const double *rows = v[0].buf;
    double *inv_d = v[1].buf, *sums = v[2].buf;
    double logdet = 0.0;
    Py_BEGIN_ALLOW_THREADS
    const double *u00 = rows + g, *u01 = rows + 2 * g, *u11 = rows + 3 * g, *du = rows + 4 * g;
    for (Py_ssize_t i = 0; i < g; i++) {
        double d = c[0] + c[1] * u00[i] + c[2] * u01[i] + c[3] * u11[i] + c[4] * du[i];
        inv_d[i] = 1.0 / d;
        logdet += log(d);
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        sums[j] = dot(rows + j * g, inv_d, g);
    }
    Py_END_ALLOW_THREADS
    release(v, 3);
    return PyFloat_FromDouble(logdet);
}

PyDoc_STRVAR(dense2_residual_doc,
"dense2_residual(fa, rows, inv_d, k, g, b00, b01, b11, w, out, va)\n\n"
"The rows [v; S pairs] (2 k + 3, g) of Dense2Step.rows into out, at B's entries and\n"
"w = [-beta; 1] (k): H = (F + adj(B) adj(U) F)/d from fa (4, k, g), S's pairs from\n"
"the first five rows of dense2_fill, u = H w in place of y's column; and va\n"
"(2 k + 3, 2 k + 3), the products of out's rows.");

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
    const char *names[6] = {"fa", "rows", "inv_d", "w", "out", "va"};
    Py_ssize_t sizes[6] = {4 * k * g, (5 + 2 * k * (k + 1)) * g, g, k, n * g, n * n};
    int writes[6] = {0, 0, 0, 0, 1, 1};
    for (int i = 0; i < 6; i++) {
        if (take(o[i], &v[i], writes[i], sizes[i], names[i]) != 0) {
            release(v, i);
            return NULL;
        }
    }
    const double *fa = v[0].buf, *urow = v[1].buf, *inv_d = v[2].buf, *w = v[3].buf;
    double *out = v[4].buf, *va = v[5].buf;
    Py_BEGIN_ALLOW_THREADS
    const double *u00 = urow + g, *u01 = urow + 2 * g, *u11 = urow + 3 * g;
    const double *du = urow + 4 * g;
    double *s00 = out + 2 * k * g, *s01 = s00 + g, *s11 = s01 + g;
    for (Py_ssize_t i = 0; i < g; i++) {
        s00[i] = (u00[i] + b11 * du[i]) * inv_d[i];
        s01[i] = (u01[i] - b01 * du[i]) * inv_d[i];
        s11[i] = (u11[i] + b00 * du[i]) * inv_d[i];
    }
    /* H[0] = (F0 + b11 adj(U)F[0] - b01 adj(U)F[1]) / d, H[1] = (F1 - b01 .. + b00 ..) / d */
    for (Py_ssize_t x = 0; x < k; x++) {
        const double *a0 = fa + x * g, *a1 = fa + (k + x) * g;
        const double *a2 = fa + (2 * k + x) * g, *a3 = fa + (3 * k + x) * g;
        double *h0 = out + x * g, *h1 = out + (k + x) * g;
        for (Py_ssize_t i = 0; i < g; i++) {
            h0[i] = (a0[i] + b11 * a2[i] - b01 * a3[i]) * inv_d[i];
            h1[i] = (a1[i] - b01 * a2[i] + b00 * a3[i]) * inv_d[i];
        }
    }
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
    for (Py_ssize_t a = 0; a < n; a++) {
        for (Py_ssize_t b = 0; b <= a; b++) {
            double s = dot(out + a * g, out + b * g, g);
            va[a * n + b] = s;
            va[b * n + a] = s;
        }
    }
    Py_END_ALLOW_THREADS
    release(v, 6);
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
    for (Py_ssize_t bc = 0; bc < 3; bc++) {
        const double *s = rows + (rk + bc) * g;
        for (Py_ssize_t ax = 0; ax < rk; ax++) {
            for (Py_ssize_t dy = 0; dy <= ax; dy++) {
                double sum = dot3(rows + ax * g, s, rows + dy * g, g);
                c[(3 * ax + bc) * rk + dy] = sum;
                c[(3 * dy + bc) * rk + ax] = sum;
            }
        }
    }
    Py_END_ALLOW_THREADS
    release(v, 2);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dense2_fill", dense2_fill, METH_VARARGS, dense2_fill_doc},
    {"dense2_first", dense2_first, METH_VARARGS, dense2_first_doc},
    {"dense2_residual", dense2_residual, METH_VARARGS, dense2_residual_doc},
    {"dense2_moment_c", dense2_moment_c, METH_VARARGS, dense2_moment_c_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "dmixed.kernels._native",
    "The per-group sums of dmixed.kernels.dense2 in C (dmixed.kernels.native loads it).",
    -1,
    methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&module);
}
