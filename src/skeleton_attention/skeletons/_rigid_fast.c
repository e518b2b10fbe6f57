/*
 * Optional compiled candidate fits of the multi-view alignment (see rigid_batch.py).
 *
 * ``score(sizes, view, view_ok, ref, ref_ok, positions, counts, costs, rot, t, rigid, min_points,
 * iterations, delta, tol, time_scale)`` is what the offset search calls: for each of K candidates
 * (a row of fractional view frames ``positions``, one per reference frame) it interpolates the
 * view as alignment_search.resample_frames does (same operations, same order: the same values),
 * gathers the joints present in both the view and the reference, fits them with the loop below
 * and returns their count, the mean Geman-McClure cost and the transform. No (M, K, F, V, 3)
 * array is built.
 *
 * ``irls(K, N, x, mask, cp, cq, rot, tc, res, iterations, delta, tol)`` runs, for each of K candidates
 * independently, what ``rigid_batch.batched_robust_fit`` runs for all of them at once with numpy:
 *
 *   one weighted Kabsch fit with the mask as weights, the residuals, then up to ``iterations``
 *   reweighting steps with weights mask / max(r, delta); a candidate stops after the step in
 *   which its rotation and translation (in the original coordinates, t = tc + cq - R cp) moved
 *   less than ``tol`` (largest absolute entry of each, summed), and keeps that step's fit.
 *
 * Inputs (C-contiguous float64 buffers): ``x`` (K, 7, N) the centred points [p; 1; q], ``mask``
 * (K, N) 0/1, ``cp`` and ``cq`` (K, 3) the centres. Outputs, written in place: ``rot`` (K, 3, 3),
 * ``tc`` (K, 3) the translation between the centred sets, ``res`` (K, N) the distances
 * |R p + tc - q| of every point.
 *
 * The rotation maximising trace(R H) over proper rotations, H = sum w (p - mp)(q - mq)^T, is
 * found with Horn's unit quaternion (the eigenvector of the largest eigenvalue of a symmetric
 * 4x4 matrix built from H, here by cyclic Jacobi rotations) instead of numpy's SVD with a sign
 * correction. Both give the same rotation; the floating-point sums are in a different order, so
 * results agree with the numpy path to about 1e-12, not bit for bit
 * (tests/test_rigid_fast.py).
 *
 * Why: each numpy call of the batched fit works on a few thousand numbers, so the search was
 * dominated by call overhead (docs/performance.md section 3). CPython C API only; the GIL is
 * released while fitting.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <string.h>

#define JACOBI_SWEEPS 60

/* The largest eigenvalue's unit eigenvector of the symmetric 4x4 matrix a (destroyed). */
static void top_eigenvector(double a[4][4], double out[4]) {
    double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int i = 0; i < 4; i++) {
            diag += a[i][i] * a[i][i];
            for (int j = i + 1; j < 4; j++) off += a[i][j] * a[i][j];
        }
        if (off <= 1e-34 * diag || off == 0.0) break;
        for (int p = 0; p < 3; p++) {
            for (int q = p + 1; q < 4; q++) {
                double apq = a[p][q];
                if (apq == 0.0) continue;
                /* the rotation that zeroes a[p][q] (smaller angle of the two) */
                double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 4; k++) { /* columns p, q of a */
                    double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 4; k++) { /* rows p, q of a */
                    double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for (int k = 0; k < 4; k++) { /* eigenvectors in the columns of v */
                    double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
        }
    }
    int best = 0;
    for (int i = 1; i < 4; i++)
        if (a[i][i] > a[best][best]) best = i;
    double norm = 0.0;
    for (int k = 0; k < 4; k++) norm += v[k][best] * v[k][best];
    norm = sqrt(norm);
    for (int k = 0; k < 4; k++) out[k] = v[k][best] / norm;
}

/* Rotation (row-major 3x3) and centred translation from the weighted sums over the points:
 * s[0] = sum w, sp[i] = sum w p_i, sq[j] = sum w q_j, spq[i][j] = sum w p_i q_j. */
