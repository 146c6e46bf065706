// kernels_lce_t.h — linear_cross_entropy's row pass (compiler/lce.c),
// included by kernels_t.h once per element type (not for bf16 products).
// One row block's logits [R, V] are computed, and used, by bpck_gemm calls of
// their own (compiler/lower_loss.c's lower_lce); this pass sits between them.

// Rows [begin, end) of the block at l (rows, V): row_loss[r] = logsumexp(l[r])
// - l[r, y[r]]; with gy, l[r] becomes the loss's gradient in place,
// (softmax(l[r]) - onehot(y[r])) * gy[0] / total_rows. A label outside
// [0, V) is reported and its row's loss and gradient are 0. Range: rows.
void FN(bpck_lce_rows)(T *row_loss, T *l, const int32_t *labels, const T *gy, int64_t total_rows, int64_t V,
                       int64_t *status, int64_t begin, int64_t end) {
  T scale = gy ? gy[0] / (T)total_rows : 0;
  for (int64_t r = begin; r < end; r++) {
    T *xr = l + r * V;
    int64_t y = labels[r];
    if (y < 0 || y >= V) {
      FN(report)(status, BPCK_ERR_LABEL, y, V);
      row_loss[r] = 0;
      for (int64_t c = 0; gy && c < V; c++) xr[c] = 0;
      continue;
    }
    T m = FN(fmax_row)(xr, V, 1), ly = xr[y];
    if (!gy) {
      row_loss[r] = m + LOG_T(FN(sum_exp)(xr, V, m)) - ly;
      continue;
    }
    T s = FN(exp_sum_row)(xr, xr, V, m);  // in place: each element read before it is written
    row_loss[r] = m + LOG_T(s) - ly;
    T a = scale / s;
    for (int64_t c = 0; c < V; c++) xr[c] *= a;
    xr[y] -= scale;
  }
}
