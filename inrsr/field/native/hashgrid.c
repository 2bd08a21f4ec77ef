/* Multiresolution hash grid on the CPU: trilinear gather (forward) and scatter (backward).
 *
 * The same arithmetic as inrsr.encodings.HashGrid, fused: each point's eight cell corners, their
 * table rows and trilinear weights are computed in registers and used at once, instead of
 * materialising (N, L, 8) index and weight tensors. Layouts (all C-contiguous, float32 unless
 * said otherwise):
 *   x           (n, 3)            normalised coordinates
 *   inv_cell    (levels,)         cells per normalised unit of each level
 *   verts       (levels,) int32   vertices per axis of each level (dense levels only)
 *   offset      (levels,) int64   first table row of each level
 *   table       (rows, features)  every level's rows, from its offset
 *   out         (n, levels * features)
 * Levels [0, n_dense) are dense lattices (row = i + j V + k V^2, coordinates clamped to
 * [0, V - 1]); the others are hashed (xor of coordinate times prime, mod table_size, a power of
 * two). Corner c takes the (c >> d) & 1-th vertex along axis d.
 *
 * Coordinate contract. x is expected in about [-1, 1] but may hold any float; no value makes the
 * kernel read or write outside table, out, grad_table or grad_x, and none reaches undefined
 * behaviour. A point's position along an axis, in cells of level l, is pos = (x + 1) inv_cell[l];
 * it is clamped to [-MAX_CELLS, MAX_CELLS] (2^24 cells, where float32 has no fractional bits left,
 * so that no in-range point is affected) before its floor becomes an int32, and the vertex
 * arithmetic (lo + 1, row sums) then stays far inside int32/int64. Hence:
 *   finite x far outside the grid  the clamped cell: dense levels take their edge vertex, hashed
 *                                  levels the hash of vertex +-2^24; finite features;
 *   x = +-inf                      the same as a huge finite value (clamped), finite features;
 *   x = NaN                        NaN features for that point: its interpolation weights are NaN,
 *                                  its rows those of cell 0 along that axis (valid rows); the
 *                                  NaN weights carry on into the gradients (the rows of grad_table
 *                                  it touches, grad_x along its other, unclamped axes).
 * The gradient with respect to x is zero along an axis whose position was clamped (at that level),
 * as for any clamp. inrsr.field.encodings.HashGrid (the PyTorch path) follows the same contract.
 *
 * Work is split over threads: the forward pass by points; the backward pass by levels, whose table
 * rows are disjoint, so that no two threads add into the same row and the result does not depend on
 * the thread count. Built with OpenMP (-fopenmp), the threads are those of the process's OpenMP
 * runtime, which PyTorch's CPU operations also use: its workers keep spinning for a while after
 * each PyTorch operation, and threads of our own would compete with them for the cores (on 2
 * cores, the backward pass right after a PyTorch operation took 18 ms with its own threads, 10 ms
 * with OpenMP's). Without OpenMP, POSIX threads.
 */
#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <string.h>

#define MAX_THREADS 64

/* Lets the jobs keep a copy of their per-point loop without the range checks (see point_near). */
#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define ALWAYS_INLINE
#endif

typedef struct {
    const float *x;
    int64_t n;
    const float *inv_cell;
    const int32_t *verts;
    const int64_t *offset;
    int32_t levels, n_dense, features;
    int64_t table_size;
    const float *table; /* forward */
    float *out;
    const float *grad_out; /* backward */
    float *grad_table;
    float *grad_x;
    int64_t begin, end; /* points (forward) or levels (backward) of this thread */
} job_t;

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Largest |position| in cells that is converted to an integer (2^24): every float32 of that size
 * is an integer already, so clamping there moves no in-range point, and lo + 1 cannot overflow. */
#define MAX_CELLS 16777216.0f

/* floor(v) as an integer, for |v| < 2^31 (a cast and a correction; no libm call). */
static inline int32_t floor_i32(float v) {
    const int32_t i = (int32_t)v;
    return i - (v < (float)i);
}

/* The lower vertex of a position in cells known to lie in [-MAX_CELLS, MAX_CELLS], and the
 * fraction of a cell above it (*fr, in [0, 1)). */
