// interp_grad.c — reference kernels of the fused backward ops that gradient
// rules emit (grad.c). Written from the math, loop by loop, like interp.c:
// they are the oracle generated backward code is compared against, and the
// finite-difference suite checks them in turn.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bpcc.h"

#define SQRT_2_OVER_PI 0.7978845608028654
#define INV_SQRT_2PI 0.3989422804014327

// d gelu / dx: tanh form (approximate) as GPT-2, or the exact erf form.
double s_gelu_grad(const double *x, const Attr *a) {
  double v = x[0];
  if (a->b[0]) {
    double u = SQRT_2_OVER_PI * (v + 0.044715 * v * v * v);
    double t = tanh(u);
    return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * v * v);
  }
  return 0.5 * erfc(-v / sqrt(2.0)) + v * INV_SQRT_2PI * exp(-0.5 * v * v);  // erfc: exact in the far tail
}

// Index of x's element i in the keepdims-shaped reduction result.
static int64_t kept_index(const Shape *x, const bool *reduced, int64_t i) {
  int64_t k = 0, stride = 1;
  for (int d = x->rank - 1; d >= 0; d--) {
    int64_t c = i % x->d[d];
    i /= x->d[d];
    if (!reduced[d]) k += c * stride, stride *= x->d[d];
  }
  return k;
}

// gy goes to the first extremal element of each reduced group.
void interp_maxmin_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *gy = in[1];
  bool reduced[BPC_MAX_RANK] = {0};
  for (int i = 0; i < n->attr.naxes; i++) reduced[n->attr.axes[i]] = true;
  int64_t nx = shape_numel(&x->shape), ng = shape_numel(&gy->shape);
  int64_t *best = malloc(sizeof(int64_t) * (size_t)ng);
  for (int64_t k = 0; k < ng; k++) best[k] = -1;
  bool is_min = n->attr.b[1];
  for (int64_t i = 0; i < nx; i++) {
    int64_t k = kept_index(&x->shape, reduced, i);
    double v = x->v[i];
    if (best[k] < 0 || (is_min ? v < x->v[best[k]] : v > x->v[best[k]])) best[k] = i;
  }
  for (int64_t k = 0; k < ng; k++) out->v[best[k]] = gy->v[k];
  free(best);
}

// Zeros of the input's shape with gy placed at [start, stop) along axis.
void interp_slice_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Shape *s = &out->shape;
  int axis = (int)n->attr.i[2];
  int64_t lo = n->attr.i[0], len = n->attr.i[1] - lo, dim = s->d[axis];
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= s->d[d];
  for (int d = axis + 1; d < s->rank; d++) inner *= s->d[d];
  for (int64_t o = 0; o < outer; o++)
    memcpy(out->v + (o * dim + lo) * inner, in[0]->v + o * len * inner, sizeof(double) * (size_t)(len * inner));
}

// table gradient: rows of gy summed into the rows their ids picked.
void interp_embedding_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *ids = in[0], *gy = in[1];
  int64_t V = out->shape.d[0], C = out->shape.d[1], N = shape_numel(&ids->shape);
  for (int64_t i = 0; i < N; i++) {
    int64_t id = (int64_t)ids->v[i];
    if (id < 0 || id >= V) continue;  // the forward kernel reports it
    for (int64_t c = 0; c < C; c++) out->v[id * C + c] += gy->v[i * C + c];
  }
}

void interp_embedding_grad_add(Interp *it, const Node *n, Value *out, const Value *const *in) {
  memcpy(out->v, in[2]->v, sizeof(double) * (size_t)shape_numel(&out->shape));
  interp_embedding_grad(it, n, out, in);  // adds the rows onto it
}

static double chan(const Value *p, int64_t c) {  // gamma broadcast to [C]
  return shape_numel(&p->shape) == 1 ? p->v[0] : p->v[c];
}

// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row.
void interp_layer_norm_dx(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *gamma = in[1], *gy = in[2];
  int64_t C = x->shape.d[x->shape.rank - 1], rows = shape_numel(&x->shape) / C;
  double eps = n->attr.f[0];
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x->v + r * C, *gr = gy->v + r * C;
    double mean = 0, var = 0, m1 = 0, m2 = 0;
    for (int64_t c = 0; c < C; c++) mean += xr[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    double rstd = 1 / sqrt(var / (double)C + eps);
    for (int64_t c = 0; c < C; c++) {
      double dxh = gr[c] * chan(gamma, c), xh = (xr[c] - mean) * rstd;
      m1 += dxh, m2 += dxh * xh;
    }
    m1 /= (double)C, m2 /= (double)C;
    for (int64_t c = 0; c < C; c++) {
      double dxh = gr[c] * chan(gamma, c), xh = (xr[c] - mean) * rstd;
      out->v[r * C + c] = rstd * (dxh - m1 - xh * m2);
    }
  }
}

