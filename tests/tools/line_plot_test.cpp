// tools/plot: tick choice and labels, where a rendered plot puts its series, breaks, markers and
// legend (checked on the pixels, through the layout's data-to-pixel mapping), the PNG file read
// back through libpng (data::Decoder), and the errors.
#include "tools/plot/line_plot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "data/decode.h"
#include "kernels/error.h"

namespace lockstep::plot {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr Rgb kWhite{255, 255, 255};

Rgb pixel_at(const std::vector<uint8_t>& rgb, const PlotLayout& L, int x, int y) {
  const size_t i = (static_cast<size_t>(y) * L.width + x) * 3;
  return {rgb[i], rgb[i + 1], rgb[i + 2]};
}

// Pixels of colour c within `radius` of where data point (x, y) maps.
int count_near(const std::vector<uint8_t>& rgb, const PlotLayout& L, double x, double y, Rgb c, int radius = 2) {
  const int cx = static_cast<int>(std::lround(L.px(x))), cy = static_cast<int>(std::lround(L.py(y)));
  int n = 0;
  for (int py = cy - radius; py <= cy + radius; ++py)
    for (int px = cx - radius; px <= cx + radius; ++px)
      if (px >= 0 && py >= 0 && px < L.width && py < L.height && pixel_at(rgb, L, px, py) == c) ++n;
  return n;
}

int count_in(const std::vector<uint8_t>& rgb, const PlotLayout& L, Rect r, bool (*pred)(Rgb)) {
  int n = 0;
  for (int y = r.y; y < r.y + r.h; ++y)
    for (int x = r.x; x < r.x + r.w; ++x) n += pred(pixel_at(rgb, L, x, y));
  return n;
}

bool dark_gray(Rgb c) { return c.r == c.g && c.g == c.b && c.r < 160; }  // text, not grid or box edges

Series line(std::string label, std::vector<double> x, std::vector<double> y) {
  return {std::move(label), std::move(x), std::move(y)};
}

std::filesystem::path temp_png(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("lockstep_line_plot_test_" + name + ".png");
}

TEST(NiceTicks, UnitRangeStepsByFifths) {
  const Ticks t = nice_ticks(0, 1, 6);
  EXPECT_EQ(t.step, 0.2);
  // Exact: each value is an integer over a power of ten, so it is the double nearest the decimal.
  EXPECT_EQ(t.values, (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
}

TEST(NiceTicks, InnerRangeKeepsOnlyTicksInside) {
  EXPECT_EQ(nice_ticks(0.13, 0.87, 6).values, (std::vector<double>{0.2, 0.4, 0.6, 0.8}));
  EXPECT_EQ(nice_ticks(0.13, 0.87, 7).values, (std::vector<double>{0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}));
}

TEST(NiceTicks, IntegerRangesUseOneTwoFive) {
  EXPECT_EQ(nice_ticks(0, 37, 6).values, (std::vector<double>{0, 10, 20, 30}));
  EXPECT_EQ(nice_ticks(0, 37, 8).values, (std::vector<double>{0, 5, 10, 15, 20, 25, 30, 35}));
  EXPECT_EQ(nice_ticks(0, 3600, 8).step, 500);
  EXPECT_EQ(nice_ticks(-1.5, 2.5, 5).values, (std::vector<double>{-1, 0, 1, 2}));
  EXPECT_EQ(nice_ticks(1e-5, 5e-5, 5).values, (std::vector<double>{1e-5, 2e-5, 3e-5, 4e-5, 5e-5}));
}

TEST(NiceTicks, RejectsEmptyRangeAndTooFewTicks) {
  EXPECT_THROW(nice_ticks(1, 1, 5), Error);
  EXPECT_THROW(nice_ticks(2, 1, 5), Error);
  EXPECT_THROW(nice_ticks(0, kNaN, 5), Error);
  EXPECT_THROW(nice_ticks(0, 1, 1), Error);
  EXPECT_THROW(nice_ticks(-1e308, 1e308, 5), Error);  // the span overflows
  EXPECT_EQ(nice_ticks(0, 1e-310, 5).values, std::vector<double>{0});  // denormal: ends, one tick
}

TEST(FormatTick, DecimalsFollowTheStep) {
  EXPECT_EQ(format_tick(0.4, 0.2), "0.4");
  EXPECT_EQ(format_tick(35, 5), "35");
  EXPECT_EQ(format_tick(0.15, 0.05), "0.15");
  EXPECT_EQ(format_tick(1500, 500), "1500");
  EXPECT_EQ(format_tick(1e-17, 0.1), "0.0");
  EXPECT_EQ(format_tick(-1e-17, 0.1), "0.0");  // never "-0.0"
  EXPECT_EQ(format_tick(2e7, 5e6), "2e+07");
}

TEST(LinePlot, ConstantSeriesSitsMidAxis) {
  const PlotSpec spec;
  const PlotLayout L = layout_line_plot(spec, {line("c", {0, 1, 2, 3}, {0.5, 0.5, 0.5, 0.5})});
  EXPECT_LT(L.y.lo, 0.5);
  EXPECT_GT(L.y.hi, 0.5);
  EXPECT_NEAR(0.5 * (L.y.lo + L.y.hi), 0.5, 1e-12);
  EXPECT_GE(L.y.ticks.values.size(), 2u);
  const std::vector<uint8_t> rgb = render_line_plot(spec, {line("c", {0, 1, 2, 3}, {0.5, 0.5, 0.5, 0.5})});
  EXPECT_GT(count_near(rgb, L, 1.5, 0.5, series_color(0)), 0);

  const PlotLayout Z = layout_line_plot(spec, {line("z", {0, 1}, {0, 0})});  // constant zero
  EXPECT_EQ(Z.y.lo, -1);
  EXPECT_EQ(Z.y.hi, 1);
}

TEST(LinePlot, SeriesAppearInTheirColoursWhereTheyMap) {
  PlotSpec spec;
  spec.title = "two lines";
  const std::vector<Series> s = {line("", {0, 10}, {0, 1}), line("", {0, 10}, {0.8, 0.9})};
  const PlotLayout L = layout_line_plot(spec, s);
  const std::vector<uint8_t> rgb = render_line_plot(spec, s);
  ASSERT_EQ(rgb.size(), size_t(spec.width) * spec.height * 3);
  EXPECT_TRUE(L.legend.empty());  // no labels, no legend
  EXPECT_GT(count_near(rgb, L, 5, 0.5, series_color(0)), 0);   // mid-segment of each line
  EXPECT_GT(count_near(rgb, L, 5, 0.85, series_color(1)), 0);
  EXPECT_EQ(count_near(rgb, L, 5, 0.85, series_color(0)), 0);
  EXPECT_EQ(count_near(rgb, L, 8, 0.2, series_color(0)), 0);   // away from both lines
  EXPECT_EQ(count_near(rgb, L, 8, 0.2, series_color(1)), 0);
  EXPECT_NE(series_color(0), series_color(1));
  EXPECT_EQ(rgb, render_line_plot(spec, s));  // the same inputs give the same pixels
}

TEST(LinePlot, EightDistinctColoursThenDashed) {
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_FALSE(series_dashed(i));
    for (size_t j = 0; j < i; ++j) EXPECT_NE(series_color(i), series_color(j)) << i << " " << j;
  }
  EXPECT_EQ(series_color(8), series_color(0));
  EXPECT_TRUE(series_dashed(8));
}

TEST(LinePlot, PointsJoinInXOrderAndNaNBreaksTheLine) {
  // After sorting by x: (0,0) (1,1) (2,NaN) (3,3) (4,4); the point with NaN x has no place.
  const std::vector<Series> s = {line("", {4, 0, 3, kNaN, 1, 2}, {4, 0, 3, 100, 1, kNaN})};
  const PlotSpec spec;
  const PlotLayout L = layout_line_plot(spec, s);
  const std::vector<uint8_t> rgb = render_line_plot(spec, s);
  EXPECT_LT(L.y.hi, 5);  // the dropped point did not stretch the axis
  EXPECT_GT(count_near(rgb, L, 0.5, 0.5, series_color(0)), 0);
  EXPECT_GT(count_near(rgb, L, 3.5, 3.5, series_color(0)), 0);
  EXPECT_EQ(count_near(rgb, L, 2, 2, series_color(0), 4), 0);  // no segment across the NaN
  EXPECT_EQ(count_near(rgb, L, 2, 3.5, series_color(0), 4), 0);  // nor in input order (3 -> 1)
}

TEST(LinePlot, IsolatedPointsAreMarkers) {
  const PlotSpec spec;
  const std::vector<Series> one = {line("one", {3}, {7})};
  const PlotLayout L = layout_line_plot(spec, one);
  const std::vector<uint8_t> rgb = render_line_plot(spec, one);
  EXPECT_TRUE(L.has_data);
  EXPECT_GE(count_near(rgb, L, 3, 7, series_color(0), 1), 9);  // a filled square around the point

  const std::vector<Series> islands = {line("", {0, 1, 2, 3, 4}, {0, kNaN, 2, kNaN, 4})};
  const PlotLayout M = layout_line_plot(spec, islands);
  const std::vector<uint8_t> rgb2 = render_line_plot(spec, islands);
  for (double v : {0.0, 2.0, 4.0}) EXPECT_GE(count_near(rgb2, M, v, v, series_color(0), 1), 9) << v;
  EXPECT_EQ(count_near(rgb2, M, 1, 1, series_color(0), 3), 0);
}

TEST(LinePlot, AxisLimitsClipTheLinesToThePlotArea) {
  PlotSpec spec;
  spec.y_min = 0;
  spec.y_max = 1;
  const std::vector<Series> s = {line("", {0, 1}, {-10, 10})};
  const PlotLayout L = layout_line_plot(spec, s);
  EXPECT_EQ(L.y.lo, 0);
  EXPECT_EQ(L.y.hi, 1);
  const std::vector<uint8_t> rgb = render_line_plot(spec, s);
  int inside = 0, outside = 0;
  for (int y = 0; y < L.height; ++y)
    for (int x = 0; x < L.width; ++x)
      if (pixel_at(rgb, L, x, y) == series_color(0)) ++(L.plot.contains(x, y) ? inside : outside);
  EXPECT_GT(inside, 0);
  EXPECT_EQ(outside, 0);
}

TEST(LinePlot, LegendShowsEachLabelAwayFromTheData) {
  PlotSpec spec;
  spec.x_label = "epoch";
  spec.y_label = "test accuracy";
  // Rising curves: the top-right and bottom-left corners hold data, the bottom-right does not.
  const std::vector<Series> s = {line("allreduce", {0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}),
                                 line("sign-allgather", {0, 1, 2, 3, 4}, {0.5, 1.5, 2.5, 3.5, 4.5})};
  const PlotLayout L = layout_line_plot(spec, s);
  const std::vector<uint8_t> rgb = render_line_plot(spec, s);
  ASSERT_FALSE(L.legend.empty());
  EXPECT_TRUE(L.plot.contains(L.legend.x, L.legend.y));
  EXPECT_TRUE(L.plot.contains(L.legend.x + L.legend.w - 1, L.legend.y + L.legend.h - 1));
  EXPECT_GT(L.legend.x, L.plot.x + L.plot.w / 2);  // bottom right
  EXPECT_GT(L.legend.y, L.plot.y + L.plot.h / 2);
  // Both swatches and the label text are inside the box; the rest of the box is background.
  auto is_first = [](Rgb c) { return c == series_color(0); };
  auto is_second = [](Rgb c) { return c == series_color(1); };
  auto is_background = [](Rgb c) { return c == kWhite; };
  EXPECT_GT(count_in(rgb, L, L.legend, is_first), 20);
  EXPECT_GT(count_in(rgb, L, L.legend, is_second), 20);
  EXPECT_GT(count_in(rgb, L, L.legend, dark_gray), 100);  // "allreduce" and "sign-allgather"
  EXPECT_GT(count_in(rgb, L, L.legend, is_background), L.legend.w * L.legend.h / 2);
  // Without labels there is no legend, and the bottom-right corner is plain background.
  const std::vector<Series> unlabelled = {line("", s[0].x, s[0].y), line("", s[1].x, s[1].y)};
  EXPECT_TRUE(layout_line_plot(spec, unlabelled).legend.empty());
  const std::vector<uint8_t> bare = render_line_plot(spec, unlabelled);
  EXPECT_EQ(count_in(bare, L, L.legend, dark_gray), 0);
}

TEST(LinePlot, NoDataStillDrawsAxesAndANote) {
  PlotSpec spec;
  spec.title = "nothing yet";
  for (const std::vector<Series>& s :
       {std::vector<Series>{}, std::vector<Series>{line("empty", {}, {}), line("nan", {0, 1}, {kNaN, kNaN})}}) {
    const PlotLayout L = layout_line_plot(spec, s);
    EXPECT_FALSE(L.has_data);
    EXPECT_EQ(L.x.lo, 0);
    EXPECT_EQ(L.x.hi, 1);
    EXPECT_FALSE(L.y.ticks.values.empty());
    const std::vector<uint8_t> rgb = render_line_plot(spec, s);
    ASSERT_EQ(rgb.size(), size_t(spec.width) * spec.height * 3);
    const int cx = L.plot.x + L.plot.w / 2, cy = L.plot.y + L.plot.h / 2;
    EXPECT_GT(count_in(rgb, L, {cx - 40, cy - 20, 80, 40}, dark_gray), 50);  // "no data"
    EXPECT_EQ(pixel_at(rgb, L, L.plot.x, cy), pixel_at(rgb, L, L.plot.x, L.plot.y));  // the frame
    EXPECT_NE(pixel_at(rgb, L, L.plot.x, cy), kWhite);
  }
}

TEST(LinePlot, BadSpecsAndSeriesThrow) {
  PlotSpec spec;
  try {
    layout_line_plot(spec, {line("mode-a", {0, 1, 2}, {0, 1})});
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'mode-a'"), std::string::npos) << e.what();
  }
  spec.y_min = 1;
  spec.y_max = 0.5;
  EXPECT_THROW(layout_line_plot(spec, {}), Error);
  spec = PlotSpec{};
  EXPECT_THROW(layout_line_plot(spec, {line("huge", {0, 1}, {-1e308, 1e308})}), Error);
  spec.width = 10;
  EXPECT_THROW(render_line_plot(spec, {}), Error);
}

TEST(LinePlotPng, RoundTripsThroughLibpng) {
  PlotSpec spec;
  spec.title = "round trip";
  spec.width = 320;
  spec.height = 240;
  const std::vector<Series> s = {line("a", {1, 2, 3}, {0.1, 0.5, 0.4}), line("b", {1, 3}, {0.3, kNaN})};
  const std::filesystem::path path = temp_png("round_trip");
  write_line_plot_png(path, spec, s);

  std::vector<uint8_t> file;
  data::Decoder::read_file(path, file);
  data::Decoder decoder;
  EXPECT_EQ(decoder.info(file.data(), file.size()).format, data::ImageFormat::png);
  data::Image image;
  decoder.decode(file.data(), file.size(), image);
  EXPECT_EQ(image.width, spec.width);
  EXPECT_EQ(image.height, spec.height);
  EXPECT_TRUE(image.pixels == render_line_plot(spec, s));
  std::filesystem::remove(path);
}

TEST(LinePlotPng, UnwritablePathThrowsNamingIt) {
  const std::vector<uint8_t> rgb(4 * 4 * 3, 128);
  for (const std::filesystem::path& path :
       {std::filesystem::path("/nonexistent-lockstep-dir/sub/plot.png"), std::filesystem::temp_directory_path()}) {
    try {
      write_png_rgb(path, rgb.data(), 4, 4);
      FAIL() << "expected an Error for " << path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(write_png_rgb(temp_png("empty"), nullptr, 4, 4), Error);
  EXPECT_THROW(write_line_plot_png("/nonexistent-lockstep-dir/plot.png", PlotSpec{}, {}), Error);
}

}  // namespace
}  // namespace lockstep::plot