static inline int32_t split_near_cell(float pos, float *fr) {
    const int32_t lo = floor_i32(pos);
    *fr = pos - (float)lo;
    return lo;
}

/* split_cell for a position outside [-MAX_CELLS, MAX_CELLS] or NaN: a finite or infinite one is
 * clamped to +-MAX_CELLS (fraction 0, and it no longer follows the point); NaN takes vertex 0 (a
 * valid one) with a NaN fraction, so that the NaN reaches the output through the weights. */
static int32_t split_far_cell(float pos, float *fr, int *moves) {
    if (pos != pos) {
        *fr = pos;
        *moves = 1;
        return 0;
    }
    *fr = 0.0f;
    *moves = 0;
    return pos > 0.0f ? (int32_t)MAX_CELLS : -(int32_t)MAX_CELLS;
}

/* A position in cells (any float) split into its lower vertex, in [-MAX_CELLS, MAX_CELLS], and the
 * fraction of a cell above it (*fr, in [0, 1); NaN for NaN); *moves says whether the position
 * follows the point (0 where it was clamped). */
static inline int32_t split_cell(float pos, float *fr, int *moves) {
    if (!(fabsf(pos) <= MAX_CELLS)) return split_far_cell(pos, fr, moves);
    *moves = 1;
    return split_near_cell(pos, fr);
}

/* The largest |cells per unit| over the levels; +inf when one is infinite or NaN. */
static float max_inv_cell(const job_t *j) {
    float m = 0.0f;
    for (int32_t l = 0; l < j->levels; ++l) {
        const float a = fabsf(j->inv_cell[l]);
        if (!(a < INFINITY)) return INFINITY;
        if (a > m) m = a;
    }
    return m;
}

/* Whether point p lies within MAX_CELLS of the origin along every axis at every level (inv_max from
 * max_inv_cell): then no position of it needs split_cell's checks. Float rounding is monotonic,
 * so |(x + 1) inv| <= |(x + 1) inv_max| for every level's inv; NaN and +-inf fail. */
static inline int point_near(const job_t *j, int64_t p, float inv_max) {
    const float *x = j->x + 3 * p;
    return fabsf((x[0] + 1.0f) * inv_max) <= MAX_CELLS && fabsf((x[1] + 1.0f) * inv_max) <= MAX_CELLS &&
           fabsf((x[2] + 1.0f) * inv_max) <= MAX_CELLS;
}

/* Table rows and trilinear weights of the eight corners of point p's cell at level l. Each axis
 * contributes two terms (its lower and upper vertex), which the corners combine; wt receives the
 * per-axis weight terms (1 - frac, frac), and moves[d] whether the position along axis d follows
 * the point (0 where it was clamped; see the coordinate contract above). With near (point_near
 * holds), the positions are known to be in range and skip the checks. */
static inline ALWAYS_INLINE void cell_corners(const job_t *j, int64_t p, int32_t l, int near, int64_t rows[8],
                                              float w[8], float wt[3][2], int moves[3]) {
    const float inv = j->inv_cell[l]; /* cells per normalised unit */
    int32_t lo[3];                    /* lower vertex per axis, in [-MAX_CELLS, MAX_CELLS] */
    for (int d = 0; d < 3; ++d) {
        const float pos = (j->x[3 * p + d] + 1.0f) * inv; /* cells from the grid's origin, x = -1 */
        float fr;
        if (near) {
            lo[d] = split_near_cell(pos, &fr);
            moves[d] = 1;
        } else {
            lo[d] = split_cell(pos, &fr, &moves[d]);
        }
        wt[d][0] = 1.0f - fr;
        wt[d][1] = fr;
    }
    const int64_t offset = j->offset[l];
    if (l < j->n_dense) {
        const int32_t v = j->verts[l];
        const int64_t stride[3] = {1, v, (int64_t)v * v};
        int64_t term[3][2];
        for (int d = 0; d < 3; ++d)
            for (int b = 0; b < 2; ++b) term[d][b] = clamp_i32(lo[d] + b, 0, v - 1) * stride[d];
        for (int c = 0; c < 8; ++c) rows[c] = offset + term[0][c & 1] + term[1][(c >> 1) & 1] + term[2][(c >> 2) & 1];
    } else {
        static const uint32_t primes[3] = {1u, 2654435761u, 805459861u};
        const uint32_t mask = (uint32_t)(j->table_size - 1);
        uint32_t term[3][2];
        for (int d = 0; d < 3; ++d)
            for (int b = 0; b < 2; ++b) term[d][b] = ((uint32_t)lo[d] + (uint32_t)b) * primes[d]; /* wraps mod 2^32 */
        for (int c = 0; c < 8; ++c)
            rows[c] = offset + (int64_t)((term[0][c & 1] ^ term[1][(c >> 1) & 1] ^ term[2][(c >> 2) & 1]) & mask);
    }
    for (int c = 0; c < 8; ++c) w[c] = (wt[0][c & 1] * wt[1][(c >> 1) & 1]) * wt[2][(c >> 2) & 1];
}