static void kabsch_from_sums(double sw, const double sp[3], const double sq[3], double spq[3][3], double rot[9],
                             double tc[3]) {
    double mp[3], mq[3], h[3][3];
    for (int i = 0; i < 3; i++) {
        mp[i] = sp[i] / sw;
        mq[i] = sq[i] / sw;
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) h[i][j] = spq[i][j] / sw - mp[i] * mq[j];
    /* Horn (1987): max over unit quaternions of q^T N q gives the rotation maximising trace(R H) */
    double n[4][4];
    n[0][0] = h[0][0] + h[1][1] + h[2][2];
    n[1][1] = h[0][0] - h[1][1] - h[2][2];
    n[2][2] = -h[0][0] + h[1][1] - h[2][2];
    n[3][3] = -h[0][0] - h[1][1] + h[2][2];
    n[0][1] = n[1][0] = h[1][2] - h[2][1];
    n[0][2] = n[2][0] = h[2][0] - h[0][2];
    n[0][3] = n[3][0] = h[0][1] - h[1][0];
    n[1][2] = n[2][1] = h[0][1] + h[1][0];
    n[1][3] = n[3][1] = h[2][0] + h[0][2];
    n[2][3] = n[3][2] = h[1][2] + h[2][1];
    double qv[4];
    top_eigenvector(n, qv);
    double w = qv[0], x = qv[1], y = qv[2], z = qv[3];
    rot[0] = w * w + x * x - y * y - z * z;
    rot[1] = 2.0 * (x * y - w * z);
    rot[2] = 2.0 * (x * z + w * y);
    rot[3] = 2.0 * (y * x + w * z);
    rot[4] = w * w - x * x + y * y - z * z;
    rot[5] = 2.0 * (y * z - w * x);
    rot[6] = 2.0 * (z * x - w * y);
    rot[7] = 2.0 * (z * y + w * x);
    rot[8] = w * w - x * x - y * y + z * z;
    for (int i = 0; i < 3; i++) tc[i] = mq[i] - (rot[3 * i] * mp[0] + rot[3 * i + 1] * mp[1] + rot[3 * i + 2] * mp[2]);
}

/* One weighted fit of one candidate: weights w (N,), points x (7, N). */
static void weighted_fit(const double *x, const double *w, Py_ssize_t n, double rot[9], double tc[3]) {
    const double *p0 = x, *p1 = x + n, *p2 = x + 2 * n, *q0 = x + 4 * n, *q1 = x + 5 * n, *q2 = x + 6 * n;
    double sw = 0.0, sp[3] = {0, 0, 0}, sq[3] = {0, 0, 0}, spq[3][3];
    memset(spq, 0, sizeof spq);
    for (Py_ssize_t i = 0; i < n; i++) {
        double wi = w[i];
        if (wi == 0.0) continue;
        double a0 = wi * p0[i], a1 = wi * p1[i], a2 = wi * p2[i];
        sw += wi;
        sp[0] += a0;
        sp[1] += a1;
        sp[2] += a2;
        sq[0] += wi * q0[i];
        sq[1] += wi * q1[i];
        sq[2] += wi * q2[i];
        spq[0][0] += a0 * q0[i];
        spq[0][1] += a0 * q1[i];
        spq[0][2] += a0 * q2[i];
        spq[1][0] += a1 * q0[i];
        spq[1][1] += a1 * q1[i];
        spq[1][2] += a1 * q2[i];
        spq[2][0] += a2 * q0[i];
        spq[2][1] += a2 * q1[i];
        spq[2][2] += a2 * q2[i];
    }
    kabsch_from_sums(sw, sp, sq, spq, rot, tc);
}

static void residuals(const double *x, Py_ssize_t n, const double rot[9], const double tc[3], double *res) {
    const double *p0 = x, *p1 = x + n, *p2 = x + 2 * n, *q0 = x + 4 * n, *q1 = x + 5 * n, *q2 = x + 6 * n;
    for (Py_ssize_t i = 0; i < n; i++) {
        double d0 = rot[0] * p0[i] + rot[1] * p1[i] + rot[2] * p2[i] + tc[0] - q0[i];
        double d1 = rot[3] * p0[i] + rot[4] * p1[i] + rot[5] * p2[i] + tc[1] - q1[i];
        double d2 = rot[6] * p0[i] + rot[7] * p1[i] + rot[8] * p2[i] + tc[2] - q2[i];
        res[i] = sqrt(d0 * d0 + d1 * d1 + d2 * d2);
    }
}

