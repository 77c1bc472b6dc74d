// An RGB8 raster with the few primitives a line plot needs: pixels, rectangles, 2-px lines,
// markers and text in an embedded 5x7 bitmap font (printable ASCII; any other character draws as
// '?'). Pixel coordinates, origin top-left, y down. Every primitive clips to the canvas and to
// the clip rectangle, so callers may draw partly (or wholly) outside and nothing is written there.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep::plot {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(Rgb, Rgb) = default;
};

struct Rect {
  int x = 0, y = 0, w = 0, h = 0;  // covers [x, x + w) x [y, y + h)
  bool empty() const { return w <= 0 || h <= 0; }
  bool contains(int px, int py) const { return px >= x && px < x + w && py >= y && py < y + h; }
  friend bool operator==(Rect, Rect) = default;
};

enum class Align { left, center, right };

// The font's cell: glyphs are 5x7 above the baseline (capitals, digits) with one row below it for
// descenders (g, j, p, q, y, comma), drawn on a 6-pixel advance so one blank column separates
// letters. Everything scales by an integer factor.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 8;
inline constexpr int kGlyphAdvance = 6;

// Width in pixels of `text` at `scale` (no trailing blank column); 0 for an empty string.
// A UTF-8 sequence counts as one character (it draws as one '?').
int text_width(std::string_view text, int scale = 1);
// `text` cut to at most max_width pixels at `scale`, ending in "..." when cut.
std::string fit_text(std::string_view text, int max_width, int scale = 1);

// Liang-Barsky: clips the segment (x0, y0)-(x1, y1) to [xmin, xmax] x [ymin, ymax] in place;
// false when no part of it is inside.
bool clip_segment(double& x0, double& y0, double& x1, double& y1, double xmin, double ymin, double xmax,
                  double ymax);

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);

  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& pixels() const { return pixels_; }  // (height, width, 3) RGB
  std::vector<uint8_t> take_pixels() && { return std::move(pixels_); }
  Rgb at(int x, int y) const;  // x, y inside the canvas

  // Drawing is confined to `clip` (intersected with the canvas) until reset_clip().
  void set_clip(Rect clip);
  void reset_clip();

  void set(int x, int y, Rgb c);
  void fill_rect(Rect r, Rgb c);
  void stroke_rect(Rect r, Rgb c);  // 1-px outline on r's outermost pixels
  // A line between pixel centres, `thickness` px wide (a square brush along Bresenham's path).
  // Endpoints may be far outside the canvas (a data point off the axis range): the segment is
  // clipped in floating point first, so its cost is bounded by the canvas size. dash > 0 draws
  // dash pixels on, dash off, counted in steps along the major axis from `phase`; the phase to
  // pass to the next segment is returned, so a polyline's dashes run on across its joints.
  int line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 2, int dash = 0, int phase = 0);
  // A filled square of side 2 * radius + 1 centred on (cx, cy).
  void marker(int cx, int cy, int radius, Rgb c);

  // Text with its cell's top at y; per `align`, x is its left edge, its centre, or one past its
  // right edge.
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1, Align align = Align::left);
  // Text turned 90 degrees counter-clockwise, reading bottom to top: the cell's top (the side
  // the letters' tops face) is at column x; per `align`, y is its bottom row, its middle, or one
  // below its top row. For a y-axis label.
  void text_up(int x, int y, std::string_view s, Rgb c, int scale = 1, Align align = Align::left);

 private:
  template <class Plot>
  void glyphs(std::string_view s, int scale, Plot plot);
  int width_, height_;
  Rect clip_;
  std::vector<uint8_t> pixels_;
};

}  // namespace lockstep::plot
