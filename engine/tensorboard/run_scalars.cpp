#include "engine/tensorboard/run_scalars.h"

#include <nlohmann/json.hpp>

namespace lockstep::engine::tensorboard {

namespace {

float per(double x, double over) { return over > 0 ? static_cast<float>(x / over) : 0.f; }
float f(double x) { return static_cast<float>(x); }

}  // namespace

ScalarEvent step_scalars(const StepRecord& r) {
  ScalarEvent e{r.update, {{"train/loss", f(r.loss)},
                           {"train/top1", f(r.top1)},
                           {"train/top5", f(r.top5)},
                           {"train/lr", f(r.lr)},
                           {"train/images_per_s", f(r.img_per_s)},
                           {"train/data_wait_fraction", per(r.wait_s, r.interval_s)},
                           {"train/bytes_sent_per_step", per(static_cast<double>(r.bytes_sent),
                                                             static_cast<double>(r.interval_updates))},
                           {"train/skipped_steps", f(static_cast<double>(r.skipped_updates))},
                           {"train/comm_exposed_fraction", per(r.comm_s, r.interval_s)}}};
  return e;
}

ScalarEvent eval_scalars(const EvalRecord& r) {
  return {r.update,
          {{"eval/loss", f(r.loss)}, {"eval/top1", f(r.top1)}, {"eval/top5", f(r.top5)}, {"eval/epoch", f(r.epoch)}}};
}

ScalarEvent record_scalars(const nlohmann::json& j) {
  ScalarEvent e;
  const std::string type = j.value("type", "");
  if (type != "async" && type != "backup") return e;
  e.step = j.at("update").get<int64_t>();
  if (type == "async") {
    e.scalars = {{"async/staleness_mean", j.at("staleness_mean").get<float>()},
                 {"async/staleness_max", j.at("staleness_max").get<float>()},
                 {"async/active_workers", j.at("active_workers").get<float>()}};
  } else {
    int64_t dropped = 0;
    for (const nlohmann::json& d : j.at("dropped")) dropped += d.get<int64_t>();
    e.scalars = {{"backup/dropped_gradients", f(static_cast<double>(dropped))}};
  }
  return e;
}

}  // namespace lockstep::engine::tensorboard
