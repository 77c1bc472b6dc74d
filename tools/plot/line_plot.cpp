// Layout, drawing and the PNG file. The layout works from the outside in: the title and the axis
// labels take fixed bands, the widest y tick label sets the left margin, and the x ticks are
// thinned until their labels fit side by side. The legend goes in the corner of the plot area
// where its box covers the least drawn line (matplotlib's loc="best", reduced to four corners),
// so rising accuracy curves push it to the bottom right, falling losses to the top right.
#include "tools/plot/line_plot.h"


#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <tuple>

#include "data/decode.h"
#include "kernels/error.h"

namespace lockstep::plot {
namespace {

constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kInk{34, 34, 34};          // text, ticks
constexpr Rgb kFrame{68, 68, 68};        // the plot area's border
constexpr Rgb kGrid{230, 230, 230};      // lines at the ticks
constexpr Rgb kMuted{140, 140, 140};     // "no data"
constexpr Rgb kLegendEdge{190, 190, 190};

constexpr int kPad = 14;         // outer margin
constexpr int kTick = 5;         // tick mark length, outside the frame
constexpr int kGap = 5;          // tick mark to its label
constexpr int kTitleScale = 2;
constexpr int kLabelGap = 10;    // tick labels to an axis label, title to the plot
constexpr int kRight = kPad + 22;  // room for half the last x tick label
constexpr double kMarginY = 0.05, kMarginX = 0.02;
constexpr int kLineWidth = 2, kMarkerRadius = 3, kDash = 7;

// Legend geometry: a box of rows, each a line swatch then the label.
constexpr int kLegendPad = 7, kSwatch = 22, kLegendRow = 13, kLegendInset = 10;

struct Point {
  double x, y;
};
using Run = std::vector<Point>;

// The drawn pieces of a series: maximal runs of consecutive points, in x order, with finite y.
std::vector<Run> runs_of(const Series& s) {
  std::vector<size_t> order;
  for (size_t i = 0; i < s.x.size(); ++i)
    if (std::isfinite(s.x[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s.x[a] < s.x[b]; });
  std::vector<Run> runs(1);
  for (size_t i : order) {
    if (std::isfinite(s.y[i])) {
      runs.back().push_back({s.x[i], s.y[i]});
    } else if (!runs.back().empty()) {
      runs.emplace_back();
    }
  }
  if (runs.back().empty()) runs.pop_back();
  return runs;
}

bool close_to_zero_span(double lo, double hi) { return hi - lo <= 1e-9 * std::max(std::abs(lo), std::abs(hi)); }

// [lo, hi] for one axis: the given limits, the rest fitted to the data and the given limits with
// `margin` of the span on each side. A zero span (a constant series, or a single point) is
// widened by 10% of the value, or by 1 around 0, so the points sit mid-axis.
std::pair<double, double> fit_range(const char* axis, std::optional<double> min, std::optional<double> max,
                                    bool have_data, double dlo, double dhi, double margin) {
  LS_CHECK(!min || std::isfinite(*min), "plot: " << axis << "_min must be finite (got " << *min << ")");
  LS_CHECK(!max || std::isfinite(*max), "plot: " << axis << "_max must be finite (got " << *max << ")");
  if (min && max) {
    LS_CHECK(*min < *max && !close_to_zero_span(*min, *max),
             "plot: " << axis << "_min (" << *min << ") must be below " << axis << "_max (" << *max << ")");
    return {*min, *max};
  }
  bool have = have_data;
  for (const auto& bound : {min, max}) {
    if (!bound) continue;
    dlo = have ? std::min(dlo, *bound) : *bound;
    dhi = have ? std::max(dhi, *bound) : *bound;
    have = true;
  }
  if (!have) return {0.0, 1.0};
  double lo, hi;
  if (close_to_zero_span(dlo, dhi)) {
    const double mid = 0.5 * (dlo + dhi);
    const double pad = mid != 0 ? 0.1 * std::abs(mid) : 1.0;
    lo = mid - pad;
    hi = mid + pad;
  } else {
    const double span = dhi - dlo;
    lo = dlo - margin * span;
    hi = dhi + margin * span;
  }
  if (min) lo = *min;
  if (max) hi = *max;
  LS_CHECK(std::isfinite(lo) && std::isfinite(hi) && std::isfinite(hi - lo),
           "plot: the " << axis << " values span too wide a range to plot");
  return {lo, hi};
}

int widest_label(const Ticks& t) {
  int w = 0;
  for (double v : t.values) w = std::max(w, text_width(format_tick(v, t.step)));
  return w;
}

std::vector<std::string> legend_labels(const std::vector<Series>& series, int max_width) {
  std::vector<std::string> out;
  for (const Series& s : series) out.push_back(fit_text(s.label, max_width));
  return out;
}

int legend_label_width(const PlotLayout& L) { return std::max(40, L.plot.w / 2 - 2 * kLegendPad - kSwatch); }

// How much of the drawn data a candidate legend box would hide: line length inside it, plus a
// marker's worth for each isolated point.
double covered(const PlotLayout& L, const std::vector<std::vector<Run>>& runs, Rect box) {
  const double x0 = box.x - kLineWidth, y0 = box.y - kLineWidth;
  const double x1 = box.x + box.w + kLineWidth, y1 = box.y + box.h + kLineWidth;
  double total = 0;
  for (const auto& series_runs : runs)
    for (const Run& run : series_runs) {
      if (run.size() == 1) {
        const double px = L.px(run[0].x), py = L.py(run[0].y);
        if (px >= x0 && px <= x1 && py >= y0 && py <= y1) total += 4 * kMarkerRadius;
        continue;
      }
      for (size_t i = 1; i < run.size(); ++i) {
        double ax = L.px(run[i - 1].x), ay = L.py(run[i - 1].y), bx = L.px(run[i].x), by = L.py(run[i].y);
        if (clip_segment(ax, ay, bx, by, x0, y0, x1, y1)) total += std::hypot(bx - ax, by - ay) + 1;
      }
    }
  return total;
}

// 1, 2 or 5 x 10^k as a quotient or product of exact integers, so multiples round once.
double scaled(double n, int k) { return k < 0 ? n / std::pow(10.0, -k) : n * std::pow(10.0, k); }

}  // namespace

Rgb series_color(size_t i) {
  static constexpr Rgb kPalette[8] = {{31, 119, 180}, {255, 127, 14},  {44, 160, 44},  {214, 39, 40},
                                      {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};
  return kPalette[i % 8];
}

bool series_dashed(size_t i) { return i / 8 % 2 == 1; }

Ticks nice_ticks(double lo, double hi, int max_ticks) {
  LS_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi && std::isfinite(hi - lo),
           "nice_ticks: need finite lo < hi (got " << lo << ", " << hi << ")");
  LS_CHECK(max_ticks >= 2, "nice_ticks: max_ticks must be >= 2 (got " << max_ticks << ")");
  constexpr double kTolerance = 1e-9;  // in steps
  // Start one decade below the step that would give exactly max_ticks intervals and walk up.
  for (int k = static_cast<int>(std::floor(std::log10((hi - lo) / max_ticks))) - 1;; ++k)
    for (int m : {1, 2, 5}) {
      const double step = scaled(m, k);  // 0 below the smallest double: no count, next k
      const double first = std::ceil(lo / step - kTolerance), last = std::floor(hi / step + kTolerance);
      if (!(last - first + 1 <= max_ticks)) continue;
      Ticks t;
      t.step = step;
      for (double i = first; i <= last; ++i) t.values.push_back(scaled(i * m, k));
      return t;
    }
}

std::string format_tick(double value, double step) {
  char buf[64];
  if (!(step > 0) || !std::isfinite(step)) {
    std::snprintf(buf, sizeof(buf), "%g", value);
    return buf;
  }
  if (std::abs(value) < 1e-6 * step) value = 0;  // 1e-17 from rounding, or -0
  const double mag = std::abs(value);
  const int step_exp = static_cast<int>(std::floor(std::log10(step) + 1e-9));
  if (step >= 1e-4 && mag < 1e7) {
    std::snprintf(buf, sizeof(buf), "%.*f", std::max(0, -step_exp), value);
  } else {
    const int value_exp = mag > 0 ? static_cast<int>(std::floor(std::log10(mag))) : step_exp;
    std::snprintf(buf, sizeof(buf), "%.*g", std::clamp(value_exp - step_exp + 1, 1, 15), value);
  }
  return buf;
}

PlotLayout layout_line_plot(const PlotSpec& spec, const std::vector<Series>& series) {
  LS_CHECK(spec.width >= kMinSide && spec.width <= kMaxSide && spec.height >= kMinSide && spec.height <= kMaxSide,
           "plot: width and height must be in [" << kMinSide << ", " << kMaxSide << "] (got " << spec.width << "x"
                                                 << spec.height << ")");
  bool have = false;
  double xlo = 0, xhi = 0, ylo = 0, yhi = 0;
  std::vector<std::vector<Run>> runs;
  for (const Series& s : series) {
    LS_CHECK(s.x.size() == s.y.size(), "plot: series '" << s.label << "' has " << s.x.size() << " x values and "
                                                        << s.y.size() << " y values");
    runs.push_back(runs_of(s));
    for (const Run& run : runs.back())
      for (const Point& p : run) {
        xlo = have ? std::min(xlo, p.x) : p.x;
        xhi = have ? std::max(xhi, p.x) : p.x;
        ylo = have ? std::min(ylo, p.y) : p.y;
        yhi = have ? std::max(yhi, p.y) : p.y;
        have = true;
      }
  }

  PlotLayout L;
  L.width = spec.width;
  L.height = spec.height;
  L.has_data = have;
  std::tie(L.x.lo, L.x.hi) = fit_range("x", spec.x_min, spec.x_max, have, xlo, xhi, kMarginX);
  std::tie(L.y.lo, L.y.hi) = fit_range("y", spec.y_min, spec.y_max, have, ylo, yhi, kMarginY);

  const int top = kPad + (spec.title.empty() ? 0 : kGlyphHeight * kTitleScale + kLabelGap);
  const int bottom = kPad + kTick + kGap + kGlyphHeight + (spec.x_label.empty() ? 0 : kLabelGap + kGlyphHeight);
  L.plot.y = top;
  L.plot.h = spec.height - top - bottom;
  L.y.ticks = nice_ticks(L.y.lo, L.y.hi, std::clamp(L.plot.h / 45, 3, 12));

  L.plot.x = kPad + (spec.y_label.empty() ? 0 : kGlyphHeight + kLabelGap) + widest_label(L.y.ticks) + kGap + kTick;
  L.plot.w = spec.width - L.plot.x - kRight;
  // Thin the x ticks until the labels fit with at least two characters' room between them.
  for (int max_ticks = std::clamp(L.plot.w / 50, 3, 15);; --max_ticks) {
    L.x.ticks = nice_ticks(L.x.lo, L.x.hi, max_ticks);
    const int need = static_cast<int>(L.x.ticks.values.size()) * (widest_label(L.x.ticks) + 2 * kGlyphAdvance);
    if (need <= L.plot.w || max_ticks == 3) break;
  }

  // The legend: the same size in every corner, so the corner is picked by what it would hide.
  const std::vector<std::string> labels = legend_labels(series, legend_label_width(L));
  int rows = 0, label_w = 0;
  for (size_t i = 0; i < series.size(); ++i) {
    if (series[i].label.empty()) continue;
    ++rows;
    label_w = std::max(label_w, text_width(labels[i]));
  }
  if (rows > 0) {
    const int w = kLegendPad + kSwatch + kLegendPad + label_w + kLegendPad;
    const int h = 2 * kLegendPad + rows * kLegendRow - (kLegendRow - kGlyphHeight);
    const int left = L.plot.x + kLegendInset, right = L.plot.x + L.plot.w - kLegendInset - w;
    const int upper = L.plot.y + kLegendInset, lower = L.plot.y + L.plot.h - kLegendInset - h;
    const Rect corners[4] = {{right, upper, w, h}, {right, lower, w, h}, {left, upper, w, h}, {left, lower, w, h}};
    double best = -1;
    for (const Rect& r : corners) {
      const double c = covered(L, runs, r);
      if (best < 0 || c < best) {
        best = c;
        L.legend = r;
      }
    }
  }
  return L;
}

std::vector<uint8_t> render_line_plot(const PlotSpec& spec, const std::vector<Series>& series) {
  const PlotLayout L = layout_line_plot(spec, series);
  const Rect& P = L.plot;
  Canvas c(L.width, L.height, kBackground);

  // Grid lines at the ticks, inside the frame.
  for (double v : L.y.ticks.values) {
    const int y = static_cast<int>(std::lround(L.py(v)));
    if (y > P.y && y < P.y + P.h - 1) c.fill_rect({P.x + 1, y, P.w - 2, 1}, kGrid);
  }
  for (double v : L.x.ticks.values) {
    const int x = static_cast<int>(std::lround(L.px(v)));
    if (x > P.x && x < P.x + P.w - 1) c.fill_rect({x, P.y + 1, 1, P.h - 2}, kGrid);
  }

  // The series, clipped to the inside of the frame.
  c.set_clip({P.x + 1, P.y + 1, P.w - 2, P.h - 2});
  for (size_t i = 0; i < series.size(); ++i) {
    const Rgb color = series_color(i);
    const int dash = series_dashed(i) ? kDash : 0;
    for (const Run& run : runs_of(series[i])) {
      if (run.size() == 1) {
        c.marker(static_cast<int>(std::lround(L.px(run[0].x))), static_cast<int>(std::lround(L.py(run[0].y))),
                 kMarkerRadius, color);
        continue;
      }
      int phase = 0;
      for (size_t j = 1; j < run.size(); ++j)
        phase = c.line(L.px(run[j - 1].x), L.py(run[j - 1].y), L.px(run[j].x), L.py(run[j].y), color, kLineWidth,
                       dash, phase);
    }
  }
  c.reset_clip();
  if (!L.has_data)
    c.text(P.x + P.w / 2, P.y + P.h / 2 - kGlyphHeight, "no data", kMuted, 2, Align::center);
  c.stroke_rect(P, kFrame);

  // Ticks and their labels; a label's 7-pixel capitals are centred on its tick.
  for (double v : L.y.ticks.values) {
    const int y = static_cast<int>(std::lround(L.py(v)));
    c.fill_rect({P.x - kTick, y, kTick, 1}, kInk);
    c.text(P.x - kTick - kGap, y - 3, format_tick(v, L.y.ticks.step), kInk, 1, Align::right);
  }
  for (double v : L.x.ticks.values) {
    const int x = static_cast<int>(std::lround(L.px(v)));
    c.fill_rect({x, P.y + P.h, 1, kTick}, kInk);
    c.text(x, P.y + P.h + kTick + kGap, format_tick(v, L.x.ticks.step), kInk, 1, Align::center);
  }

  // Title centred on the plot area (kept inside the image), axis labels centred on their axes.
  if (!spec.title.empty()) {
    const std::string title = fit_text(spec.title, L.width - 2 * kPad, kTitleScale);
    const int half = text_width(title, kTitleScale) / 2;
    const int cx = std::clamp(P.x + P.w / 2, kPad + half, L.width - kPad - half);
    c.text(cx, kPad, title, kInk, kTitleScale, Align::center);
  }
  if (!spec.x_label.empty())
    c.text(P.x + P.w / 2, P.y + P.h + kTick + kGap + kGlyphHeight + kLabelGap,
           fit_text(spec.x_label, L.width - 2 * kPad), kInk, 1, Align::center);
  if (!spec.y_label.empty())
    c.text_up(kPad, P.y + P.h / 2, fit_text(spec.y_label, P.h), kInk, 1, Align::center);

  if (!L.legend.empty()) {
    const Rect& B = L.legend;
    c.fill_rect(B, kBackground);
    c.stroke_rect(B, kLegendEdge);
    const std::vector<std::string> labels = legend_labels(series, legend_label_width(L));
    int y = B.y + kLegendPad;
    for (size_t i = 0; i < series.size(); ++i) {
      if (series[i].label.empty()) continue;
      const int mid = y + 3;
      const std::vector<Run> runs = runs_of(series[i]);
      const bool markers_only =
          !runs.empty() && std::all_of(runs.begin(), runs.end(), [](const Run& r) { return r.size() == 1; });
      if (markers_only)
        c.marker(B.x + kLegendPad + kSwatch / 2, mid, kMarkerRadius, series_color(i));
      else
        c.line(B.x + kLegendPad, mid, B.x + kLegendPad + kSwatch - 1, mid, series_color(i), kLineWidth,
               series_dashed(i) ? kDash / 2 : 0);
      c.text(B.x + 2 * kLegendPad + kSwatch, y, labels[i], kInk);
      y += kLegendRow;
    }
  }
  return std::move(c).take_pixels();
}

void write_line_plot_png(const std::filesystem::path& path, const PlotSpec& spec, const std::vector<Series>& series) {
  const std::vector<uint8_t> rgb = render_line_plot(spec, series);
  write_png_rgb(path, rgb.data(), spec.width, spec.height);
}

void write_png_rgb(const std::filesystem::path& path, const uint8_t* rgb, int width, int height) {
  if (!rgb || width <= 0 || height <= 0)
    throw Error("cannot write PNG '" + path.string() + "': no pixels (" + std::to_string(width) + "x" +
                std::to_string(height) + ")");
  std::vector<uint8_t> bytes;
  try {
    bytes = data::encode_png(rgb, width, height);  // the project's one PNG encoder
  } catch (const Error& e) {
    throw Error("cannot write PNG '" + path.string() + "': " + e.what());
  }
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> f(std::fopen(path.c_str(), "wb"));
  if (!f) throw Error("cannot write PNG '" + path.string() + "': " + std::strerror(errno));
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size())
    throw Error("cannot write PNG '" + path.string() + "': " + std::strerror(errno));
  if (std::fclose(f.release()) != 0) throw Error("cannot write PNG '" + path.string() + "': " + std::strerror(errno));
}

}  // namespace lockstep::plot