/* The feature loops below take the feature count as an argument; the jobs call them with the
 * common counts as constants (SPECIALISE), which lets the compiler unroll them. The arithmetic,
 * and hence the rounding, is the same whichever copy runs. */
#define SPECIALISE(f_n, call) \
    switch (f_n) {            \
    case 2: call(2); break;   \
    case 4: call(4); break;   \
    default: call(f_n);       \
    }

/* o[f] = sum over corners of w[c] * table row c, feature f. */
static inline void gather_rows(const float *restrict table, const int64_t rows[8], const float w[8], int32_t f_n,
                               float *restrict o) {
    for (int32_t f = 0; f < f_n; ++f) o[f] = 0.0f;
    for (int c = 0; c < 8; ++c) {
        const float *row = table + rows[c] * f_n;
        for (int32_t f = 0; f < f_n; ++f) o[f] += w[c] * row[f];
    }
}

/* table row c, feature f += w[c] * g[f]; corners in order, so that rows shared by several corners
 * add up in the same order on every path. */
static inline void scatter_rows(float *restrict table, const int64_t rows[8], const float w[8], int32_t f_n,
                                const float *restrict g) {
    for (int32_t f = 0; f < f_n; ++f) {
        const float gf = g[f];
        for (int c = 0; c < 8; ++c) table[rows[c] * f_n + f] += w[c] * gf;
    }
}

/* s[c] = sum over features of g[f] * table row c, feature f. */
static inline void dot_rows(const float *restrict table, const int64_t rows[8], int32_t f_n, const float *restrict g,
                            float s[8]) {
    for (int c = 0; c < 8; ++c) {
        const float *row = table + rows[c] * f_n;
        float acc = 0.0f;
        for (int32_t f = 0; f < f_n; ++f) acc += g[f] * row[f];
        s[c] = acc;
    }
}

/* Points are taken BLOCK at a time, level by level: the rows of a block's cells at one level are
 * computed first, with a prefetch of each, and gathered or scattered after, so that many table
 * reads are in flight at once and one level's rows stay in cache while the block uses them. The
 * arithmetic of each point and level, and the order of the additions, are those of a plain loop. */
#define BLOCK 256
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(addr, write) __builtin_prefetch((addr), (write), 1)
#else
#define PREFETCH(addr, write) ((void)0)
#endif

typedef struct {
    int64_t rows[BLOCK][8];
    float w[BLOCK][8];
    float wt[BLOCK][3][2]; /* per-axis weight terms and clamp flags of cell_corners, which the */
    int moves[BLOCK][3];   /* gradient with respect to x reads (storing them costs the others nothing measurable) */
    int near[BLOCK];
} block_t;

/* The corners of points [p0, p0 + nb) at level l into b (near flags already set), each row prefetched. */
static inline ALWAYS_INLINE void block_corners(const job_t *j, int64_t p0, int64_t nb, int32_t l, block_t *b,
                                               const float *table, int write) {
    for (int64_t i = 0; i < nb; ++i) {
        if (b->near[i])
            cell_corners(j, p0 + i, l, 1, b->rows[i], b->w[i], b->wt[i], b->moves[i]); /* without the range checks */
        else
            cell_corners(j, p0 + i, l, 0, b->rows[i], b->w[i], b->wt[i], b->moves[i]);
        for (int c = 0; c < 8; ++c) PREFETCH(table + b->rows[i][c] * j->features, write);
    }
}