// y = g x r, r = (mean(x^2) + eps)^-1/2: dx_j = r g_j gy_j - r^3 x_j / C * sum_i gy_i g_i x_i
void interp_rms_norm_dx(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *gamma = in[1], *gy = in[2];
  int64_t C = x->shape.d[x->shape.rank - 1], rows = shape_numel(&x->shape) / C;
  for (int64_t r = 0; r < rows; r++) {
    const double *xr = x->v + r * C, *gr = gy->v + r * C;
    double ms = 0, dot = 0;
    for (int64_t c = 0; c < C; c++) ms += xr[c] * xr[c], dot += gr[c] * chan(gamma, c) * xr[c];
    double rs = 1 / sqrt(ms / (double)C + n->attr.f[0]);
    for (int64_t c = 0; c < C; c++)
      out->v[r * C + c] = rs * chan(gamma, c) * gr[c] - rs * rs * rs * xr[c] * dot / (double)C;
  }
}

// As layer_norm_dx, but the statistics run over every axis but the last.
void interp_batch_norm_dx(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *x = in[0], *gamma = in[1], *gy = in[2];
  int64_t C = x->shape.d[x->shape.rank - 1], N = shape_numel(&x->shape) / C;
  for (int64_t c = 0; c < C; c++) {
    double mean = 0, var = 0, m1 = 0, m2 = 0;
    for (int64_t i = 0; i < N; i++) mean += x->v[i * C + c];
    mean /= (double)N;
    for (int64_t i = 0; i < N; i++) var += (x->v[i * C + c] - mean) * (x->v[i * C + c] - mean);
    double rstd = 1 / sqrt(var / (double)N + n->attr.f[0]), g = chan(gamma, c);
    for (int64_t i = 0; i < N; i++) {
      double dxh = gy->v[i * C + c] * g, xh = (x->v[i * C + c] - mean) * rstd;
      m1 += dxh, m2 += dxh * xh;
    }
    m1 /= (double)N, m2 /= (double)N;
    for (int64_t i = 0; i < N; i++) {
      double dxh = gy->v[i * C + c] * g, xh = (x->v[i * C + c] - mean) * rstd;
      out->v[i * C + c] = rstd * (dxh - m1 - xh * m2);
    }
  }
}

// Per batch and head: S = Q K^T * scale (masked), P = softmax(S), O = P V.
// dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)), dQ = dS K * scale,
// dK = dS^T Q * scale. attr.i[1] picks which of dQ, dK, dV this node is; 3: all
// three, flattened one after the other (dq, dk, dv).
static void attention_grad_masked(const Node *n, Value *out, const Value *const *in, const double *mask) {
  const Value *q = in[0], *k = in[1], *v = in[2], *gy = in[3];
  int64_t B = q->shape.d[0], Tq = q->shape.d[1], Tk = k->shape.d[1], C = q->shape.d[2];
  int64_t H = n->attr.i[0], hs = C / H;
  int which = (int)n->attr.i[1];
  double scale = 1 / sqrt((double)hs);
  double *P = malloc(sizeof(double) * (size_t)(Tq * Tk)), *dS = malloc(sizeof(double) * (size_t)(Tq * Tk));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const double *Q = q->v + b * Tq * C + h * hs, *K = k->v + b * Tk * C + h * hs;
      const double *Vv = v->v + b * Tk * C + h * hs, *dO = gy->v + b * Tq * C + h * hs;
      for (int64_t i = 0; i < Tq; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < Tk; j++) {
          double s = -INFINITY;
          if (attention_key(n, mask, b, Tk, i, j)) {
            s = 0;
            for (int64_t c = 0; c < hs; c++) s += Q[i * C + c] * K[j * C + c];
            s *= scale;
          }
          P[i * Tk + j] = s;
          if (s > mx) mx = s;
        }
        for (int64_t j = 0; j < Tk; j++) sum += P[i * Tk + j] = mx == -INFINITY ? 0 : exp(P[i * Tk + j] - mx);
        if (sum == 0) sum = 1;  // no key: P = 0, so the row passes no gradient
        double dot = 0;
        for (int64_t j = 0; j < Tk; j++) {
          P[i * Tk + j] /= sum;
          double dp = 0;
          for (int64_t c = 0; c < hs; c++) dp += dO[i * C + c] * Vv[j * C + c];
          dS[i * Tk + j] = dp;
          dot += dp * P[i * Tk + j];
        }
        for (int64_t j = 0; j < Tk; j++) dS[i * Tk + j] = P[i * Tk + j] * (dS[i * Tk + j] - dot);
      }
      for (int w = 0; w < 3; w++) {
        if (which != 3 && which != w) continue;
        int64_t base = which == 3 ? attention_grad_offset(&q->shape, &k->shape, w) : 0;
        double *O = out->v + base + b * (w == 0 ? Tq : Tk) * C + h * hs;
        for (int64_t i = 0; i < Tq; i++)
          for (int64_t j = 0; j < Tk; j++)
            for (int64_t c = 0; c < hs; c++) {
              if (w == 0)
                O[i * C + c] += dS[i * Tk + j] * K[j * C + c] * scale;
              else if (w == 1)
                O[j * C + c] += dS[i * Tk + j] * Q[i * C + c] * scale;
              else
                O[j * C + c] += P[i * Tk + j] * dO[i * C + c];
            }
      }
    }
  free(P);
  free(dS);
}

