/* Fused CPU kernels of the modulated convolution: the per-slab elementwise work of
 * depthsr/ops/slab_engine.py, each in one pass (the GEMMs around them stay in PyTorch).
 * The kernels themselves are in modulated_conv_kernels.h, instantiated below for float and double.
 *
 * One call works on one slab: output rows [r0, r1) of one image, n = (r1 - r0) * W_out pixels.
 *   x      C x H x W            the image's input features
 *   e_ch   C planes of n        PAKA: exp(-2 a_ch) of the slab (plane stride H_out * W_out); NULL for PAC
 *   e_sp   k*k planes of n      PAKA: exp(-2 a_sp); PAC: the kernel values themselves
 *   u      C x k*k x n          the modulated taps m(c, t, i) * x_c(i + t), zero outside the image
 * with m = 2 / (1 + e_ch * e_sp) = 1 + tanh(a_ch + a_sp) (PAKA) or m = e_sp (PAC).
 * Work is split into segments of one output row; threads never write the same element.
 * Built once per machine by depthsr/ops/native.py.
 */
#include <stdint.h>
#include <string.h>

typedef struct {
    int64_t height, width, channels; /* input image */
    int64_t out_height, out_width;   /* output image (planes of e_ch, e_sp, g_ch, g_sp) */
    int64_t kernel, dilation, pad_top, pad_left;
    int64_t r0, r1; /* output rows of this slab */
} slab_t;

#define SEGMENT 256 /* output columns per unit of work */

/* One unit of work: output row `row` (slab pixel p0 is its column 0), columns [j0, j1). */
typedef struct {
    int64_t row, p0, j0, j1;
} segment_t;

static inline int64_t segment_count(const slab_t *g) {
    return (g->r1 - g->r0) * ((g->out_width + SEGMENT - 1) / SEGMENT);
}

static inline segment_t segment(const slab_t *g, int64_t s) {
    const int64_t per_row = (g->out_width + SEGMENT - 1) / SEGMENT, j0 = (s % per_row) * SEGMENT;
    const segment_t seg = {g->r0 + s / per_row, (s / per_row) * g->out_width, j0,
                           j0 + SEGMENT < g->out_width ? j0 + SEGMENT : g->out_width};
    return seg;
}

/* Tap t of channel c in a segment: the offsets of its input row in x (shifted so that output column j reads
   element j), of its row in the planes of e_sp and g_sp, and of its row in u and gu; [lo, hi) are the columns
   that read inside the image (none when the tap's input row is padding). */
typedef struct {
    int64_t x, sp, u, lo, hi;
} tap_t;

static inline tap_t tap(const slab_t *g, const segment_t *seg, int64_t c, int64_t t) {
    const int64_t iy = seg->row - g->pad_top + (t / g->kernel) * g->dilation;
    const int64_t shift = g->pad_left - (t % g->kernel) * g->dilation; /* output column j reads j - shift */
    const int64_t kk = g->kernel * g->kernel, n = (g->r1 - g->r0) * g->out_width;
    tap_t r = {(c * g->height + iy) * g->width - shift, t * g->out_height * g->out_width + seg->p0,
               (c * kk + t) * n + seg->p0, seg->j0 > shift ? seg->j0 : shift,
               seg->j1 < g->width + shift ? seg->j1 : g->width + shift};
    if (iy < 0 || iy >= g->height || r.hi < r.lo) r.lo = r.hi = seg->j1;
    return r;
}

#define T float
#define SUFFIX(name) name##_f32
#include "modulated_conv_kernels.h"
#undef T
#undef SUFFIX

#define T double
#define SUFFIX(name) name##_f64
#include "modulated_conv_kernels.h"
#undef T
#undef SUFFIX
