/* The kernels of modulated_conv.c for one element type T; included once per type. */

/* u's row of a tap, zero where the tap reads padding. */
static inline T *SUFFIX(tap_row)(T *u, const segment_t *seg, const tap_t *tp) {
    T *ut = u + tp->u;
    for (int64_t j = seg->j0; j < tp->lo; ++j) ut[j] = 0;
    for (int64_t j = tp->hi; j < seg->j1; ++j) ut[j] = 0;
    return ut;
}

/* u = the modulated taps of the slab. */
void SUFFIX(modulate)(const slab_t *g, const T *restrict x, const T *restrict e_ch, const T *restrict e_sp,
                      T *restrict u, int threads) {
    const int64_t C = g->channels, kk = g->kernel * g->kernel, plane = g->out_height * g->out_width;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t s = 0; s < segment_count(g); ++s) {
        const segment_t seg = segment(g, s);
        for (int64_t c = 0; c < C; ++c) {
            for (int64_t t = 0; t < kk; ++t) {
                const tap_t tp = tap(g, &seg, c, t);
                const int64_t lo = tp.lo, hi = tp.hi;
                const T *restrict xr = x + tp.x, *restrict es = e_sp + tp.sp;
                T *restrict ut = SUFFIX(tap_row)(u, &seg, &tp);
                if (e_ch) {
                    const T *restrict ec = e_ch + c * plane + seg.p0;
#pragma omp simd
                    for (int64_t j = lo; j < hi; ++j) ut[j] = xr[j] * ((T)2 / ((T)1 + ec[j] * es[j]));
                } else {
#pragma omp simd
                    for (int64_t j = lo; j < hi; ++j) ut[j] = xr[j] * es[j];
                }
            }
        }
    }
}

/* From gu = dL/du: u = the modulated taps, gu *= m (the taps' input gradient, before folding),
   g_ch = dL/da_ch (PAKA; ignored for PAC), g_sp = dL/da_sp (PAKA) or dL/dkernel (PAC).
   g_ch and g_sp are planes like e_ch and e_sp. */
void SUFFIX(modulate_backward)(const slab_t *g, const T *restrict x, const T *restrict e_ch,
                               const T *restrict e_sp, T *restrict gu, T *restrict u, T *restrict g_ch,
                               T *restrict g_sp, int threads) {
    const int64_t C = g->channels, kk = g->kernel * g->kernel, plane = g->out_height * g->out_width;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t s = 0; s < segment_count(g); ++s) {
        const segment_t seg = segment(g, s);
        const int64_t width = seg.j1 - seg.j0;
        for (int64_t t = 0; t < kk; ++t) memset(g_sp + t * plane + seg.p0 + seg.j0, 0, width * sizeof(T));
        for (int64_t c = 0; c < C; ++c) {
            T *restrict gc = e_ch ? g_ch + c * plane + seg.p0 : NULL;
            if (gc) memset(gc + seg.j0, 0, width * sizeof(T));
            for (int64_t t = 0; t < kk; ++t) {
                const tap_t tp = tap(g, &seg, c, t);
                const int64_t lo = tp.lo, hi = tp.hi;
                const T *restrict xr = x + tp.x, *restrict es = e_sp + tp.sp;
                T *restrict gs = g_sp + tp.sp, *restrict gt = gu + tp.u;
                T *restrict ut = SUFFIX(tap_row)(u, &seg, &tp);
                if (gc) {
                    const T *restrict ec = e_ch + c * plane + seg.p0;
#pragma omp simd
                    for (int64_t j = lo; j < hi; ++j) {
                        const T m = (T)2 / ((T)1 + ec[j] * es[j]);
                        const T gz = gt[j] * xr[j] * (m * ((T)2 - m)); /* d(1 + tanh z)/dz = m (2 - m) */
                        ut[j] = xr[j] * m;
                        gc[j] += gz;
                        gs[j] += gz;
                        gt[j] *= m;
                    }
                } else {
#pragma omp simd
                    for (int64_t j = lo; j < hi; ++j) {
                        ut[j] = xr[j] * es[j];
                        gs[j] += gt[j] * xr[j];
                        gt[j] *= es[j];
                    }
                }
            }
        }
    }
}

/* gx (C x H x W) += the adjoint of the unfolding applied to gu (C x k*k x n), where gx's rows from `fresh`
   on hold nothing yet and are overwritten instead. Each input row gathers the taps that read it, so threads
   never write the same row. Returns the end of the rows written: the next slab's `fresh` (consecutive slabs
   of an image cover all its rows). */
int64_t SUFFIX(fold)(const slab_t *g, const T *restrict gu, T *restrict gx, int64_t fresh, int threads) {
    const int64_t C = g->channels, k = g->kernel, kk = k * k, d = g->dilation, wo = g->out_width;
    const int64_t n = (g->r1 - g->r0) * wo;
    const int64_t first = g->r0 - g->pad_top > 0 ? g->r0 - g->pad_top : 0;
    const int64_t end = g->r1 - g->pad_top + (k - 1) * d < g->height ? g->r1 - g->pad_top + (k - 1) * d : g->height;
    const int64_t rows = end > first ? end - first : 0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t q = 0; q < C * rows; ++q) {
        const int64_t c = q / rows, iy = first + q % rows;
        T *restrict dst = gx + (c * g->height + iy) * g->width;
        if (iy >= fresh) memset(dst, 0, g->width * sizeof(T));
        for (int64_t t = 0; t < kk; ++t) {
            const int64_t row = iy + g->pad_top - (t / k) * d;
            if (row < g->r0 || row >= g->r1) continue;
            const int64_t shift = g->pad_left - (t % k) * d; /* input column ix feeds output column ix + shift */
            const int64_t lo = shift < 0 ? -shift : 0, hi = g->width < wo - shift ? g->width : wo - shift;
            const T *restrict src = gu + (c * kk + t) * n + (row - g->r0) * wo + shift;
#pragma omp simd
            for (int64_t ix = lo; ix < hi; ++ix) dst[ix] += src[ix];
        }
    }
    return end > fresh ? end : fresh;
}