void interp_attention_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  int m = node_operand(n, "mask");
  attention_grad_masked(n, out, in, m >= 0 ? in[m]->v : NULL);
}

// q, k and v of a packed [B, T, 3C] x as values of their own.
static void unpack_qkv(const Value *x, Value *qkv, double **bufs) {
  int64_t B = x->shape.d[0], T = x->shape.d[1], C = x->shape.d[2] / 3;
  for (int w = 0; w < 3; w++) {
    bufs[w] = xmalloc(sizeof(double) * (size_t)(B * T * C));
    for (int64_t r = 0; r < B * T; r++) memcpy(bufs[w] + r * C, x->v + r * 3 * C + w * C, sizeof(double) * (size_t)C);
    qkv[w] = *x;
    qkv[w].shape.d[2] = C;
    qkv[w].v = bufs[w];
  }
}

void interp_attention_qkv(Interp *it, const Node *n, Value *out, const Value *const *in) {
  Value qkv[3];
  double *bufs[3];
  unpack_qkv(in[0], qkv, bufs);
  const Value *args[3] = {&qkv[0], &qkv[1], &qkv[2]};
  int m = node_operand(n, "mask");
  interp_attention_masked(n, out, args, m >= 0 ? in[m]->v : NULL);  // heads (i0), causal (b0): the same slots
  for (int w = 0; w < 3; w++) free(bufs[w]);
}

// dq, dk, dv (attention_grad with which = 3, flattened) interleaved back into [B, T, 3C].
void interp_attention_qkv_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  Value qkv[3], flat = *out;
  double *bufs[3];
  unpack_qkv(in[0], qkv, bufs);
  int64_t BT = in[0]->shape.d[0] * in[0]->shape.d[1], C = in[0]->shape.d[2] / 3;
  flat.v = xcalloc((size_t)(3 * BT * C), sizeof(double));
  Node g = *n;
  g.attr.i[1] = 3;
  const Value *args[4] = {&qkv[0], &qkv[1], &qkv[2], in[1]};
  int m = node_operand(n, "mask");
  attention_grad_masked(&g, &flat, args, m >= 0 ? in[m]->v : NULL);
  for (int w = 0; w < 3; w++)
    for (int64_t r = 0; r < BT; r++)
      memcpy(out->v + r * 3 * C + w * C, flat.v + w * BT * C + r * C, sizeof(double) * (size_t)C);
  free(flat.v);
  for (int w = 0; w < 3; w++) free(bufs[w]);
}

// gy with zeros where causal_mask put -inf (column > row of the last two axes).
void interp_causal_mask_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Shape *s = &out->shape;
  int64_t R = s->d[s->rank - 2], Cc = s->d[s->rank - 1], N = shape_numel(s);
  for (int64_t i = 0; i < N; i++) {
    int64_t col = i % Cc, row = (i / Cc) % R;
    out->v[i] = col > row ? 0 : in[0]->v[i];
  }
}

