/*
 * Optional compiled fast path for the NTU RGB+D ``.skeleton`` reader (see ntu.py).
 *
 * ``parse(data)`` walks the whole buffer once, following the file structure
 *
 *     F                       frame count
 *     F times:  B             body count of the frame
 *               B times:      10-value body-info line (first value: uint64 body ID)
 *                             25 (joint count)
 *                             25 lines of 12 values
 *
 * and returns ``(num_frames, bodies_per_frame, body_frame, body_ids, body_info, joints,
 * joint_tracking)``: the frame count and six bytearrays holding int16, int32, uint64, float32
 * (B x 9), float32 (B x 25 x 11) and int8 (B x 25) values in native byte order.
 *
 * It accepts a strict subset of what the pure-Python reader accepts and returns None on
 * anything else (a structural problem, an odd byte, a token outside the decimal grammar, a
 * non-finite value, a non-integer tracking state...). The caller then reruns the pure reader,
 * which either names the problem (reason + line) or parses the file; error messages therefore
 * come from one place only.
 *
 * Numbers must equal Python's float(token) bit for bit. Decimal tokens with at most 19 digits
 * (leading zeros included) whose integer mantissa is <= 2^53 and whose decimal exponent lies in
 * [-22, 22] are converted with one IEEE multiplication or division of two exactly representable
 * doubles (Clinger's fast path), which is correctly rounded. Every other token goes through
 * PyOS_string_to_double, the function behind float() itself.
 *
 * Speed: on x86-64 one 16-byte SSE2 compare finds a token's end, sign and dot, and an 8-digit
 * SWAR multiply converts its digits, so finding the next token does not wait on a byte-by-byte
 * scan. Elsewhere the same grammar is parsed byte by byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NUM_JOINTS 25
#define JOINT_VALUES 12   /* 11 float fields + the joint tracking state */
#define JOINT_FLOATS 11
#define INFO_VALUES 10    /* body ID + 9 fields */
#define INFO_FLOATS 9
#define MAX_TOKEN 128     /* longer tokens are left to the pure reader */
#define INT16_LIMIT 32767 /* bodies_per_frame is int16 */

/* Clinger's fast path is only exact when doubles are evaluated in double precision
 * (not in x87 extended precision, which would round twice). */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define CLINGER_OK 1
#else
#define CLINGER_OK 0
#endif

static const double POW10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};
#define TWO_POW_53 9007199254740992ULL