static void *forward_job(void *arg) {
    const job_t *j = (const job_t *)arg;
    const float inv_max = max_inv_cell(j);
    const int32_t f_n = j->features;
    const int64_t stride = (int64_t)j->levels * f_n;
    block_t b;
    for (int64_t p0 = j->begin; p0 < j->end; p0 += BLOCK) {
        const int64_t nb = j->end - p0 < BLOCK ? j->end - p0 : BLOCK;
        for (int64_t i = 0; i < nb; ++i) b.near[i] = point_near(j, p0 + i, inv_max);
        for (int32_t l = 0; l < j->levels; ++l) {
            block_corners(j, p0, nb, l, &b, j->table, 0);
            for (int64_t i = 0; i < nb; ++i) {
                float *o = j->out + (p0 + i) * stride + l * f_n;
#define GATHER(F) gather_rows(j->table, b.rows[i], b.w[i], F, o)
                SPECIALISE(f_n, GATHER)
#undef GATHER
            }
        }
    }
    return NULL;
}

static void *backward_job(void *arg) {
    const job_t *j = (const job_t *)arg;
    const int32_t f_n = j->features;
    const int64_t stride = (int64_t)j->levels * f_n;
    const float inv_max = max_inv_cell(j);
    block_t b;
    /* begin is this thread's index and end the thread count: levels are dealt round-robin, so
     * that every thread gets coarse and fine ones. */
    for (int32_t l = (int32_t)j->begin; l < j->levels; l += (int32_t)j->end) {
        for (int64_t p0 = 0; p0 < j->n; p0 += BLOCK) {
            const int64_t nb = j->n - p0 < BLOCK ? j->n - p0 : BLOCK;
            for (int64_t i = 0; i < nb; ++i) b.near[i] = point_near(j, p0 + i, inv_max);
            block_corners(j, p0, nb, l, &b, j->grad_table, 1);
            for (int64_t i = 0; i < nb; ++i) {
                const float *g = j->grad_out + (p0 + i) * stride + l * f_n;
#define SCATTER(F) scatter_rows(j->grad_table, b.rows[i], b.w[i], F, g)
                SPECIALISE(f_n, SCATTER)
#undef SCATTER
            }
        }
    }
    return NULL;
}

/* Adds level l's part of d(out)/d(x) of point p, whose corners at that level are rows, wt and
 * moves (cell_corners), to gx[3]: the trilinear weights' derivatives (each axis's two terms are
 * 1 - frac and frac, whose derivatives are -1 and +1 times the level's cells per unit; 0 where the
 * position was clamped). */
static inline ALWAYS_INLINE void level_gradient(const job_t *j, int64_t p, int32_t l, const int64_t rows[8],
                                                const float wt[3][2], const int moves[3], float gx[3]) {
    const int32_t f_n = j->features;
    const float *g = j->grad_out + p * (int64_t)j->levels * f_n + l * f_n;
    float gl[3] = {0.0f, 0.0f, 0.0f}, s_c[8];
#define DOTS(F) dot_rows(j->table, rows, F, g, s_c)
    SPECIALISE(f_n, DOTS)
#undef DOTS
    for (int c = 0; c < 8; ++c) {
        const float s = s_c[c];
        const int b0 = c & 1, b1 = (c >> 1) & 1, b2 = (c >> 2) & 1;
        gl[0] += s * (b0 ? 1.0f : -1.0f) * wt[1][b1] * wt[2][b2];
        gl[1] += s * (b1 ? 1.0f : -1.0f) * wt[0][b0] * wt[2][b2];
        gl[2] += s * (b2 ? 1.0f : -1.0f) * wt[0][b0] * wt[1][b1];
    }
    /* d pos / d x: cells per unit (gradient 0 through a clamped position; times inv as the
     * PyTorch path's chain rule, which gives NaN for a grid with infinite cells per unit) */
    for (int d = 0; d < 3; ++d) gx[d] += (moves[d] ? gl[d] : 0.0f) * j->inv_cell[l];
}

/* The gradient with respect to x, a block of points at a time as the forward pass: each level's
 * rows of the block are prefetched before they are read. Every point adds its levels in order. */