// x [N,H,W,Ci], w [KH,KW,Ci,Co], gy [N,OH,OW,Co]: the two adjoints of conv2d.
static void conv_adjoint(const Value *x, const Value *w, const Value *gy, Value *dx, Value *dw, int64_t s, int64_t p,
                         const Shape *xs, const Shape *ws) {
  int64_t N = xs->d[0], H = xs->d[1], W = xs->d[2], Ci = xs->d[3];
  int64_t KH = ws->d[0], KW = ws->d[1], Co = ws->d[3];
  int64_t OH = gy->shape.d[1], OW = gy->shape.d[2];
  for (int64_t b = 0; b < N; b++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        for (int64_t kh = 0; kh < KH; kh++)
          for (int64_t kw = 0; kw < KW; kw++) {
            int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            for (int64_t ci = 0; ci < Ci; ci++)
              for (int64_t co = 0; co < Co; co++) {
                double g = gy->v[((b * OH + oh) * OW + ow) * Co + co];
                int64_t xi = ((b * H + ih) * W + iw) * Ci + ci, wi = ((kh * KW + kw) * Ci + ci) * Co + co;
                if (dx) dx->v[xi] += g * w->v[wi];
                if (dw) dw->v[wi] += g * x->v[xi];
              }
          }
}

void interp_conv2d_dx(Interp *it, const Node *n, Value *out, const Value *const *in) {
  conv_adjoint(NULL, in[1], in[0], out, NULL, n->attr.i[0], n->attr.i[1], &out->shape, &in[1]->shape);
}

void interp_conv2d_dw(Interp *it, const Node *n, Value *out, const Value *const *in) {
  conv_adjoint(in[0], NULL, in[1], NULL, out, n->attr.i[0], n->attr.i[1], &in[0]->shape, &out->shape);
}

static void pool_adjoint(const Node *n, Value *out, const Value *x, const Value *gy, bool is_max) {
  int64_t N = x->shape.d[0], H = x->shape.d[1], W = x->shape.d[2], C = x->shape.d[3];
  int64_t K = n->attr.i[0], S = n->attr.i[1], OH = gy->shape.d[1], OW = gy->shape.d[2];
  for (int64_t b = 0; b < N; b++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++)
        for (int64_t c = 0; c < C; c++) {
          double g = gy->v[((b * OH + oh) * OW + ow) * C + c];
          int64_t best = -1;
          for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
              int64_t xi = ((b * H + oh * S + kh) * W + ow * S + kw) * C + c;
              if (!is_max)
                out->v[xi] += g / (double)(K * K);
              else if (best < 0 || x->v[xi] > x->v[best])
                best = xi;  // first maximum wins
            }
          if (is_max) out->v[best] += g;
        }
}

void interp_max_pool2d_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  pool_adjoint(n, out, in[0], in[1], true);
}

void interp_avg_pool2d_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  pool_adjoint(n, out, in[0], in[1], false);
}

// (softmax(row) - onehot(label)) * gy / (number of label positions)
void interp_cross_entropy_grad(Interp *it, const Node *n, Value *out, const Value *const *in) {
  const Value *l = in[0], *y = in[1];
  int64_t K = l->shape.d[l->shape.rank - 1], rows = shape_numel(&l->shape) / K;
  double scale = in[2]->v[0] / (double)rows;
  for (int64_t r = 0; r < rows; r++) {
    const double *x = l->v + r * K;
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < K; c++) mx = x[c] > mx ? x[c] : mx;
    for (int64_t c = 0; c < K; c++) sum += exp(x[c] - mx);
    int64_t label = (int64_t)y->v[r];
    for (int64_t c = 0; c < K; c++) out->v[r * K + c] = (exp(x[c] - mx) / sum - (c == label)) * scale;
  }
}

// A copy of v with its last two axes swapped.
static Value swapped_last2(const Value *v) {
  Value t = {.shape = v->shape, .dtype = v->dtype};
  int r = v->shape.rank;
  int64_t R = v->shape.d[r - 2], Cc = v->shape.d[r - 1], N = shape_numel(&v->shape);
  t.shape.d[r - 2] = Cc, t.shape.d[r - 1] = R;
  t.v = xmalloc(sizeof(double) * (size_t)N);
  for (int64_t i = 0; i < N; i++) {
    int64_t base = i / (R * Cc) * (R * Cc), row = i / Cc % R, col = i % Cc;
    t.v[base + col * R + row] = v->v[i];
  }
  return t;
}

// matmul with transpose_a / transpose_b: the operands transposed explicitly,
// then the plain kernel (interp.c).
void interp_matmul_t(Interp *it, const Node *n, Value *out, const Value *const *in) {
  Value a = n->attr.b[0] ? swapped_last2(in[0]) : *in[0];
  Value b = n->attr.b[1] ? swapped_last2(in[1]) : *in[1];
  const Value *ops[2] = {&a, &b};
  interp_matmul(it, n, out, ops);
  if (n->attr.b[0]) free(a.v);
  if (n->attr.b[1]) free(b.v);
}
