// CPU softmax cross-entropy with label smoothing (f32), one row at a time: the row maximum, the
// shifted sums in double, then the shared per-sample formulas of kernels/loss_math.h. Every label
// is checked before anything is written, so a bad batch leaves stats and dlogits untouched.
// Each row is read completely before its dlogits are written, so dlogits may alias logits.
// The dispatcher (kernels/loss.cpp) has checked devices, dtypes, shapes and the smoothing; the f32
// dtype and the labels' range are checked here.
#include "kernels/loss.h"

#include <cmath>

#include "kernels/args.h"
#include "kernels/loss_math.h"

namespace lockstep::cpu {

void softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                           float label_smoothing, float grad_scale, Tensor* dlogits, Tensor& stats) {
  const char* op = "softmax_cross_entropy";
  expect_cpu_f32({&logits, &stats}, op);
  if (dlogits) expect_cpu_f32({dlogits}, op);
  const int64_t N = logits.dim(0), K = logits.dim(1);
  const int32_t* y = labels.data<int32_t>();
  for (int64_t n = 0; n < N; ++n)
    LS_CHECK(y[n] >= 0 && y[n] < K, op << ": label " << y[n] << " of sample " << n
                                       << " is outside [0, " << K << ")");

  const int k5 = ls_ce_top5_k(static_cast<int>(K));
  const float* z = logits.data<float>();
  float* dz = dlogits ? dlogits->data<float>() : nullptr;
  double loss_sum = 0, top1 = 0, top5 = 0;
  for (int64_t n = 0; n < N; ++n) {
    const float* row = z + n * K;
    const float zy = row[y[n]];
    float m = row[0];
    for (int64_t k = 1; k < K; ++k) m = std::fmax(m, row[k]);
    double sum_exp = 0, sum_shifted = 0;
    int greater = 0;
    for (int64_t k = 0; k < K; ++k) {
      sum_exp += std::exp(static_cast<double>(row[k]) - m);
      sum_shifted += static_cast<double>(row[k]) - m;
      greater += row[k] > zy;
    }
    const float log_s = static_cast<float>(std::log(sum_exp));
    loss_sum += ls_ce_sample_loss(log_s, zy - m, static_cast<float>(sum_shifted), label_smoothing,
                                  static_cast<int>(K));
    top1 += ls_ce_topk_correct(greater, 1);
    top5 += ls_ce_topk_correct(greater, k5);
    if (dz)
      for (int64_t k = 0; k < K; ++k)
        dz[n * K + k] = ls_ce_dlogit(row[k], m, log_s, k == y[n], label_smoothing, static_cast<int>(K),
                                     grad_scale);
  }
  float* s = stats.data<float>();
  s[0] += static_cast<float>(loss_sum);
  s[1] += static_cast<float>(top1);
  s[2] += static_cast<float>(top5);
}

}  // namespace lockstep::cpu