static void *points_job(void *arg) {
    const job_t *j = (const job_t *)arg;
    const float inv_max = max_inv_cell(j);
    block_t b;
    float gx[BLOCK][3];
    for (int64_t p0 = j->begin; p0 < j->end; p0 += BLOCK) {
        const int64_t nb = j->end - p0 < BLOCK ? j->end - p0 : BLOCK;
        for (int64_t i = 0; i < nb; ++i) {
            b.near[i] = point_near(j, p0 + i, inv_max);
            gx[i][0] = gx[i][1] = gx[i][2] = 0.0f;
        }
        for (int32_t l = 0; l < j->levels; ++l) {
            block_corners(j, p0, nb, l, &b, j->table, 0);
            for (int64_t i = 0; i < nb; ++i) level_gradient(j, p0 + i, l, b.rows[i], b.wt[i], b.moves[i], gx[i]);
        }
        for (int64_t i = 0; i < nb; ++i)
            for (int d = 0; d < 3; ++d) j->grad_x[3 * (p0 + i) + d] = gx[i][d];
    }
    return NULL;
}

/* Thread t of nt's share of base: with interleave, begin = t and end = nt; else the t-th of nt
 * contiguous ranges of [0, total). */
static job_t share(job_t base, int64_t total, int t, int nt, int interleave) {
    base.begin = interleave ? t : total * t / nt;
    base.end = interleave ? nt : total * (t + 1) / nt;
    return base;
}

/* Run fn on the shares of n_threads threads (at most total), the calling thread taking the first. */
static void run_split(job_t base, int64_t total, int n_threads, int interleave, void *(*fn)(void *)) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (n_threads > total) n_threads = total > 0 ? (int)total : 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
    {
        job_t job = share(base, total, omp_get_thread_num(), omp_get_num_threads(), interleave);
        fn(&job);
    }
#else
    job_t jobs[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < n_threads; ++t) {
        jobs[t] = share(base, total, t, n_threads, interleave);
        started[t] = t > 0 && pthread_create(&threads[t], NULL, fn, &jobs[t]) == 0;
    }
    fn(&jobs[0]);
    for (int t = 1; t < n_threads; ++t) {
        if (started[t])
            pthread_join(threads[t], NULL);
        else
            fn(&jobs[t]); /* thread creation failed: do its share here */
    }
#endif
}

/* 1 when the kernels run on the OpenMP runtime's threads, 0 when on POSIX threads of their own. */
int inrsr_hashgrid_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void inrsr_hashgrid_forward(const float *x, int64_t n, const float *inv_cell, const int32_t *verts,
                            const int64_t *offset, int32_t levels, int32_t n_dense, int64_t table_size,
                            int32_t features, const float *table, float *out, int32_t n_threads) {
    job_t j = {x, n, inv_cell, verts, offset, levels, n_dense, features, table_size, table, out, NULL, NULL, NULL, 0, 0};
    run_split(j, n, n_threads, 0, forward_job);
}

/* grad_table must be zeroed by the caller; it receives the sum over points. */
void inrsr_hashgrid_backward(const float *x, int64_t n, const float *inv_cell, const int32_t *verts,
                             const int64_t *offset, int32_t levels, int32_t n_dense, int64_t table_size,
                             int32_t features, const float *grad_out, float *grad_table, int32_t n_threads) {
    job_t j = {x, n, inv_cell, verts, offset, levels, n_dense, features, table_size, NULL, NULL, grad_out, grad_table,
               NULL, 0, 0};
    run_split(j, levels, n_threads, 1, backward_job);
}

/* grad_x (n, 3) receives the gradient with respect to the points (overwritten). */
void inrsr_hashgrid_backward_points(const float *x, int64_t n, const float *inv_cell, const int32_t *verts,
                                    const int64_t *offset, int32_t levels, int32_t n_dense, int64_t table_size,
                                    int32_t features, const float *table, const float *grad_out, float *grad_x,
                                    int32_t n_threads) {
    job_t j = {x, n, inv_cell, verts, offset, levels, n_dense, features, table_size, table, NULL, grad_out, NULL,
               grad_x, 0, 0};
    run_split(j, n, n_threads, 0, points_job);
}
