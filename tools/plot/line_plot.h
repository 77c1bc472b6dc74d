// Line plots as PNG files, for reports such as "test accuracy against epochs, one line per mode".
// Rendering is plain C++ on an RGB8 raster (tools/plot/canvas.h), encoded by data/'s encode_png,
// and the same inputs always give the same pixels. Axes carry 1/2/5 x 10^k ticks, each series has
// its own colour and a legend entry, and any input that is not an error (no series, empty series,
// NaN values, a constant series) still gives a readable plot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tools/plot/canvas.h"

namespace lockstep::plot {

// One line. Point i is (x[i], y[i]); x and y must have the same length. Points are joined in x
// order (stably sorted, so equal x keep their order). A point with a non-finite y breaks the line
// there; one with a non-finite x has no place on the axis and is dropped. A point with no drawn
// neighbour on either side (a one-point series, or one isolated by breaks) is drawn as a marker.
struct Series {
  std::string label;  // legend text; a series with an empty label has no legend entry
  std::vector<double> x, y;
};

struct PlotSpec {
  std::string title, x_label, y_label;
  int width = 900, height = 600;  // pixels, each in [kMinSide, kMaxSide]
  // Axis limits. One left empty is fitted to the drawn points (and the other limit, if given)
  // with a margin of 5% of the span on y, 2% on x. A zero span (a constant series, one point) is
  // widened by 10% of the value, or by 1 around 0. With no drawn points and no limits: [0, 1].
  // Lines leaving the limits are cut at the frame.
  std::optional<double> x_min, x_max, y_min, y_max;
};

inline constexpr int kMinSide = 200;
inline constexpr int kMaxSide = 8192;

// The colour of the i-th series: 8 distinguishable colours (Tableau's palette without its grey
// and olive), repeating; series 8-15 are drawn dashed so they stay apart from 0-7.
Rgb series_color(size_t i);
bool series_dashed(size_t i);

// Tick positions on [lo, hi]: every multiple of step inside it (a little tolerance at the ends,
// so 1.0 counts as inside [0, 1]), step the smallest 1, 2 or 5 x 10^k giving at most max_ticks
// of them. Values are computed as integer multiples, so 0.6 is 0.6, not 0.6000000000000001.
// Requires finite lo < hi and max_ticks >= 2.
struct Ticks {
  double step = 0;
  std::vector<double> values;
};
Ticks nice_ticks(double lo, double hi, int max_ticks);
// A tick label: as many decimals as the step needs (0.2 -> "0.4", 5 -> "35", 0.05 -> "0.15"),
// %g-style with enough significant digits for very large or very small values; never "-0".
std::string format_tick(double value, double step);

struct Axis {
  double lo = 0, hi = 1;
  Ticks ticks;
};

// Where everything goes; render_line_plot draws exactly this. Exposed so tests (and callers
// adding marks) can map data to pixels.
struct PlotLayout {
  int width = 0, height = 0;
  Rect plot;    // the data area; the frame is drawn on its outermost pixels
  Rect legend;  // empty when no series has a label
  Axis x, y;
  bool has_data = false;  // false: the plot says "no data"
  // Data to pixel coordinates (pixel centres; may lie outside the plot area).
  double px(double vx) const { return plot.x + (vx - x.lo) / (x.hi - x.lo) * (plot.w - 1); }
  double py(double vy) const { return plot.y + (y.hi - vy) / (y.hi - y.lo) * (plot.h - 1); }
};

// Throws lockstep::Error (kernels/error.h) for a size outside [kMinSide, kMaxSide], a given
// minimum not below the maximum, a non-finite limit, or a series whose x and y differ in length
// (naming it).
PlotLayout layout_line_plot(const PlotSpec& spec, const std::vector<Series>& series);

// The plot as RGB8, (height, width, 3), white background. Throws as layout_line_plot.
std::vector<uint8_t> render_line_plot(const PlotSpec& spec, const std::vector<Series>& series);

// render_line_plot, then write_png_rgb.
void write_line_plot_png(const std::filesystem::path& path, const PlotSpec& spec, const std::vector<Series>& series);

// Writes RGB8 pixels, (height, width, 3), as an 8-bit RGB PNG, replacing any file at `path`.
// The parent folder must exist. Throws lockstep::Error naming the path and the reason.
void write_png_rgb(const std::filesystem::path& path, const uint8_t* rgb, int width, int height);

}  // namespace lockstep::plot