static void original_translation(const double rot[9], const double tc[3], const double cp[3], const double cq[3],
                                  double t[3]) {
    for (int i = 0; i < 3; i++) t[i] = tc[i] + cq[i] - (rot[3 * i] * cp[0] + rot[3 * i + 1] * cp[1] + rot[3 * i + 2] * cp[2]);
}

/* The whole iteratively reweighted fit of one candidate; w is scratch of N doubles. */
static void fit_candidate(const double *x, const double *mask, const double cp[3], const double cq[3], Py_ssize_t n,
                          long iterations, double delta, double tol, double rot[9], double tc[3], double *res,
                          double *w) {
    double t[3], new_rot[9], new_tc[3], new_t[3];
    weighted_fit(x, mask, n, rot, tc);
    original_translation(rot, tc, cp, cq, t);
    residuals(x, n, rot, tc, res);
    for (long it = 0; it < iterations; it++) {
        for (Py_ssize_t i = 0; i < n; i++) w[i] = mask[i] / (res[i] > delta ? res[i] : delta);
        weighted_fit(x, w, n, new_rot, new_tc);
        original_translation(new_rot, new_tc, cp, cq, new_t);
        double drot = 0.0, dt = 0.0;
        for (int i = 0; i < 9; i++) drot = fmax(drot, fabs(new_rot[i] - rot[i]));
        for (int i = 0; i < 3; i++) dt = fmax(dt, fabs(new_t[i] - t[i]));
        memcpy(rot, new_rot, sizeof new_rot);
        memcpy(tc, new_tc, sizeof new_tc);
        memcpy(t, new_t, sizeof new_t);
        residuals(x, n, rot, tc, res);
        if (drot + dt < tol) break;
    }
}