/* ---------------------------------------------------------------------------------------- */
/* Growable output buffers                                                                   */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra) cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_free(Buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Lines and tokens                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* The parser walks a cursor through the buffer; a line ends at '\n' or at ``end``, the end of
 * the content (trailing blank lines and whitespace removed, as the pure reader drops trailing
 * blank lines). Each line function consumes its line including the '\n'. */
typedef struct {
    const char *end;   /* end of the content */
    const char *limit; /* end of the buffer: 8-byte reads may look up to here */
} Span;

/* Separators inside a line. bytes.split() also splits on \v and \f; such bytes are left to the
 * pure reader (they make a token fail the number grammar here). */
static inline int is_sep(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

static inline int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static inline const char *skip_sep(const char *s, const char *end) {
    while (s < end && is_sep(*s)) s++;
    return s;
}

/* After the last token of a line: only separators may follow before '\n' or the end. */
static inline int end_line(const char **pp, const char *end) {
    const char *s = skip_sep(*pp, end);
    if (s == end) {
        *pp = s;
        return 0;
    }
    if (*s != '\n') return -1;
    *pp = s + 1;
    return 0;
}

/* A token may only be followed by a separator, '\n' or the end. */
static inline int token_ends(const char *s, const char *end) {
    return s == end || is_sep(*s) || *s == '\n';
}

static const uint64_t POW10_U64[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/* NTU_FAST_PORTABLE (compile flag) selects the byte-by-byte path, to test it on x86-64 too. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    !defined(NTU_FAST_PORTABLE)
#define SWAR_DIGITS 1
#else
#define SWAR_DIGITS 0
#endif

/* SSE2 is part of x86-64: it finds a token's digits, dot and end in one 16-byte step. */
#if SWAR_DIGITS && CLINGER_OK && defined(__SSE2__)
#include <emmintrin.h>
#define SSE2_TOKENS 1
#else
#define SSE2_TOKENS 0
#endif

#if defined(__GNUC__)
#define HOT_INLINE static inline __attribute__((always_inline))
#define COLD static __attribute__((noinline, cold))
#else
#define HOT_INLINE static inline
#define COLD static
#endif

/* The run of up to 8 decimal digits at s: returns its length and stores its value. Digit runs
 * always stop before ``end`` ('\n' and the trimmed whitespace are not digits), so the 8-byte
 * read only needs to stay inside the buffer. */
HOT_INLINE int digit_run(const char *s, const char *end, const char *limit, uint64_t *value) {
#if SWAR_DIGITS
    if (limit - s >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        uint64_t t = w ^ 0x3030303030303030ULL; /* digits become bytes 0..9 */
        uint64_t non_digit = (t & 0xF0F0F0F0F0F0F0F0ULL) |
                             (((t & 0x0F0F0F0F0F0F0F0FULL) + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL);
        int n = non_digit ? __builtin_ctzll(non_digit) >> 3 : 8;
        if (n == 0) {
            *value = 0;
            return 0;
        }
        /* the n digits go to the top bytes; the zero bytes below act as leading zeros */
        uint64_t v = n == 8 ? t : t << (8 * (8 - n));
        v = (v * 10) + (v >> 8);
        v = (((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
             (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
        *value = (uint32_t)v; /* the bits above 32 hold overflow of the products */
        return n;
    }
#else
    (void)limit;
#endif
    int n = 0;
    uint64_t v = 0;
    while (n < 8 && s + n < end && is_digit(s[n])) {
        v = v * 10 + (uint64_t)(s[n] - '0');
        n++;
    }
    *value = v;
    return n;
}

/* A line holding one non-negative decimal integer (surrounding separators allowed), as the pure
 * reader's ``line.strip().isdigit()``; -1 otherwise. Values are capped at 2^40: no file can
 * satisfy a count that large, and the pure reader names the problem. */
static long long parse_count_line(const char **pp, const char *end) {
    const char *s = skip_sep(*pp, end);
    if (s == end || !is_digit(*s)) return -1;
    long long v = 0;
    while (s < end && is_digit(*s)) {
        v = v * 10 + (*s - '0');
        if (v > (1LL << 40)) v = 1LL << 40;
        s++;
    }
    if (end_line(&s, end) != 0) return -1;
    *pp = s;
    return v;
}

/* Convert the token [s, e) with float() semantics; 0 on success. */
COLD int slow_double(const char *s, const char *e, double *out) {
    char buf[MAX_TOKEN + 1];
    size_t n = (size_t)(e - s);
    if (n > MAX_TOKEN) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (stop != buf + n) return -1;
    *out = v;
    return 0;
}

#if SSE2_TOKENS
/* The value of n (1..8) ASCII digits read little-endian from w (first digit in the low byte). */
HOT_INLINE uint64_t swar_value(uint64_t w, int n) {
    uint64_t v = (w ^ 0x3030303030303030ULL) << (8 * (8 - n)); /* leading zero digits below */
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
         (((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >> 32;
    return (uint32_t)v;
}

/* The common token shape ``[-+]?d{1,8}(.d{0,8})?`` in one step: the token's end, sign, dot and
 * digits come from 16-byte masks, so the next token's position does not wait on a byte-by-byte
 * scan. Returns 1 with *out set and *pp past the token, or 0 when the general parser must look
 * at the token (other shapes, exponents, bad characters, near the end of the buffer). */
HOT_INLINE int sse_token(const char **pp, const Span *sp, double *out) {
    const char *s = *pp;
    if (sp->limit - s < 24) return 0; /* the digit loads below read up to s + 18 */
    __m128i w = _mm_loadu_si128((const __m128i *)s);
    __m128i x = _mm_sub_epi8(w, _mm_set1_epi8('0'));
    unsigned digit = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(9)), x));
    __m128i sep_v = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(w, _mm_set1_epi8('\n'))),
        _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('\r')), _mm_cmpeq_epi8(w, _mm_set1_epi8('\t'))));
    unsigned sep = (unsigned)_mm_movemask_epi8(sep_v);
    if (sep == 0) return 0;
    int len = __builtin_ctz(sep);
    int neg = s[0] == '-';
    int o = neg | (s[0] == '+');
    unsigned body = ((1u << len) - 1) & ~((1u << o) - 1); /* the token's bytes after the sign */
    unsigned other = body & ~digit;
    int dot = len;
    if (other != 0) {
        dot = __builtin_ctz(other);
        if ((other & (other - 1)) != 0 || s[dot] != '.') return 0;
    }
    int n_int = dot - o;
    int n_frac = dot < len ? len - dot - 1 : 0;
    if (n_int < 1 || n_int > 8 || n_frac > 8) return 0;
    uint64_t w_int, w_frac;
    memcpy(&w_int, s + o, 8);
    memcpy(&w_frac, s + dot + 1, 8);
    uint64_t m = swar_value(w_int, n_int);
    if (n_frac > 0) m = m * POW10_U64[n_frac] + swar_value(w_frac, n_frac);
    if (m > TWO_POW_53) return 0;
    double v = (double)m / POW10[n_frac]; /* exact operands, one correctly rounded division */
    *out = neg ? -v : v;
    *pp = s + len;
    return 1;
}
#endif

/* Parse one token starting at *pp. The grammar is the pure reader's
 * ``[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?`` and the value must be finite. On success *pp points
 * just past the token and 0 is returned. */
HOT_INLINE int parse_double(const char **pp, const Span *sp, double *out) {
#if SSE2_TOKENS
    if (sse_token(pp, sp, out)) return 0;
#endif
    const char *start = *pp, *s = start, *end = sp->end;
    /* branch-free sign: signs are random in the data, a branch on them mispredicts */
    int neg = s < end && *s == '-';
    s += neg | (s < end && *s == '+');
    uint64_t m = 0, chunk;
    int digits = 0;   /* mantissa digits, leading zeros included */
    int exp10 = 0;
    int n;
    do {
        n = digit_run(s, end, sp->limit, &chunk);
        if (digits + n <= 19) m = m * POW10_U64[n] + chunk;
        digits += n;
        s += n;
    } while (n == 8 && s < end && is_digit(*s));
    if (s < end && *s == '.') {
        s++;
        do {
            n = digit_run(s, end, sp->limit, &chunk);
            if (digits + n <= 19) m = m * POW10_U64[n] + chunk;
            digits += n;
            exp10 -= n;
            s += n;
        } while (n == 8 && s < end && is_digit(*s));
    }
    if (digits == 0) return -1;
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0;
        if (s < end && (*s == '+' || *s == '-')) {
            eneg = *s == '-';
            s++;
        }
        if (s == end || !is_digit(*s)) return -1;
        int ev = 0;
        while (s < end && is_digit(*s)) {
            if (ev < 100000) ev = ev * 10 + (*s - '0');
            s++;
        }
        exp10 += eneg ? -ev : ev;
    }
    if (!token_ends(s, end)) return -1; /* the token goes on with a character outside the grammar */
    *pp = s;
    double v;
    /* more than 19 digits (m incomplete) or outside the exact range: the slow path reparses */
    if (CLINGER_OK && digits <= 19 && m <= TWO_POW_53 && exp10 >= -22 && exp10 <= 22) {
        v = (double)m;
        if (exp10 > 0)
            v *= POW10[exp10];
        else if (exp10 < 0)
            v /= POW10[-exp10];
        if (neg) v = -v;
    } else if (slow_double(start, s, &v) != 0) {
        return -1;
    }
    if (!isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* The unsigned 64-bit body ID: digits only, no sign, <= 2^64 - 1. */
static inline int parse_body_id(const char **pp, const char *end, uint64_t *out) {
    const char *s = *pp;
    uint64_t v = 0;
    if (s == end || !is_digit(*s)) return -1;
    while (s < end && is_digit(*s)) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
        s++;
    }
    if (!token_ends(s, end)) return -1;
    *pp = s;
    *out = v;
    return 0;
}

/* The next token of the current line: 0 when one starts at the returned *pp. */
static inline int next_token(const char **pp, const char *end) {
    const char *s = skip_sep(*pp, end);
    *pp = s;
    return (s == end || *s == '\n') ? -1 : 0;
}

/* A body-info line: exactly 10 values. */
static int parse_info_line(const char **pp, const Span *sp, uint64_t *id, float *info) {
    const char *s = *pp;
    double v;
    if (next_token(&s, sp->end) != 0 || parse_body_id(&s, sp->end, id) != 0) return -1;
    for (int k = 0; k < INFO_FLOATS; k++) {
        if (next_token(&s, sp->end) != 0 || parse_double(&s, sp, &v) != 0) return -1;
        info[k] = (float)v;
    }
    if (end_line(&s, sp->end) != 0) return -1;
    *pp = s;
    return 0;
}

/* A joint line: exactly 12 values, the last one an integer in the int8 range. */
static int parse_joint_line(const char **pp, const Span *sp, float *joint, int8_t *tracking) {
    const char *s = *pp;
    double v;
    for (int k = 0; k < JOINT_FLOATS; k++) {
        if (next_token(&s, sp->end) != 0 || parse_double(&s, sp, &v) != 0) return -1;
        joint[k] = (float)v;
    }
    if (next_token(&s, sp->end) != 0 || parse_double(&s, sp, &v) != 0) return -1;
    if (!(fabs(v) <= 127.0) || (double)(int)v != v) return -1; /* an integer in the int8 range */
    *tracking = (int8_t)(int)v;
    if (end_line(&s, sp->end) != 0) return -1;
    *pp = s;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The file                                                                                  */
/* ---------------------------------------------------------------------------------------- */

enum { OUT_BPF, OUT_FRAME, OUT_IDS, OUT_INFO, OUT_JOINTS, OUT_TRACK, NUM_OUT };
static const size_t ITEM_SIZE[NUM_OUT] = {
    sizeof(int16_t), sizeof(int32_t), sizeof(uint64_t), INFO_FLOATS * sizeof(float),
    NUM_JOINTS * JOINT_FLOATS * sizeof(float), NUM_JOINTS * sizeof(int8_t),
};

/* Walk the structure and fill the buffers; 0 on success, 1 when the pure reader must decide,
 * -1 on MemoryError. A line exists while the cursor is before ``end``. */
static int parse_file(const char *data, size_t size, Buf *out, long long *num_frames) {
    const char *end = data + size;
    while (end > data && (is_sep(end[-1]) || end[-1] == '\n')) end--;
    if (end == data) return 1;
    const Span sp = {end, data + size};
    const char *p = data;

    /* A body record takes at least 623 bytes (all values "0"), so this reservation rarely needs
     * to grow; it is capped so that a huge non-NTU input does not reserve gigabytes up front. */
    size_t max_bodies = size / 623 + 1;
    if (max_bodies > 4096) max_bodies = 4096;
    for (int k = OUT_FRAME; k < NUM_OUT; k++)
        if (buf_reserve(&out[k], max_bodies * ITEM_SIZE[k]) != 0) return -1;

    long long frames = parse_count_line(&p, end);
    if (frames <= 0 || frames > INT32_MAX) return 1;
    if (buf_reserve(&out[OUT_BPF], (size_t)(frames < 4096 ? frames : 4096) * sizeof(int16_t)) != 0) return -1;

    for (int32_t f = 0; f < frames; f++) {
        if (p >= end) return 1;
        long long bodies = parse_count_line(&p, end);
        if (bodies < 0 || bodies > INT16_LIMIT) return 1;
        if (buf_reserve(&out[OUT_BPF], sizeof(int16_t)) != 0) return -1;
        int16_t count16 = (int16_t)bodies;
        memcpy(out[OUT_BPF].data + out[OUT_BPF].len, &count16, sizeof count16);
        out[OUT_BPF].len += sizeof count16;
        for (long long b = 0; b < bodies; b++) {
            for (int k = OUT_FRAME; k < NUM_OUT; k++)
                if (buf_reserve(&out[k], ITEM_SIZE[k]) != 0) return -1;
            uint64_t id;
            float *info = (float *)(out[OUT_INFO].data + out[OUT_INFO].len);
            if (p >= end || parse_info_line(&p, &sp, &id, info) != 0) return 1;
            if (p >= end || parse_count_line(&p, end) != NUM_JOINTS) return 1;
            float *joints = (float *)(out[OUT_JOINTS].data + out[OUT_JOINTS].len);
            int8_t *tracking = (int8_t *)(out[OUT_TRACK].data + out[OUT_TRACK].len);
            for (int j = 0; j < NUM_JOINTS; j++) {
                if (p >= end) return 1;
                if (parse_joint_line(&p, &sp, joints + j * JOINT_FLOATS, tracking + j) != 0) return 1;
            }
            memcpy(out[OUT_IDS].data + out[OUT_IDS].len, &id, sizeof id);
            memcpy(out[OUT_FRAME].data + out[OUT_FRAME].len, &f, sizeof f);
            for (int k = OUT_FRAME; k < NUM_OUT; k++) out[k].len += ITEM_SIZE[k];
        }
    }
    if (p < end) return 1;                /* non-blank lines after the declared frames */
    if (out[OUT_IDS].len == 0) return 1;  /* no frame has a body */
    *num_frames = frames;
    return 0;
}

static PyObject *ntu_parse(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) return NULL;
    Buf out[NUM_OUT];
    memset(out, 0, sizeof out);
    long long frames = 0;
    int status = parse_file((const char *)view.buf, (size_t)view.len, out, &frames);
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (status < 0) {
        PyErr_NoMemory();
    } else if (status > 0) {
        result = Py_NewRef(Py_None);
    } else {
        PyObject *items[NUM_OUT] = {NULL};
        int ok = 1;
        for (int k = 0; k < NUM_OUT && ok; k++) {
            items[k] = PyByteArray_FromStringAndSize(out[k].data, (Py_ssize_t)out[k].len);
            ok = items[k] != NULL;
        }
        if (ok) {
            result = Py_BuildValue("(LNNNNNN)", frames, items[0], items[1], items[2], items[3],
                                   items[4], items[5]);
        } else {
            for (int k = 0; k < NUM_OUT; k++) Py_XDECREF(items[k]);
        }
    }
    for (int k = 0; k < NUM_OUT; k++) buf_free(&out[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"parse", ntu_parse, METH_O,
     "parse(data) -> (num_frames, bodies_per_frame, body_frame, body_ids, body_info, joints, "
     "joint_tracking) as an int and six bytearrays (int16, int32, uint64, float32 B x 9, "
     "float32 B x 25 x 11, int8 B x 25), or None when the pure reader must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ntu_fast",
    .m_doc = "Compiled one-pass parser for NTU RGB+D .skeleton files (optional; see ntu.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ntu_fast(void) { return PyModule_Create(&module); }