/* A C-contiguous buffer of `expected` float64 values ("d") or, with `boolean`, one-byte bools ("?"). */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, int boolean, const char *func, const char *name,
                      Py_ssize_t expected) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *format = boolean ? "?" : "d";
    Py_ssize_t itemsize = boolean ? 1 : 8;
    if (view->itemsize != itemsize || view->format == NULL || strcmp(view->format, format) != 0) {
        PyErr_Format(PyExc_TypeError, "%s: %s must hold %s values", func, name, boolean ? "bool" : "float64");
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len / itemsize != expected) {
        PyErr_Format(PyExc_ValueError, "%s: %s holds %zd values, expected %zd", func, name, view->len / itemsize,
                     expected);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *irls(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objs[7];
    Py_ssize_t k, n;
    long iterations;
    double delta, tol;
    if (!PyArg_ParseTuple(args, "nnOOOOOOOldd", &k, &n, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &objs[6], &iterations, &delta, &tol))
        return NULL;
    if (k < 0 || n < 1 || iterations < 0 || !(delta > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "irls: needs K >= 0, N >= 1, iterations >= 0 and delta > 0");
        return NULL;
    }
    static const char *names[7] = {"x", "mask", "cp", "cq", "rot", "tc", "res"};
    const Py_ssize_t sizes[7] = {k * 7 * n, k * n, k * 3, k * 3, k * 9, k * 3, k * n};
    Py_buffer views[7];
    int got = 0;
    for (; got < 7; got++)
        if (get_buffer(objs[got], &views[got], got >= 4, 0, "irls", names[got], sizes[got]) < 0) break;
    double *scratch = got == 7 ? PyMem_RawMalloc((size_t)n * sizeof(double)) : NULL;
    if (got == 7 && scratch == NULL) PyErr_NoMemory();
    if (scratch != NULL) {
        const double *x = views[0].buf, *mask = views[1].buf, *cp = views[2].buf, *cq = views[3].buf;
        double *rot = views[4].buf, *tc = views[5].buf, *res = views[6].buf;
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t c = 0; c < k; c++)
            fit_candidate(x + c * 7 * n, mask + c * n, cp + 3 * c, cq + 3 * c, n, iterations, delta, tol, rot + 9 * c,
                          tc + 3 * c, res + c * n, scratch);
        Py_END_ALLOW_THREADS;
        PyMem_RawFree(scratch);
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* Interpolate view frame `pos` like alignment_search.resample_frames: i0, i1 and the weight a of
 * frame i1; returns 0 when pos lies outside [0, T-1] (with the same 1e-6 tolerance). */
static int interpolation(double pos, Py_ssize_t num_frames, Py_ssize_t *i0, Py_ssize_t *i1, double *a) {
    const double eps = 1e-6;
    if (!(pos >= -eps && pos <= (double)(num_frames - 1) + eps)) return 0;
    double p = pos < 0.0 ? 0.0 : (pos > (double)(num_frames - 1) ? (double)(num_frames - 1) : pos);
    Py_ssize_t lo = (Py_ssize_t)floor(p + eps);
    if (lo > num_frames - 1) lo = num_frames - 1;
    double frac = p - (double)lo;
    if (frac < eps) frac = 0.0;
    *i0 = lo;
    *i1 = lo + 1 < num_frames ? lo + 1 : num_frames - 1;
    *a = frac;
    return 1;
}

typedef struct {
    Py_ssize_t bodies, view_frames, frames, joints, candidates;
    const double *view, *ref, *positions;
    const char *view_ok, *ref_ok;
    int rigid, min_points;
    long iterations;
    double delta, tol, time_scale;
} ScoreInput;

/* Scratch of one score() call, each array of `cap` = bodies * frames * joints doubles unless said. */
typedef struct {
    double *gathered; /* 7 * cap: rows p0 p1 p2 (unused) q0 q1 q2 of the points as gathered */
    double *block;    /* 7 * cap: [p - cp; 1; q - cq] with row stride n, as fit_candidate reads it */
    double *ones, *weights, *res;
} Scratch;

/* One candidate: its points (the view resampled at its positions, against the reference joints
 * both have), their count and, with at least min_points of them, the fit and the mean
 * Geman-McClure cost r^2 / (r^2 + time_scale^2) (rot, t map view coordinates to the reference). */
static void score_candidate(const ScoreInput *in, Py_ssize_t k, const Scratch *s, double *count, double *cost,
                            double rot[9], double t[3]) {
    Py_ssize_t cap = in->bodies * in->frames * in->joints, n = 0, V = in->joints;
    double *g = s->gathered;
    double *p0 = g, *p1 = g + cap, *p2 = g + 2 * cap, *q0 = g + 4 * cap, *q1 = g + 5 * cap, *q2 = g + 6 * cap;
    for (Py_ssize_t m = 0; m < in->bodies; m++) {
        for (Py_ssize_t f = 0; f < in->frames; f++) {
            Py_ssize_t i0, i1;
            double a;
            if (!interpolation(in->positions[k * in->frames + f], in->view_frames, &i0, &i1, &a)) continue;
            const char *ok0 = in->view_ok + (m * in->view_frames + i0) * V;
            const char *ok1 = in->view_ok + (m * in->view_frames + i1) * V;
            const char *rok = in->ref_ok + (m * in->frames + f) * V;
            const double *c0 = in->view + (m * in->view_frames + i0) * V * 3;
            const double *c1 = in->view + (m * in->view_frames + i1) * V * 3;
            const double *qf = in->ref + (m * in->frames + f) * V * 3;
            for (Py_ssize_t v = 0; v < V; v++) {
                if (!rok[v] || !ok0[v] || (a != 0.0 && !ok1[v])) continue;
                /* the same operations in the same order as resample_frames: bit-identical values */
                p0[n] = (1.0 - a) * c0[3 * v] + a * c1[3 * v];
                p1[n] = (1.0 - a) * c0[3 * v + 1] + a * c1[3 * v + 1];
                p2[n] = (1.0 - a) * c0[3 * v + 2] + a * c1[3 * v + 2];
                q0[n] = qf[3 * v];
                q1[n] = qf[3 * v + 1];
                q2[n] = qf[3 * v + 2];
                n++;
            }
        }
    }
    *count = (double)n;
    if (n < in->min_points || n < 3) return;
    double cp[3] = {0, 0, 0}, cq[3] = {0, 0, 0};
    if (in->rigid) { /* centred on the unweighted means, as batched_robust_fit */
        for (Py_ssize_t i = 0; i < n; i++) {
            cp[0] += p0[i];
            cp[1] += p1[i];
            cp[2] += p2[i];
            cq[0] += q0[i];
            cq[1] += q1[i];
            cq[2] += q2[i];
        }
        for (int d = 0; d < 3; d++) {
            cp[d] /= (double)n;
            cq[d] /= (double)n;
        }
    }
    double *y = s->block;
    for (Py_ssize_t i = 0; i < n; i++) {
        y[i] = p0[i] - cp[0];
        y[n + i] = p1[i] - cp[1];
        y[2 * n + i] = p2[i] - cp[2];
        y[3 * n + i] = 1.0;
        y[4 * n + i] = q0[i] - cq[0];
        y[5 * n + i] = q1[i] - cq[1];
        y[6 * n + i] = q2[i] - cq[2];
    }
    if (in->rigid) {
        double tc[3];
        for (Py_ssize_t i = 0; i < n; i++) s->ones[i] = 1.0;
        fit_candidate(y, s->ones, cp, cq, n, in->iterations, in->delta, in->tol, rot, tc, s->res, s->weights);
        original_translation(rot, tc, cp, cq, t);
    } else { /* body frames: the coordinates compared as they are */
        static const double eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
        const double zero[3] = {0, 0, 0};
        memcpy(rot, eye, sizeof eye);
        t[0] = t[1] = t[2] = 0.0;
        residuals(y, n, eye, zero, s->res);
    }
    double sum = 0.0, s2 = in->time_scale * in->time_scale;
    for (Py_ssize_t i = 0; i < n; i++) {
        double r2 = s->res[i] * s->res[i];
        sum += r2 / (r2 + s2);
    }
    *cost = sum / (double)n;
}

static PyObject *score(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *objs[9];
    ScoreInput in;
    if (!PyArg_ParseTuple(args, "(nnnnn)OOOOOOOOOiilddd", &in.bodies, &in.view_frames, &in.frames, &in.joints,
                          &in.candidates, &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &objs[7], &objs[8], &in.rigid, &in.min_points, &in.iterations, &in.delta, &in.tol,
                          &in.time_scale))
        return NULL;
    if (in.bodies < 1 || in.view_frames < 1 || in.frames < 1 || in.joints < 1 || in.candidates < 0 ||
        in.iterations < 0 || !(in.delta > 0.0)) {
        PyErr_SetString(PyExc_ValueError, "score: needs positive sizes, iterations >= 0 and delta > 0");
        return NULL;
    }
    Py_ssize_t M = in.bodies, T = in.view_frames, F = in.frames, V = in.joints, K = in.candidates;
    static const char *names[9] = {"view", "view_ok", "ref", "ref_ok", "positions", "counts", "costs", "rot", "t"};
    const Py_ssize_t sizes[9] = {M * T * V * 3, M * T * V, M * F * V * 3, M * F * V, K * F, K, K, K * 9, K * 3};
    const int boolean[9] = {0, 1, 0, 1, 0, 0, 0, 0, 0};
    Py_buffer views[9];
    int got = 0;
    for (; got < 9; got++)
        if (get_buffer(objs[got], &views[got], got >= 5, boolean[got], "score", names[got], sizes[got]) < 0) break;
    Py_ssize_t cap = M * F * V;
    double *scratch = got == 9 ? PyMem_RawMalloc((size_t)(cap * 17) * sizeof(double)) : NULL;
    if (got == 9 && scratch == NULL) PyErr_NoMemory();
    if (scratch != NULL) {
        in.view = views[0].buf;
        in.view_ok = views[1].buf;
        in.ref = views[2].buf;
        in.ref_ok = views[3].buf;
        in.positions = views[4].buf;
        double *counts = views[5].buf, *costs = views[6].buf, *rot = views[7].buf, *t = views[8].buf;
        Scratch work = {scratch, scratch + 7 * cap, scratch + 14 * cap, scratch + 15 * cap, scratch + 16 * cap};
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t k = 0; k < K; k++) {
            costs[k] = NAN;
            score_candidate(&in, k, &work, counts + k, costs + k, rot + 9 * k, t + 3 * k);
        }
        Py_END_ALLOW_THREADS;
        PyMem_RawFree(scratch);
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"irls", irls, METH_VARARGS,
     "irls(K, N, x, mask, cp, cq, rot, tc, res, iterations, delta, tol): K robust rigid fits in place"},
    {"score", score, METH_VARARGS,
     "score((M, T, F, V, K), view, view_ok, ref, ref_ok, positions, counts, costs, rot, t, rigid, min_points, "
     "iterations, delta, tol, time_scale): K resampled candidates fitted and scored in place"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rigid_fast",
    .m_doc = "Compiled loop of the batched robust rigid fits (rigid_batch.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rigid_fast(void) { return PyModule_Create(&module); }
